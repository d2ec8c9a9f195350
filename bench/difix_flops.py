"""Floating-point operations of a Difix training step and of inference, by part.

    python bench/difix_flops.py --resolution 512

Counted with ``torch.utils.flop_counter.FlopCounterMode`` on the full-size architecture built on
the meta device (no memory, no GPU): VAE encoder forward on both views, UNet forward and backward
(every weight trains), decoder forward and backward (its LoRA and skip convolutions train, so the
backward is the activation gradients and the small weight gradients); inference decodes view 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hi4dfix.difix.config import DifixConfig  # noqa: E402
from hi4dfix.difix.model import build_random_difix, decode_with_skips, encode_with_skips  # noqa: E402


def tflop(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolution", type=int, default=512)
    args = parser.parse_args(argv)
    with torch.device("meta"):
        model = build_random_difix(DifixConfig(preset="sd-turbo"), with_tokenizer=False)
        views = torch.randn(2, 3, args.resolution, args.resolution)
        text = torch.randn(2, 77, model.unet.config.cross_attention_dim)
    model.set_train()
    posterior, skips = encode_with_skips(model.vae, views)
    z = posterior.mode().detach()
    skips = [s.detach() for s in skips]
    gamma = model.difix_config.skip_gamma

    def unet():
        kwargs = {"num_views": 2}
        return model.unet(z, model.timesteps.to("meta"), encoder_hidden_states=text, cross_attention_kwargs=kwargs)

    parts = {
        "encoder forward (2 views)": tflop(lambda: encode_with_skips(model.vae, views)),
        "UNet forward + backward": tflop(lambda: unet().sample.sum().backward()),
        "decoder forward + backward (2 views)": tflop(
            lambda: decode_with_skips(model.vae, z, skips, gamma).float().sum().backward()
        ),
    }
    first_view_skips = [s[:1] for s in skips]
    with torch.no_grad():
        infer = {
            "UNet forward": tflop(unet),
            "decoder forward (view 0)": tflop(lambda: decode_with_skips(model.vae, z[:1], first_view_skips, gamma)),
        }
    print(f"{args.resolution}x{args.resolution}, image + reference view")
    for name, value in parts.items():
        print(f"  train  {name}: {value:.2f} TFLOP")
    print(f"  train  total: {sum(parts.values()):.2f} TFLOP")
    infer_total = parts["encoder forward (2 views)"] + sum(infer.values())
    for name, value in infer.items():
        print(f"  infer  {name}: {value:.2f} TFLOP")
    print(f"  infer  total (with the encoder): {infer_total:.2f} TFLOP")
    return 0


if __name__ == "__main__":
    sys.exit(main())
