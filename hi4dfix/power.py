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
when the sign flip can reach the level at all (``family * 2 / 2^S < alpha``).

Training seeds (``tuning.seeds``: the further seeds' CSVs in ``nvs/{arm}/seed{N}/``) add a seed component: a
trained model's deviation common to every scene, estimated from the seeds x scenes table of cell means (two-way
analysis of variance without replication: (MS seeds - MS residual) / scenes). A design of K seeds then has the
effect's variance ``(scene + frame * g / F) / S + seed / K`` (the frame term as measured on seed-averaged frames,
conservatively not shrunk by more seeds): more scenes do not shrink the seed term, more
seeds do, so the plan gives the scenes needed for each seed count (:data:`SEED_OPTIONS`). The tables' test counts
the seed term too (:func:`hi4dfix.stats.seed_level`; one seed: ``too few seeds``), so read a seed term of the
effect's size as "add seeds".
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
SEED_OPTIONS = (1, 3, 5)
MAX_SCENES = 200
FIRST_SEED = "first"  # the seed label of the seedless CSVs (the version's tuning.seed)


@dataclass(frozen=True)
class Components:
    """Variance components of a paired per-view difference (one metric, one comparison)."""

    mean: float  # the observed mean difference (mean of scene means)
    scene_var: float  # between-scene variance of the true scene means
    frame_var: float  # variance of a frame mean around its scene's mean
    rho: float  # lag-1 autocorrelation of consecutive frame means (0 where not measurable)
    n_scenes: int
    n_frames: int  # frames per scene (median)
    seed_var: float = 0.0  # variance of a trained model's deviation common to every scene (0: one seed measured)
    n_seeds: int = 1


def seed_variance(cells: pd.DataFrame) -> float:
    """The seed component of a seeds x scenes table of cell means (rows seeds): two-way ANOVA without
    replication, (MS seeds - MS residual) / scenes, not below 0; NaN cells drop their scene."""
    cells = cells.dropna(axis=1)
    k, s = cells.shape
    if k < 2 or s < 1:
        return 0.0
    x = cells.to_numpy(dtype=np.float64)
    rows, cols, grand = x.mean(axis=1, keepdims=True), x.mean(axis=0, keepdims=True), x.mean()
    ms_seed = s * float(((rows - grand) ** 2).sum()) / (k - 1)
    ms_resid = float(((x - rows - cols + grand) ** 2).sum()) / ((k - 1) * (s - 1)) if s > 1 else 0.0
    return max((ms_seed - ms_resid) / s, 0.0)


def variance_components(views: pd.DataFrame, metric: str) -> Components:
    """``views``: per-view rows ``scene, frame, difference`` (the column ``metric`` holding b - a), and ``seed``
    where several training seeds were measured: frames and scenes from the seed-averaged frames, the seed term
    from the seeds x scenes cell means (:func:`seed_variance`)."""
    seeds = views["seed"].nunique() if "seed" in views.columns else 1
    seed_var = 0.0
    if seeds > 1:
        seed_var = seed_variance(views.groupby(["seed", "scene"])[metric].mean().unstack("scene"))
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
    return Components(
        float(scene_means.mean()), scene_var, frame_var, rho, len(scene_means), int(counts.median()), seed_var, seeds
    )


def inflation(n_frames, rho: float):
    """Variance of a mean of F consecutive AR(1) frames over frame_var / F: 1 + 2 sum_k (1 - k/F) rho^k."""
    n = np.atleast_1d(np.asarray(n_frames, dtype=np.float64))
    out = np.ones_like(n)
    if rho > 0:
        for i, f in enumerate(n):
            k = np.arange(1, int(f))
            out[i] = 1.0 + 2.0 * float(((1 - k / f) * rho**k).sum())
    return out if np.ndim(n_frames) else float(out[0])


def power(
    components: Components,
    n_scenes: int,
    n_frames: int,
    effect: float,
    alpha: float,
    family: int = 1,
    n_seeds: int = 1,
) -> float:
    """Power of the mean row's test to detect ``effect`` with ``n_scenes`` x ``n_frames`` x ``n_seeds`` (module doc):
    0 with one seed (tuned - base has a trained arm: ``too few seeds``). With seeds, the smaller of the t tests'
    powers that must both reject (:func:`hi4dfix.stats.seed_level`): over scenes and seeds (Satterthwaite's degrees
    of freedom from these components) and across the seeds' means (``n_seeds - 1``)."""
    if n_scenes < 2 or family * sign_flip_min_p(n_scenes) >= alpha or n_seeds < 2:
        return 0.0
    scene_var = components.scene_var if math.isfinite(components.scene_var) else 0.0
    # the frame term as measured (on seed-averaged frames), not shrunk by seeds: frames' content is shared
    frame_part = components.frame_var * inflation(n_frames, components.rho) / n_frames
    scene_term, seed_term = (scene_var + frame_part) / n_scenes, components.seed_var / n_seeds
    var = scene_term + seed_term
    if var <= 0:
        return 1.0 if effect != 0 else 0.0
    df = var**2 / (seed_term**2 / (n_seeds - 1) + scene_term**2 / (n_scenes - 1))
    # across the seeds' means: their spread is the seed term and the frames' share of one seed's run
    seeds_var = seed_term + frame_part / (n_scenes * n_seeds)
    return min(_t_power(effect, var, df, alpha / family), _t_power(effect, seeds_var, n_seeds - 1, alpha / family))


def _t_power(effect: float, var: float, df: float, alpha: float) -> float:
    """Power of a two-sided t test at ``alpha`` on an estimate of variance ``var`` with ``df`` degrees of freedom."""
    if var <= 0:
        return 1.0 if effect != 0 else 0.0
    ncp = abs(effect) / math.sqrt(var)
    crit = scipy_stats.t.ppf(1 - alpha / 2, df)
    lower = float(np.nan_to_num(scipy_stats.nct.cdf(-crit, df, ncp)))  # scipy gives NaN for a tail below ~1e-30
    return float(min(scipy_stats.nct.sf(crit, df, ncp) + lower, 1.0))


def plan(
    components: Components,
    effect: float,
    alpha: float,
    family: int = 1,
    target: float = 0.8,
    frame_options: Sequence[int] = FRAME_OPTIONS,
    seed_options: Sequence[int] = (1,),
) -> pd.DataFrame:
    """For each frames-per-scene and seeds option, the fewest scenes with power >= ``target`` (NaN: none up to
    200)."""
    rows = []
    for seeds in seed_options:
        for frames in frame_options:
            at = {s: power(components, s, frames, effect, alpha, family, seeds) for s in range(2, MAX_SCENES + 1)}
            needed = next((s for s, p in at.items() if p >= target), None)
            rows.append(
                {
                    "seeds": seeds,
                    "frames_per_scene": frames,
                    "scenes_needed": needed if needed is not None else math.nan,
                    "power_at_needed": at[needed] if needed else math.nan,
                }
            )
    return pd.DataFrame(rows)


def power_chart(
    components: Components,
    path: str | Path,
    effect: float,
    alpha: float,
    family: int = 1,
    target: float = 0.8,
    frame_options: Sequence[int] = (3, 30, 110),
    seed_options: Sequence[int] = SEED_OPTIONS,
) -> None:
    """Power against scenes, a line per (frames per scene, seeds), the target dashed, as PNG (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hi4dfix.io import atomic_path

    scenes = np.arange(2, 61)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    styles = ("-", "--", ":", "-.")
    for i, seeds in enumerate(seed_options):
        for j, frames in enumerate(frame_options):
            values = [power(components, int(s), frames, effect, alpha, family, seeds) for s in scenes]
            ax.plot(scenes, values, styles[j % len(styles)], color=f"C{i}", label=f"{frames} frames, {seeds} seed(s)")
    ax.axhline(target, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="scenes", ylabel="power", ylim=(0, 1.02), title=f"power to detect {effect:g} at alpha {alpha:g}"
           + (f", Holm over {family}" if family > 1 else ""))  # fmt: skip
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def version_differences(version_dir: str | Path, metric: str, b: str = "tuned", a: str = "base") -> pd.DataFrame:
    """Per-view ``b - a`` of ``metric`` on a version's reserved scenes (``nvs/{arm}/{scene}.csv``), with ``seed``
    (:data:`FIRST_SEED` for those, the seed of ``nvs/{b}/seed{N}/`` for further training seeds'; ``a`` is an arm
    with one run, base by default)."""
    root = Path(version_dir) / "nvs"
    scenes = sorted(p.stem for p in (root / b).glob("*.csv"))
    if not scenes:
        raise ValueError(f"power: no per-scene CSVs under {root / b}")
    keys = ["scene", "frame", "cam"]
    base = arm_views(a, scenes, [root / a / f"{s}.csv" for s in scenes])[[*keys, metric]]
    folders = {FIRST_SEED: root / b}
    folders.update({d.name[4:]: d for d in sorted((root / b).glob("seed*")) if d.name[4:].isdigit()})
    parts = []
    for seed, folder in folders.items():
        tuned = arm_views(b, scenes, [folder / f"{s}.csv" for s in scenes])[[*keys, metric]]
        merged = tuned.merge(base, on=keys, suffixes=("_b", "_a"))
        parts.append(merged.assign(**{metric: merged[f"{metric}_b"] - merged[f"{metric}_a"], "seed": seed}))
    return pd.concat(parts, ignore_index=True)[[*keys, "seed", metric]]


def report(
    version_dir,
    cfg: BootstrapConfig,
    family: int = 1,
    target: float = 0.8,
    metric: str | None = None,
    chart: str | Path | None = None,
) -> str:
    """The plan as text (and, with ``chart``, :func:`power_chart` there)."""
    metric = metric or cfg.primary
    comps = variance_components(version_differences(version_dir, metric), metric)
    seed_options = SEED_OPTIONS
    table = plan(comps, cfg.min_effect, cfg.alpha, family, target, seed_options=seed_options)
    if chart is not None:
        power_chart(comps, chart, cfg.min_effect, cfg.alpha, family, target, seed_options=seed_options)
    seed_line = (
        f"{comps.n_seeds} training seeds: seed SD {math.sqrt(comps.seed_var):.3g} (a trained model's deviation "
        "common to every scene)"
        if comps.n_seeds > 1
        else "one training seed: its spread is not measured, the plan takes it as 0 for 3 and 5 seeds (a lower "
        "bound on what they need; tuning.seeds measures it)"
    )
    lines = [
        f"{version_dir}: tuned - base, {metric}, from {comps.n_scenes} scenes x {comps.n_frames} frames: "
        f"mean {comps.mean:+.3g}, scene SD {math.sqrt(comps.scene_var) if comps.n_scenes > 1 else math.nan:.3g}, "
        f"frame SD {math.sqrt(comps.frame_var):.3g}, frame lag-1 autocorrelation {comps.rho:.2f}"
        + (" (too few frames to measure: 0 assumed)" if comps.n_frames < 10 else ""),
        f"to detect {cfg.min_effect:g} (stats.min_effect) with {target:.0%} power at alpha {cfg.alpha:g}"
        + (f" after Holm over {family}" if family > 1 else "")
        + " (sign-flip test on scene means and t tests over scenes x seeds; t-test power):",
    ]
    lines.insert(1, seed_line)
    for row in table.itertuples():
        needed = "more than 200" if math.isnan(row.scenes_needed) else f"{int(row.scenes_needed)}"
        seeds = f", {row.seeds} seed{'s' if row.seeds > 1 else ''}"
        if row.seeds < 2:  # a trained arm on one seed: too few seeds, however many scenes
            lines.append(f"  {row.frames_per_scene:>4} frames per scene{seeds}: no verdict (too few seeds)")
            continue
        lines.append(f"  {row.frames_per_scene:>4} frames per scene{seeds}: {needed} scenes")
    if chart is not None:
        lines.append(f"chart: {chart}")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("version_dir", help="a finished version's results folder, e.g. results/v0")
    parser.add_argument("--family", type=int, default=1, help="Holm family size (e.g. a grid's variants)")
    parser.add_argument("--power", type=float, default=0.8, dest="target")
    parser.add_argument("--metric", default=None, help="default stats.primary")
    parser.add_argument("--min-effect", type=float, default=None, help="default stats.min_effect")
    parser.add_argument("--chart", type=Path, default=None, help="also write power vs scenes as this PNG")


def run(args: argparse.Namespace) -> int:
    cfg = BootstrapConfig() if args.min_effect is None else BootstrapConfig(min_effect=args.min_effect)
    print(report(args.version_dir, cfg, args.family, args.target, args.metric, args.chart), end="")
    return 0
