"""What each metric rewards: distortions of ground-truth views at the PSNR of the tuned DiFix output, and the
study's arms re-scored from their saved outputs, on a finished main-job run.

    python bench/bench_metric_order.py --results /work/base-run/results [--version v0] [--append BENCHMARKS.md]

For every held-out view of the last frame of each reserved scene (its previous frame gives flicker), the
ground truth G is distorted, on both frames, to the PSNR the tuned arm's saved output has on that view:

* blur: a Gaussian blur, sigma found by bisection (the same blur on both frames: steady);
* noise: Gaussian noise, sigma found by bisection, drawn anew on each frame (flicker);
* shift: a translation to the right, its length (px, bilinear) found by bisection; the plain one-pixel
  shift is listed too, at its own PSNR;
* tuned DiFix: the tuned arm's saved output (8-bit PNG), at its own PSNR, the target of the others.

Each metric's mean over the views, and the order it puts the four matched distortions in (best first).
Then every arm's saved outputs re-scored with every metric: the delta table of the whole frame's metrics.
LPIPS is left out: its AlexNet trunk is not cached on the CPU machine.

The cost of each metric per 940x1280 view alone, with the thread counts of the evaluation jobs
(``evaluate_nvs``: 1, ``evaluate_difix``: 2; Snakemake sets ``OMP_NUM_THREADS`` to a job's threads, and
FLIP's evaluator and piq's torch follow it), each count in its own process (OpenMP reads it once):

    python bench/bench_metric_order.py --cost-only --threads 1 2 [--append BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from record import append_markdown

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hi4dfix.evaluate import novel_views, view_image_path  # noqa: E402
from hi4dfix.io import read_image  # noqa: E402
from hi4dfix.metrics import (  # noqa: E402
    PERSON_SUFFIX,
    flip,
    gmsd,
    haarpsi,
    higher_is_better,
    metric_title,
    psnr,
    ssim,
)
from hi4dfix.scene import load_scene  # noqa: E402
from hi4dfix.stats import BootstrapConfig  # noqa: E402
from hi4dfix.tables import delta_markdown, delta_table, to_markdown  # noqa: E402
from hi4dfix.temporal import flicker_metrics  # noqa: E402

COLUMNS = ("psnr", "ssim_gaussian", "ssim_uniform", "flip", "haarpsi", "gmsd", "flicker", "flicker_flow")
MATCHED = ("blur", "noise", "shift", "tuned DiFix")


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=max(sigma, 1e-3), borderType=cv2.BORDER_REFLECT)


def shift(image: np.ndarray, pixels: float) -> np.ndarray:
    matrix = np.float32([[1, 0, pixels], [0, 1, 0]])
    size = image.shape[1::-1]
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def noise(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + sigma * rng.standard_normal(image.shape).astype(np.float32), 0, 1)


def matched(distort, target: np.ndarray, goal_db: float, high: float) -> float:
    """The strength in [0, high] at which ``distort(target, s)`` has PSNR ``goal_db`` (PSNR falls with s)."""
    low = 0.0
    for _ in range(40):
        mid = 0.5 * (low + high)
        if psnr(distort(target, mid), target) > goal_db:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def scores(pred_prev, pred, target_prev, target) -> dict[str, float]:
    temporal = flicker_metrics(pred_prev, pred, target_prev, target)
    return {
        "psnr": psnr(pred, target),
        "ssim_gaussian": ssim(pred, target, "gaussian"),
        "ssim_uniform": ssim(pred, target, "uniform"),
        "flip": flip(pred, target),
        "haarpsi": haarpsi(pred, target),
        "gmsd": gmsd(pred, target),
        "flicker": temporal["flicker"],
        "flicker_flow": temporal["flicker_flow"],
    }


def distortion_rows(results: Path, version: str, scenes: list[str]) -> pd.DataFrame:
    rows = []
    for scene_name in scenes:
        scene = load_scene(results / "scenes" / scene_name)
        views = novel_views(scene, results / "renders" / "imperfect" / scene_name)
        last = max(v["frame"] for v in views)
        by_key = {(v["cam"], v["frame"]): v for v in views}
        for view in (v for v in views if v["frame"] == last):
            before = by_key.get((view["cam"], max(f for c, f in by_key if c == view["cam"] and f < last)))
            g0, g1 = read_image(before["target"]), read_image(view["target"])
            tuned_dir = results / version / "nvs" / "tuned" / scene_name
            f0 = read_image(view_image_path(tuned_dir, view["cam"], before["frame"]))
            f1 = read_image(view_image_path(tuned_dir, view["cam"], last))
            goal = psnr(f1, g1)
            s_blur = matched(blur, g1, goal, 10.0)
            s_noise = matched(lambda im, s: noise(im, s, seed=1), g1, goal, 0.5)
            s_shift = matched(shift, g1, goal, 16.0)
            cases = {
                "blur": (blur(g0, s_blur), blur(g1, s_blur), f"sigma {s_blur:.2f} px"),
                "noise": (noise(g0, s_noise, seed=0), noise(g1, s_noise, seed=1), f"sigma {s_noise:.3f}"),
                "shift": (shift(g0, s_shift), shift(g1, s_shift), f"{s_shift:.2f} px"),
                "tuned DiFix": (f0, f1, "saved output"),
                "one-pixel shift": (shift(g0, 1.0), shift(g1, 1.0), "1 px"),
            }
            for name, (p0, p1, setting) in cases.items():
                rows.append(
                    {"scene": scene_name, "cam": view["cam"], "distortion": name, "setting": setting,
                     **scores(p0, p1, g0, g1)}
                )  # fmt: skip
    return pd.DataFrame(rows)


def order_table(rows: pd.DataFrame) -> str:
    means = rows.groupby("distortion", sort=False)[list(COLUMNS)].mean()
    out = means.reset_index()
    out.insert(1, "setting (first view)", [rows.loc[rows["distortion"] == d, "setting"].iloc[0] for d in means.index])
    order = []
    for column in COLUMNS[1:]:
        direction = higher_is_better(column.removesuffix("_gaussian").removesuffix("_uniform"))
        ranked = means.loc[list(MATCHED), column].sort_values(ascending=not direction)
        order.append(f"| {column} | {' > '.join(ranked.index)} |")
    table = to_markdown(out, 4)
    return (
        f"Mean over {rows[['scene', 'cam']].drop_duplicates().shape[0]} views (PSNR in dB):\n\n{table}\n"
        "Order of the four matched distortions, best first:\n\n| metric | order |\n| --- | --- |\n"
        + "\n".join(order) + "\n"
    )


def arm_views(results: Path, version: str, scenes: list[str], arms: list[str], ssim_window: str) -> pd.DataFrame:
    """Every arm's saved outputs re-scored (image metrics and flicker), as the long per-view table."""
    import warnings

    from hi4dfix.metrics import MetricComputer, MetricsConfig
    from hi4dfix.temporal import FlickerTracker

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        computer = MetricComputer(MetricsConfig(ssim=ssim_window))
    rows = []
    for scene_name in scenes:
        scene = load_scene(results / "scenes" / scene_name)
        views = novel_views(scene, results / "renders" / "imperfect" / scene_name)
        for arm in arms:
            tracker = FlickerTracker([(v["cam"], v["frame"]) for v in views])
            arm_dir = results / version / "nvs" / arm / scene_name
            scene_rows = []
            for index, view in enumerate(views):
                pred = read_image(view_image_path(arm_dir, view["cam"], view["frame"]))
                target, mask = read_image(view["target"]), scene.load_mask(view["cam"], view["frame"])
                row = computer.compute(pred, target, mask)
                keys = {"arm": arm, "scene": scene_name, "frame": view["frame"], "cam": view["cam"]}
                scene_rows.append({**keys, **row})
                for i, values in tracker.add(index, pred, target, mask).items():
                    scene_rows[i].update(values)
            rows += scene_rows
    return pd.DataFrame(rows)


def metric_seconds(height: int = 940, width: int = 1280, repeats: int = 3, threads: int = 1) -> dict[str, float]:
    """Seconds per view of each metric at Hi4D's size with ``threads`` CPU threads (median of ``repeats``). FLIP's
    OpenMP reads ``OMP_NUM_THREADS`` once per process: :func:`threaded_seconds` runs each count in its own."""
    import statistics
    import time

    import torch

    torch.set_num_threads(threads)  # piq runs on torch: the job's threads, as Snakemake gives them

    rng = np.random.default_rng(0)
    target = rng.random((height, width, 3), dtype=np.float32)
    pred = np.clip(target + 0.05 * rng.standard_normal(target.shape, dtype=np.float32), 0, 1)
    cases = {
        "psnr": lambda: psnr(pred, target),
        "ssim gaussian": lambda: ssim(pred, target, "gaussian"),
        "ssim uniform": lambda: ssim(pred, target, "uniform"),
        "flip": lambda: flip(pred, target),
        "haarpsi": lambda: haarpsi(pred, target),
        "gmsd": lambda: gmsd(pred, target),
        "flicker + flicker_flow (GT flow, warps)": lambda: flicker_metrics(target, pred, pred, target),
    }
    seconds = {}
    for name, run in cases.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        seconds[name] = statistics.median(times)
    return seconds


def threaded_seconds(threads: int, repeats: int = 3) -> dict[str, float]:
    """:func:`metric_seconds` in a fresh process with ``OMP_NUM_THREADS=threads`` (as a Snakemake job of that many
    threads runs)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, __file__, "--cost-worker", "--threads", str(threads), "--repeats", str(repeats)]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cost_table(threads: tuple[int, ...] = (1,), repeats: int = 3, height: int = 940, width: int = 1280) -> str:
    """A row per metric, a column per thread count: seconds per whole-frame view at Hi4D's size."""
    runs = {count: threaded_seconds(count, repeats) for count in threads}
    header = " | ".join(f"s per {height}x{width} view, {count} thread{'s' * (count > 1)}" for count in threads)
    lines = [f"| metric | {header} |", "| --- |" + " ---: |" * len(threads)]
    for name in runs[threads[0]]:
        lines.append(f"| {name} | " + " | ".join(f"{runs[count][name]:.3f}" for count in threads) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--version", default="v0")
    parser.add_argument("--scenes", nargs="+", default=["hi4d_pair15_fight", "hi4d_pair16_jump", "hi4d_pair17_dance",
                                                        "hi4d_pair19_piggyback"])  # fmt: skip
    parser.add_argument("--arms", nargs="+", default=["raw", "base", "control", "tuned"])
    parser.add_argument("--append", type=Path, help="append the tables to this markdown file (BENCHMARKS.md)")
    parser.add_argument("--views-csv", type=Path, help="also write the arms' re-scored per-view table here")
    parser.add_argument("--cost-only", action="store_true", help="only the cost of each metric per 940x1280 view")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts of the cost table")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per metric (the median is shown)")
    parser.add_argument("--cost-worker", action="store_true", help=argparse.SUPPRESS)  # one count, JSON out
    args = parser.parse_args()
    if args.cost_worker:
        print(json.dumps(metric_seconds(repeats=args.repeats, threads=args.threads[0])))
        return
    if args.cost_only:
        text = cost_table(tuple(args.threads), args.repeats)
        print(text)
        if args.append:
            append_markdown(args.append, "Cost of each metric per 940x1280 view, the evaluation jobs' threads", text)
        return

    rows = distortion_rows(args.results, args.version, args.scenes)
    text = order_table(rows)
    views = arm_views(args.results, args.version, args.scenes, args.arms, "gaussian")
    if args.views_csv:
        views.to_csv(args.views_csv, index=False)
    metrics = ["psnr", "ssim", "flip", "haarpsi", "gmsd", "flicker", "flicker_flow"]
    metrics += [m + PERSON_SUFFIX for m in metrics]
    bootstrap = BootstrapConfig()
    deltas = delta_table(views, metrics, bootstrap, source=str(args.results))
    means = deltas[deltas["scene"] == "mean"]
    short = pd.DataFrame(
        {"metric": [metric_title(m) for m in means["metric"]], "comparison": means["comparison"],
         **{arm: means[arm] for arm in args.arms}, "delta": means["delta"], "ci_low": means["ci_low"],
         "ci_high": means["ci_high"], "verdict": means["verdict"]}
    )  # fmt: skip
    text += (
        f"\nThe arms' saved outputs of `{args.results}/{args.version}` re-scored (SSIM gaussian; mean rows of the "
        f"delta table, {bootstrap.describe()}):\n\n" + to_markdown(short, 4)
    )
    text += "\nCost of each metric, whole frame (the person crop adds its share), one thread:\n\n" + cost_table()
    print(text)
    print(delta_markdown(deltas, bootstrap))
    if args.append:
        title = "What each metric rewards: distortions at matched PSNR, and the arms re-scored"
        append_markdown(args.append, title, text)


if __name__ == "__main__":
    main()
