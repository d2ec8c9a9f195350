"""The pipeline's GPU code path without Snakemake, for the device machine.

    python bench/gpu/pipeline_smoke.py OUT_DIR \
        [--width 240 --height 320 --fit-steps 200 --gaussians 6000 --tune-steps 60]

Synthesises two scenes, materializes them, renders with the `auto` backend (gsplat on CUDA), builds
triplets, tunes the tiny DiFix through `hi4dfix.difix.launch` (accelerate, bf16 autocast) and runs
both NVS modes. Prints each stage's wall time and the resulting metrics.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from hi4dfix.difix.infer import difix_fixer
from hi4dfix.evaluate import evaluate_nvs
from hi4dfix.hi4d import read_sequence
from hi4dfix.materialize import MaterializeConfig, materialize_scene
from hi4dfix.metrics import MetricComputer
from hi4dfix.render import RenderConfig, render_scene
from hi4dfix.synth import SynthConfig, generate_sequence
from hi4dfix.triplets import TripletConfig, build_triplets, write_triplets

TRAIN, HELDOUT = "hi4d_pair00_dance", "hi4d_pair15_fight"


def stage(name: str, start: float) -> float:
    now = time.perf_counter()
    print(f"{name}: {now - start:.1f} s", flush=True)
    return now


def main(out: Path, width: int, height: int, fit_steps: int, gaussians: int, tune_steps: int) -> None:
    t = time.perf_counter()
    scenes = {}
    for scene in (TRAIN, HELDOUT):
        seq = generate_sequence(
            out / "hi4d" / scene, scene, SynthConfig(num_frames=3, width=width, height=height), replace=True
        )
        scenes[scene] = materialize_scene(read_sequence(seq), out / "scenes" / scene, scene, MaterializeConfig())
    t = stage(f"synthesize+materialize 2 scenes at {width}x{height}", t)
    profile = {"source": "fit", "fit_steps": fit_steps, "num_gaussians": gaussians, "device": "auto", "backend": "auto"}
    renders = {}
    for scene in scenes:
        renders[scene] = out / "renders" / scene
        manifest = render_scene(
            scenes[scene], renders[scene], RenderConfig.from_dict({k: v for k, v in profile.items() if k != "source"})
        )
        print(scene, manifest["config"]["resolved_backend"], manifest["summary"])
    t = stage(f"render (fit {fit_steps} steps, {gaussians} Gaussians, 3 frames, 8 cams) x2", t)
    triplets = build_triplets(
        {TRAIN: (scenes[TRAIN], renders[TRAIN])}, {HELDOUT: (scenes[HELDOUT], renders[HELDOUT])}, TripletConfig()
    )
    write_triplets(out / "triplets.json", triplets, reserved_scenes=[])
    model = out / "tuned.pkl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hi4dfix.difix.launch",
            "--gpus",
            "1",
            "--",
            "--triplets",
            str(out / "triplets.json"),
            "--base",
            "tiny-random",
            "--output",
            str(model),
            "--output-dir",
            str(out / "tune"),
            "--steps",
            str(tune_steps),
            "--mixed-precision",
            "bf16",
            "--ckpt-every",
            str(tune_steps // 2),
            "--val-every",
            str(tune_steps // 2),
        ],
        check=True,
    )
    t = stage(f"tune tiny DiFix {tune_steps} steps (accelerate, bf16)", t)
    metrics = MetricComputer()
    fixer = difix_fixer(model)
    for mode in ("postfix", "difix3d+"):
        rows = evaluate_nvs(mode, scenes[HELDOUT].root, renders[HELDOUT], profile, fixer, metrics, out / "nvs" / mode)
        print(mode, pd.DataFrame(rows)[["psnr", "ssim", "psnr_person"]].mean().round(3).to_dict())
        t = stage(f"evaluate {mode}", t)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=240)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--fit-steps", type=int, default=200)
    parser.add_argument("--gaussians", type=int, default=6000)
    parser.add_argument("--tune-steps", type=int, default=60)
    args = parser.parse_args()
    main(args.out, args.width, args.height, args.fit_steps, args.gaussians, args.tune_steps)
