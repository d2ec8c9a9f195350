"""Disk size of a full-size (sd-turbo) DiFix model: the weights-only final model.pkl of a tuning run
and a resumable checkpoint with its AdamW state.

    python bench/bench_checkpoint_size.py [--measure] [--append BENCHMARKS.md]

Exact sizes come from the parameter counts of the architecture (built on the meta device, no
memory): tensor bytes of the official keys (the UNet and the VAE's LoRA and skip weights, fp32 as
training keeps them) and AdamW's two fp32 moments per trainable parameter. ``--measure`` also
builds the model with random weights on CPU (about 5 GB of memory) and writes the weights-only
pkl with ``save_model_weights``, to compare the file with the count (pickle overhead).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from hi4dfix.difix.config import DifixConfig
from hi4dfix.difix.model import build_random_difix
from hi4dfix.difix.official_pkl import save_model_weights
from record import append_markdown


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", action="store_true", help="also write a real weights-only pkl (CPU, ~5 GB RAM)")
    parser.add_argument("--append", type=Path)
    args = parser.parse_args()

    with torch.device("meta"):
        model = build_random_difix(DifixConfig(preset="sd-turbo"), with_tokenizer=False)
    state = model.official_state()
    unet = tensor_bytes(state["state_dict_unet"].values())
    vae = tensor_bytes(state["state_dict_vae"].values())
    trainable = sum(p.numel() for _, p in model.trainable_named_parameters())
    moments = 2 * 4 * trainable  # exp_avg and exp_avg_sq, fp32
    unet_params = sum(t.numel() for t in state["state_dict_unet"].values())
    rows = [
        "| what | how | bytes | GB |",
        "| --- | --- | ---: | ---: |",
        f"| UNet weights ({unet_params / 1e6:.1f} M parameters, fp32) | counted | {unet:,} | {unet / 1e9:.3f} |",
        f"| VAE LoRA + skip weights (fp32) | counted | {vae:,} | {vae / 1e9:.4f} |",
        f"| weights-only model.pkl (tensors) | counted | {unet + vae:,} | {(unet + vae) / 1e9:.3f} |",
        f"| AdamW moments ({trainable / 1e6:.1f} M trainable parameters, 2 x fp32) | counted "
        f"| {moments:,} | {moments / 1e9:.3f} |",
        f"| resumable checkpoint (weights + AdamW) | counted "
        f"| {unet + vae + moments:,} | {(unet + vae + moments) / 1e9:.3f} |",
    ]
    if args.measure:
        torch.manual_seed(0)
        real = build_random_difix(DifixConfig(preset="sd-turbo"), with_tokenizer=False)
        with tempfile.TemporaryDirectory() as tmp:
            path = save_model_weights(Path(tmp) / "model.pkl", real, {"step": 0})
            size = path.stat().st_size
        rows.insert(
            5,
            f"| weights-only model.pkl, random weights, `save_model_weights` | file size "
            f"| {size:,} | {size / 1e9:.3f} |",
        )
    table = "\n".join(rows)
    print(table)
    if args.append:
        append_markdown(
            args.append, "DiFix sd-turbo model on disk: weights-only final model and resumable checkpoint", table
        )


if __name__ == "__main__":
    main()
