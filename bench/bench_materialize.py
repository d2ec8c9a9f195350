"""Materialize throughput at Hi4D's full 940x1280: frames per second per core, and scaling with cores.

    python bench/bench_materialize.py --frames 4 --workers 1 2 [--append BENCHMARKS.md]

A frame is 8 camera images + masks undistorted and written, plus its SMPL file. Scaling runs one
materialize job per worker process on separate scenes, as Snakemake runs one job per scene.
Disk: the materialized output of one scene divided by its frames (synthetic images, which
compress better than photographs: the README's cost section scales them).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from hi4dfix.hi4d import read_sequence
from hi4dfix.materialize import MaterializeConfig, materialize_scene
from hi4dfix.synth import HI4D_IMAGE_SIZE, SynthConfig, generate_sequence
from record import append_markdown


def materialize_one(sequence_dir: str, out_dir: str, name: str) -> float:
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)  # one core per job, as a 1-thread Snakemake job
    start = time.perf_counter()
    materialize_scene(read_sequence(sequence_dir), out_dir, name, MaterializeConfig())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--append", type=Path)
    args = parser.parse_args()
    width, height = HI4D_IMAGE_SIZE
    rows = ["| workers | scenes | frames each | wall s | frames/s | frames/s per core | MB per frame on disk |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    with tempfile.TemporaryDirectory() as tmp:
        names = [f"hi4d_pair{i:02d}_dance" for i in range(max(args.workers))]
        sequences = [
            generate_sequence(Path(tmp) / name, name, SynthConfig(num_frames=args.frames, width=width, height=height))
            for name in names
        ]
        for workers in args.workers:
            start = time.perf_counter()
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(materialize_one, map(str, sequences[:workers]),
                              [f"{tmp}/out{workers}/{n}" for n in names[:workers]], names[:workers]))
            wall = time.perf_counter() - start
            frames = workers * args.frames
            scene_bytes = sum(
                f.stat().st_size for f in Path(f"{tmp}/out{workers}/{names[0]}").rglob("*") if f.is_file()
            )
            rows.append(
                f"| {workers} | {workers} | {args.frames} | {wall:.1f} | {frames / wall:.2f} | "
                f"{frames / wall / workers:.2f} | {scene_bytes / args.frames / 1e6:.1f} |"
            )
    table = "\n".join(rows)
    print(table)
    if args.append:
        append_markdown(args.append, f"Materialize at {width}x{height} (8 cameras a frame)", table)


if __name__ == "__main__":
    main()
