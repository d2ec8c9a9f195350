"""Cost of the paired cluster bootstrap: one comparison (every scene and the mean row) and a whole
delta table (3 metrics x 3 comparisons), for S scenes x F frames x V views.

    python bench/bench_stats.py --sizes 4x100x7 4x110x8 20x110x8 [--resamples 2000] [--append BENCHMARKS.md]

Times are the median of --repeats runs (after one warm-up) of hi4dfix.stats and
hi4dfix.tables.delta_table on random per-view metrics.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from record import append_markdown

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hi4dfix.metrics import METRIC_COLUMNS  # noqa: E402
from hi4dfix.stats import BootstrapConfig, mean_estimate, scene_estimate  # noqa: E402
from hi4dfix.tables import ARMS, delta_table  # noqa: E402


def random_views(scenes: int, frames: int, views: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = scenes * frames * views
    keys = {
        "scene": np.repeat([f"hi4d_pair{i:02d}_x" for i in range(scenes)], frames * views),
        "frame": np.tile(np.repeat(np.arange(frames), views), scenes),
        "cam": np.tile(np.arange(views), scenes * frames),
    }
    parts = [pd.DataFrame({"arm": arm, **keys, **{m: rng.normal(0.5 + 0.01 * k, 0.1, n) for m in METRIC_COLUMNS}})
             for k, arm in enumerate(ARMS)]
    return pd.concat(parts, ignore_index=True)


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["4x100x7", "4x110x8", "20x110x8"], help="SxFxV")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--append", type=Path, help="append the table to this markdown file")
    args = parser.parse_args()
    cfg = BootstrapConfig(n_resamples=args.resamples)
    lines = [
        "| scenes x frames x views | resamples | one comparison: every scene, s | its mean row, s "
        "| delta table (3 metrics x 3 comparisons), s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for size in args.sizes:
        scenes, frames, views = map(int, size.split("x"))
        table = random_views(scenes, frames, views)
        one = table[table.arm == "raw"]
        differences = table.loc[table.arm == "tuned", "psnr"].to_numpy() - one["psnr"].to_numpy()
        scene_of, frame_of = one["scene"].to_numpy(), one["frame"].to_numpy()

        def per_scene():
            for scene in np.unique(scene_of):
                mine = scene_of == scene
                scene_estimate(frame_of[mine], differences[mine], cfg, scene)

        seconds = (
            median_seconds(per_scene, args.repeats),
            median_seconds(lambda: mean_estimate(scene_of, frame_of, differences, cfg), args.repeats),
            median_seconds(lambda: delta_table(table, bootstrap=cfg), args.repeats),
        )
        lines.append(f"| {size} | {args.resamples} | " + " | ".join(f"{s:.3f}" for s in seconds) + " |")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    if args.append:
        append_markdown(args.append, "Paired cluster bootstrap of the delta tables", markdown)


if __name__ == "__main__":
    main()
