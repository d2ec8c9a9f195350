"""Per-view time of the pipeline's DiFix fixer (``hi4dfix.difix.infer.difix_fixer``, as `evaluate_nvs`
runs it), eager and compiled, against the model-only figure of ``bench/bench_difix.py``.

    python bench/bench_fixer.py --model OUT/sd_turbo_base --size 512x512 --batch-sizes 1 4 \\
        --compile false true --views 64 [--long-side 512] [--append BENCHMARKS.md]

The fixer is timed as evaluate_nvs times it: host images in, fixed host images out (resizing,
copies, the model), the first batch of each size apart (it compiles and captures CUDA graphs).
Views are fed in chunks of 8 as the evaluation streams them. ``--model``: a pkl or folder
(``bench/gpu/study.py base`` writes a random sd-turbo one); default: a random tiny model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from hi4dfix.difix.data import model_input_size
from hi4dfix.difix.infer import difix_fixer
from record import append_markdown


def peak_gib() -> str:
    if not torch.cuda.is_available():
        return "n/a"
    return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} / {torch.cuda.max_memory_reserved() / 2**30:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="pkl or folder (default: a random tiny model)")
    parser.add_argument("--size", default="512x512", help="image HxW")
    parser.add_argument("--long-side", type=int, help="processing size's long side (default: the image's size)")
    parser.add_argument("--views", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--compile", nargs="+", default=["false", "true"], choices=["false", "true"])
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    parser.add_argument(
        "--cudnn-benchmark", default="default", choices=["default", "on", "off"],
        help="cuDNN autotuning (default: hi4dfix.difix.infer's choice)",
    )
    parser.add_argument("--compile-cache", type=Path, help="study compile cache folder (node-local live caches)")
    parser.add_argument("--append", type=Path)
    args = parser.parse_args()
    if args.compile_cache:
        import logging

        from hi4dfix.logs import log_to_stderr

        log_to_stderr(logging.getLogger("hi4dfix.difix.compile_cache"), logging.INFO)
    height, width = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    images = [rng.random((height, width, 3), dtype=np.float32) for _ in range(args.views)]
    refs = [rng.random((height, width, 3), dtype=np.float32) for _ in range(args.views)]
    accelerator = torch.cuda.get_device_name() if torch.cuda.is_available() else None

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from hi4dfix.difix.config import DifixConfig
            from hi4dfix.difix.model import build_random_difix
            from hi4dfix.difix.official_pkl import save_checkpoint

            model = str(save_checkpoint(Path(tmp) / "tiny.pkl", build_random_difix(DifixConfig(preset="tiny"))))
        processing = "x".join(map(str, model_input_size(height, width, None, args.long_side)))
        rows = [
            "| model | size | processing size | batch | compiled | dtype | views timed | ms / view | views / s "
            "| first batch s | cuDNN autotuning | peak GiB allocated / reserved |",
            "| --- | --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
        ]
        for compiled in args.compile:
            for batch in args.batch_sizes:
                torch.compiler.reset()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()  # the row's peak, its first batch included
                inference = {"batch_size": batch, "compile": compiled == "true", "dtype": args.dtype}
                fixer = difix_fixer(
                    model, inference=inference, long_side=args.long_side, compile_cache_dir=args.compile_cache,
                    cudnn_benchmark={"on": True, "off": False}.get(args.cudnn_benchmark),
                )
                for start in range(0, args.views, args.chunk):
                    fixer(images[start : start + args.chunk], refs[start : start + args.chunk])
                timing = fixer.timing()
                dtype = str(fixer.model.vae.dtype).removeprefix("torch.")
                rows.append(
                    f"| {Path(model).name} | {height}x{width} | {processing} | {batch} | {compiled} | {dtype} | "
                    f"{timing.views} | {timing.ms_per_view:.1f} | {timing.views_per_s:.1f} | "
                    f"{timing.first_seconds:.1f} | {torch.backends.cudnn.benchmark} | {peak_gib()} |"
                )
                print(rows[-1], flush=True)
                del fixer
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
    table = "\n".join(rows)
    print(table)
    if args.append:
        append_markdown(
            args.append,
            "The pipeline's DiFix fixer per view (difix_fixer, as evaluate_nvs runs it)",
            table,
            accelerator,
        )


if __name__ == "__main__":
    main()
