"""Peak memory of the NVS evaluation (`evaluate_nvs`) against the number of frames, at 940x1280.

    python bench/bench_eval_memory.py --frames 10 100 [--arms raw difix] [--append BENCHMARKS.md]

Each measurement is a fresh process running ``hi4dfix.evaluate.evaluate_nvs`` (postfix) on one
scene of 8 cameras, as the `evaluate_nvs` rule does; its peak RSS comes from ``os.wait4``. The
scene and its render folder are written directly in the on-disk formats the readers expect: one
synthetic two-person frame at 940x1280 is materialized (generator + materialize), its renders are
the ground truth degraded (blur and noise), and the N frames of the scene are hard links to those
files; the outputs each view saves are real files. LPIPS runs with a random AlexNet trunk (the
ImageNet one is not downloaded here; the cost is the same). The DiFix arm is a tiny random model
saved as a pkl, run on CPU at a reduced processing size (``--difix-resolution``; images stay
940x1280 and the fixed images are resized back to it). One thread per process, as a 1-thread job.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
NAME = "hi4d_pair15_fight"


def build_source(root: Path) -> Path:
    """One materialized frame at Hi4D's size, with degraded renders and composited targets."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from hi4dfix.hi4d import read_sequence
    from hi4dfix.io import write_image
    from hi4dfix.materialize import materialize_scene
    from hi4dfix.render.scene_renders import composited_target, quantize, target_image_path
    from hi4dfix.synth import HI4D_IMAGE_SIZE, SynthConfig, generate_sequence

    width, height = HI4D_IMAGE_SIZE
    sequence = generate_sequence(root / "sequence", NAME, SynthConfig(num_frames=1, width=width, height=height))
    scene = materialize_scene(read_sequence(sequence), root / "scene", NAME)
    frame = scene.frames[0]
    rng = np.random.default_rng(0)
    for cam in scene.cam_ids:
        target = composited_target(scene, cam, frame, (0.0, 0.0, 0.0))
        render = gaussian_filter(target, sigma=(2, 2, 0)) + rng.normal(0, 0.03, target.shape).astype(np.float32)
        write_image(root / "renders" / f"{cam}.png", quantize(render))
        write_image(target_image_path(root / "renders", cam, frame), quantize(target))
    return root


def link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(source, target)


def build_scene(source: Path, out: Path, frames: int) -> tuple[Path, Path]:
    """A materialized scene and a render folder of ``frames`` frames, every frame the source frame."""
    from hi4dfix.render.scene_renders import render_image_relpath, target_image_path
    from hi4dfix.scene import load_scene

    scene = load_scene(source / "scene")
    first = scene.frames[0]
    scene_dir, render_dir = out / "scene", out / "renders"
    manifest = json.loads((source / "scene" / "scene.json").read_text())
    manifest["frames"] = list(range(frames))
    scene_dir.mkdir(parents=True)
    (scene_dir / "scene.json").write_text(json.dumps(manifest))
    shutil.copy(source / "scene" / "cameras.npz", scene_dir / "cameras.npz")
    images = []
    for frame in range(frames):
        link(scene.smpl_path(first), scene_dir / "smpl" / f"{frame:06d}.npz")
        for cam in scene.cam_ids:
            link(scene.image_path(cam, first), scene_dir / "images" / str(cam) / f"{frame:06d}.png")
            link(scene.mask_path(cam, first), scene_dir / "masks" / str(cam) / f"{frame:06d}.png")
            link(source / "renders" / f"{cam}.png", render_dir / render_image_relpath(cam, frame))
            link(target_image_path(source / "renders", cam, first), target_image_path(render_dir, cam, frame))
            images.append({"cam": cam, "frame": frame, "path": render_image_relpath(cam, frame), "psnr": 0.0,
                           "is_source": cam == scene.mono_cam})
    (render_dir / "manifest.json").write_text(json.dumps({"scene": NAME, "images": images}))
    return scene_dir, render_dir


def child(args: argparse.Namespace) -> None:
    """One measurement: evaluate one arm on one scene and print what it took."""
    import warnings

    import lpips
    import torch

    from hi4dfix.difix.infer import difix_fixer
    from hi4dfix.evaluate import evaluate_nvs
    from hi4dfix.metrics import MetricComputer

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = MetricComputer(lpips_factory=lambda: lpips.LPIPS(net="alex", pnet_rand=True, verbose=False))
    fixer = None
    if args.model:
        fixer = difix_fixer(args.model, device="cpu", inference={"batch_size": args.batch_size},
                            resolution=args.difix_resolution)
    started = time.perf_counter()
    rows = evaluate_nvs("postfix", args.scene, args.renders, {"source": "fit"}, fixer, metrics, args.save_dir,
                        chunk_views=args.chunk_views)
    result = {"views": len(rows), "seconds": time.perf_counter() - started}
    if fixer is not None:
        result["difix_ms_per_view"] = fixer.timing().ms_per_view
    print(json.dumps(result))


def measure(command: list[str]) -> dict:
    """Run ``command`` in a fresh process; its JSON line plus its own peak RSS (os.wait4)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{BENCH}"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        _pid, status, usage = os.wait4(process.pid, 0)  # the rusage of this child alone
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait again
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--arms", nargs="+", choices=["raw", "difix"], default=["raw", "difix"])
    parser.add_argument("--chunk-views", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--difix-resolution", default="240x176", help="DiFix processing size HxW (images stay 940x1280)"
    )
    parser.add_argument("--append", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--renders", help=argparse.SUPPRESS)
    parser.add_argument("--save-dir", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from hi4dfix.difix.config import DifixConfig
    from hi4dfix.difix.model import build_random_difix
    from hi4dfix.difix.official_pkl import save_checkpoint
    from record import append_markdown

    rows = [
        "| arm | frames | views | chunk | peak RSS MiB | wall s | s / view | DiFix ms / view |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = build_source(tmp / "source")
        model = save_checkpoint(tmp / "model.pkl", build_random_difix(DifixConfig(preset="tiny")))
        for frames in args.frames:
            scene_dir, render_dir = build_scene(source, tmp / f"f{frames}", frames)
            for arm in args.arms:
                command = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--child",
                    "--scene",
                    str(scene_dir),
                    "--renders",
                    str(render_dir),
                    "--save-dir",
                    str(tmp / f"f{frames}" / f"out_{arm}"),
                    "--chunk-views",
                    str(args.chunk_views),
                    "--batch-size",
                    str(args.batch_size),
                    "--difix-resolution",
                    args.difix_resolution,
                ]
                if arm == "difix":
                    command += ["--model", str(model)]
                result = measure(command)
                label = "raw" if arm == "raw" else f"tiny DiFix at {args.difix_resolution}, batch {args.batch_size}"
                difix_ms = f"{result['difix_ms_per_view']:.0f}" if "difix_ms_per_view" in result else ""
                rows.append(
                    f"| {label} | {frames} | {result['views']} | {args.chunk_views} | {result['peak_mib']:.0f} | "
                    f"{result['seconds']:.0f} | {result['seconds'] / result['views']:.2f} | {difix_ms} |"
                )
                print(rows[-1], flush=True)
                shutil.rmtree(tmp / f"f{frames}" / f"out_{arm}")
    table = "\n".join(rows)
    print(table)
    if args.append:
        append_markdown(args.append, "NVS evaluation memory at 940x1280 against the number of frames", table)


if __name__ == "__main__":
    main()
