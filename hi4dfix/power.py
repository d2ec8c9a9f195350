"""Power planner: how many scenes x frames a decision on the primary endpoint needs.

From a finished version's per-view NVS CSVs (``results/{version}/nvs/{arm}/{scene}.csv``) the paired
difference ``b - a`` (default tuned - base) of ``stats.primary`` gives the variance components
(:func:`variance_components`): between scenes (the scene means' variance less what their frames explain), frames
within a scene, and the lag-1 autocorrelation of consecutive frame means. A plan (:func:`plan`) then gives, for
each number of frames per scene, the fewest scenes whose mean-row test detects ``stats.min_effect`` with the wanted
power at alpha after Holm over ``family`` comparisons: the scene mean of F frames has variance
``scene + frame * g(F, rho) / F`` (``g``: the AR(1) variance inflation of a mean of F consecutive frames), the test
is the one the tables use (sign flip on the scene means, :mod:`hi4dfix.stats`), its power approximated by the
t test's (noncentral t at alpha / family, Holm's first step: conservative), and a number of scenes counts only
when the sign flip can reach the level at all (``family * 2 / 2^S < alpha``). Seeds (a replicate level) are not
modelled yet.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from hi4dfix.stats import BootstrapConfig, sign_flip_min_p
from hi4dfix.tables import arm_views

FRAME_OPTIONS = (3, 10, 30, 110)
MAX_SCENES = 200


@dataclass(frozen=True)
class Components:
    """Variance components of a paired per-view difference (one metric, one comparison)."""

    mean: float  # the observed mean difference (mean of scene means)
    scene_var: float  # between-scene variance of the true scene means
    frame_var: float  # variance of a frame mean around its scene's mean
    rho: float  # lag-1 autocorrelation of consecutive frame means (0 where not measurable)
    n_scenes: int
    n_frames: int  # frames per scene (median)


def variance_components(views: pd.DataFrame, metric: str) -> Components:
    """``views``: per-view rows ``scene, frame, difference`` (the column ``metric`` holding b - a)."""
    frames = views.groupby(["scene", "frame"])[metric].mean().dropna()
    if frames.empty:
        raise ValueError(f"power: no view has {metric} in both arms")
    by_scene = frames.groupby(level="scene")
    scene_means, counts = by_scene.mean(), by_scene.size()
    frame_var = float(by_scene.var(ddof=1).dropna().mean()) if (counts > 1).any() else 0.0
    lags = []
    for _, series in by_scene:
        x = series.to_numpy() - series.mean()
        if len(x) >= 3 and (x**2).sum() > 0:
            lags.append(float((x[1:] * x[:-1]).sum() / (x**2).sum()))
    rho = float(np.clip(np.mean(lags), 0.0, 0.99)) if lags and int(counts.median()) >= 10 else 0.0
    explained = float(np.mean(frame_var * inflation(counts.to_numpy(), rho) / counts.to_numpy()))
    scene_var = max(float(scene_means.var(ddof=1)) - explained, 0.0) if len(scene_means) > 1 else math.nan
    return Components(float(scene_means.mean()), scene_var, frame_var, rho, len(scene_means), int(counts.median()))


def inflation(n_frames, rho: float):
    """Variance of a mean of F consecutive AR(1) frames over frame_var / F: 1 + 2 sum_k (1 - k/F) rho^k."""
    n = np.atleast_1d(np.asarray(n_frames, dtype=np.float64))
    out = np.ones_like(n)
    if rho > 0:
        for i, f in enumerate(n):
            k = np.arange(1, int(f))
            out[i] = 1.0 + 2.0 * float(((1 - k / f) * rho**k).sum())
    return out if np.ndim(n_frames) else float(out[0])


def power(components: Components, n_scenes: int, n_frames: int, effect: float, alpha: float, family: int = 1) -> float:
    """Power of the mean row's test to detect ``effect`` with ``n_scenes`` x ``n_frames`` (module doc)."""
    if n_scenes < 2 or family * sign_flip_min_p(n_scenes) >= alpha:
        return 0.0
    scene_var = components.scene_var if math.isfinite(components.scene_var) else 0.0
    var = scene_var + components.frame_var * inflation(n_frames, components.rho) / n_frames
    if var <= 0:
        return 1.0 if effect != 0 else 0.0
    df, ncp = n_scenes - 1, abs(effect) / math.sqrt(var / n_scenes)
    crit = scipy_stats.t.ppf(1 - alpha / family / 2, df)
    lower = float(np.nan_to_num(scipy_stats.nct.cdf(-crit, df, ncp)))  # scipy gives NaN for a tail below ~1e-30
    return float(min(scipy_stats.nct.sf(crit, df, ncp) + lower, 1.0))


def plan(
    components: Components,
    effect: float,
    alpha: float,
    family: int = 1,
    target: float = 0.8,
    frame_options: Sequence[int] = FRAME_OPTIONS,
) -> pd.DataFrame:
    """For each frames-per-scene option, the fewest scenes with power >= ``target`` (NaN: none up to 200)."""
    rows = []
    for frames in frame_options:
        needed = next(
            (s for s in range(2, MAX_SCENES + 1) if power(components, s, frames, effect, alpha, family) >= target),
            None,
        )
        rows.append(
            {
                "frames_per_scene": frames,
                "scenes_needed": needed if needed is not None else math.nan,
                "power_at_needed": power(components, needed, frames, effect, alpha, family) if needed else math.nan,
            }
        )
    return pd.DataFrame(rows)


def version_differences(version_dir: str | Path, metric: str, b: str = "tuned", a: str = "base") -> pd.DataFrame:
    """Per-view ``b - a`` of ``metric`` on a version's reserved scenes (``nvs/{arm}/{scene}.csv``)."""
    root = Path(version_dir) / "nvs"
    scenes = sorted(p.stem for p in (root / b).glob("*.csv"))
    if not scenes:
        raise ValueError(f"power: no per-scene CSVs under {root / b}")
    keys = ["scene", "frame", "cam"]
    tables = {arm: arm_views(arm, scenes, [root / arm / f"{s}.csv" for s in scenes]) for arm in (a, b)}
    merged = tables[b][[*keys, metric]].merge(tables[a][[*keys, metric]], on=keys, suffixes=("_b", "_a"))
    return merged.assign(**{metric: merged[f"{metric}_b"] - merged[f"{metric}_a"]})[[*keys, metric]]


def report(version_dir, cfg: BootstrapConfig, family: int = 1, target: float = 0.8, metric: str | None = None) -> str:
    metric = metric or cfg.primary
    comps = variance_components(version_differences(version_dir, metric), metric)
    table = plan(comps, cfg.min_effect, cfg.alpha, family, target)
    lines = [
        f"{version_dir}: tuned - base, {metric}, from {comps.n_scenes} scenes x {comps.n_frames} frames: "
        f"mean {comps.mean:+.3g}, scene SD {math.sqrt(comps.scene_var) if comps.n_scenes > 1 else math.nan:.3g}, "
        f"frame SD {math.sqrt(comps.frame_var):.3g}, frame lag-1 autocorrelation {comps.rho:.2f}"
        + (" (too few frames to measure: 0 assumed)" if comps.n_frames < 10 else ""),
        f"to detect {cfg.min_effect:g} (stats.min_effect) with {target:.0%} power at alpha {cfg.alpha:g}"
        + (f" after Holm over {family}" if family > 1 else "")
        + " (sign-flip test on scene means; t-test power):",
    ]
    for row in table.itertuples():
        needed = "more than 200" if math.isnan(row.scenes_needed) else f"{int(row.scenes_needed)}"
        lines.append(f"  {row.frames_per_scene:>4} frames per scene: {needed} scenes")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("version_dir", help="a finished version's results folder, e.g. results/v0")
    parser.add_argument("--family", type=int, default=1, help="Holm family size (e.g. a grid's variants)")
    parser.add_argument("--power", type=float, default=0.8, dest="target")
    parser.add_argument("--metric", default=None, help="default stats.primary")
    parser.add_argument("--min-effect", type=float, default=None, help="default stats.min_effect")


def run(args: argparse.Namespace) -> int:
    cfg = BootstrapConfig() if args.min_effect is None else BootstrapConfig(min_effect=args.min_effect)
    print(report(args.version_dir, cfg, args.family, args.target, args.metric), end="")
    return 0
