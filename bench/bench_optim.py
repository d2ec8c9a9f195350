"""The end of the DiFix training step alone: gradient clipping and AdamW over the trainable weights.

    python bench/bench_optim.py                    # full size (866 M fp32 weights), CUDA
    python bench/bench_optim.py --preset tiny --device cpu --iters 2

Random gradients on the full-size model's trainable parameters (the UNet, VAE LoRA and skip
convolutions), each variant timed with CUDA events (median of ``--iters`` calls):
* ``clip + fused``: ``clip_grad_norm_`` then fused AdamW (the trainer before hi4dfix.difix.optim);
* ``clip in fused``: the norm, then fused AdamW dividing by the clip factor (``clip_and_step``);
* ``clip + foreach``: ``clip_grad_norm_`` then the foreach (multi-tensor) AdamW;
* ``norm``, ``clip``, ``fused step``: the parts alone;
* ``clip in fused, graphed``: the same as one CUDA graph (capturable AdamW, lr a tensor).
Also prints the bytes the fused step must move and the time they take at ``--bandwidth``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hi4dfix.difix.config import DifixConfig  # noqa: E402
from hi4dfix.difix.model import build_random_difix  # noqa: E402
from hi4dfix.difix.optim import NORM_EPS, total_grad_norm  # noqa: E402


def median_ms(fn, iters: int, device: torch.device) -> float:
    import time

    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="sd-turbo", choices=["sd-turbo", "tiny"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--bandwidth", type=float, default=4.3, help="copy bandwidth, TB/s (H200: KINDS.md)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    with device:
        model = build_random_difix(DifixConfig(preset=args.preset), with_tokenizer=False)
    model.set_train()
    params = [p for _, p in model.trainable_named_parameters()]
    grads = [torch.randn_like(p) * 1e-3 for p in params]
    count = sum(p.numel() for p in params)

    def set_grads():
        for p, g in zip(params, grads):
            p.grad = g.clone() if p.grad is None else p.grad.copy_(g)

    fused = torch.optim.AdamW(params, lr=1e-5, fused=True)
    foreach = torch.optim.AdamW(params, lr=1e-5, foreach=True)
    set_grads()
    fused.step()  # states allocated
    foreach.step()

    def clip():
        torch.nn.utils.clip_grad_norm_(params, 1.0)

    def norm():
        total_grad_norm(params)

    def clip_in_fused(opt=fused):
        opt.grad_scale = torch.clamp((total_grad_norm(params) + NORM_EPS) / 1.0, min=1.0)
        opt.step()
        del opt.grad_scale

    rows = {
        "norm": norm,
        "clip": clip,
        "fused step": fused.step,
        "clip + fused": lambda: (clip(), fused.step()),
        "clip in fused": clip_in_fused,
        "clip + foreach": lambda: (clip(), foreach.step()),
    }
    results = {}
    for name, fn in rows.items():
        set_grads()  # clipping rescales the gradients in place: every call sees the same kind of input
        results[name] = median_ms(fn, args.iters, device)
    if device.type == "cuda":
        try:
            graphed = torch.optim.AdamW(
                params, lr=torch.tensor(1e-5, device=device), fused=True, capturable=True
            )
            set_grads()
            graphed.step()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    clip_in_fused(graphed)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                clip_in_fused(graphed)
            results["clip in fused, graphed"] = median_ms(graph.replay, args.iters, device)
        except Exception as error:  # an experiment: report, don't stop the others
            print(f"graphed step failed: {error!r}", file=sys.stderr)
    # the fused step reads weight, gradient, two moments (fp32) and writes weight and moments
    moved = count * 4 * 7
    print(f"\n{count / 1e6:.0f} M trainable fp32 weights; the fused step moves {moved / 1e9:.1f} GB: "
          f"{moved / args.bandwidth / 1e9:.2f} ms at {args.bandwidth} TB/s; a gradient read "
          f"{count * 4 / args.bandwidth / 1e9:.2f} ms\n")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"clipping and AdamW, {args.preset}; {gpu}, torch {torch.__version__}\n")
    print("| variant | ms (median) |\n| --- | ---: |")
    for name, ms in results.items():
        print(f"| {name} | {ms:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
