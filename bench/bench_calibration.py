"""Calibration of the verdicts and intervals, OLD rule (percentile cluster bootstrap, today's main b4416f4,
reimplemented here vectorised) beside NEW (hi4dfix.stats: sign-flip test and t interval on scene means; within
one scene, t on batch means of consecutive frames), on simulated data sets at the study's shapes.

    python bench/bench_calibration.py [--sets 1000] [--resamples 500] [--append BENCHMARKS.md]

Data: per-view difference = effect + scene effect (SD 1) + frame effect (SD 1; AR(1) over consecutive frames where
rho > 0) + view noise (SD 0.5) + a training-seed effect (SD 1, the size of the effect, where a shape has seeds:
BENCHMARKS.md's rows G and G2, one setting trained twice, differ as much as the study's effects). A seed's effect
is common to every scene (a trained model is better or worse everywhere); the frames' effects are the same for
every seed (the same views), the view noise is the seed's own. OLD and the scene-only part of NEW see the
seed-averaged data (the tables' seed-averaged scene means); NEW's seed level sees the scenes x seeds cell means
(hi4dfix.stats.seed_level) and says ``too few seeds`` with one seed. The claim is about the setting, over seeds, so
the truth stays the effect. Null: effect 0. "false verdicts": improved or worse under the null (one comparison,
alpha 0.05). "coverage": the 95% interval holds the truth (NEW's one-scene row is within-scene evidence and makes no
verdict, so its coverage is of the scene's own mean). "power": improved under effect 1. "verdict allowed": whether
the rule can reach a verdict at that shape (the goal, at most 6% false verdicts and 93% coverage, is for those).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hi4dfix.stats import (  # noqa: E402
    BootstrapConfig,
    scene_estimate,
    seed_level,
    sign_flip_min_p,
    sign_flip_p,
    t_interval,
)

# (name, scenes, frames, AR(1) rho, training seeds: 0 = no seed level, the model taken as fixed; seed SD)
SHAPES = (("4 scenes x 3 frames x 7 views", 4, 3, 0.0, 0, 0.0),
          ("1 scene x 110 AR(1) frames, rho 0.95", 1, 110, 0.95, 0, 0.0),
          ("12 scenes x 3 frames x 7 views", 12, 3, 0.0, 0, 0.0),
          ("4 scenes x 3 frames, 1 seed (seed SD 1)", 4, 3, 0.0, 1, 1.0),
          ("4 scenes x 3 frames, 3 seeds (seed SD 1)", 4, 3, 0.0, 3, 1.0),
          ("12 scenes x 3 frames, 1 seed (seed SD 1)", 12, 3, 0.0, 1, 1.0),
          ("12 scenes x 3 frames, 3 seeds (seed SD 1)", 12, 3, 0.0, 3, 1.0),
          ("12 scenes x 3 frames, 5 seeds (seed SD 1)", 12, 3, 0.0, 5, 1.0),
          ("12 scenes x 3 frames, 3 seeds (seed SD 0)", 12, 3, 0.0, 3, 0.0))  # fmt: skip
VIEWS = 7


def simulate(rng, n_sets, scenes, frames, rho, effect, seeds=0, seed_sd=1.0):
    """Per-frame mean differences (n_sets, scenes, max(seeds, 1), frames) of each training seed, and each data
    set's per-scene true means (of the setting: over seeds)."""
    scene = rng.normal(0, 1, (n_sets, scenes, 1, 1))
    seed = rng.normal(0, seed_sd, (n_sets, 1, seeds, 1)) if seeds else 0.0
    z = rng.normal(0, 1, (n_sets, scenes, 1, frames))
    if rho > 0:
        for t in range(1, frames):
            z[..., t] = rho * z[..., t - 1] + np.sqrt(1 - rho**2) * z[..., t]
    views = rng.normal(0, 0.5 / np.sqrt(VIEWS), (n_sets, scenes, max(seeds, 1), frames))  # mean of 7 views' noise
    return effect + scene + z + views + seed, effect + scene[:, :, 0, 0]


def old_rule(rng, x, resamples):
    """Percentile bootstrap: scenes with replacement, then frames within each drawn scene (main b4416f4)."""
    n, s, f = x.shape
    picked_scenes = rng.integers(0, s, (n, resamples, s))
    picked_frames = rng.integers(0, f, (n, resamples, s, f))
    rows = np.arange(n)[:, None, None, None]
    stat = x[rows, picked_scenes[..., None], picked_frames].mean(axis=(2, 3))
    low, high = np.quantile(stat, [0.025, 0.975], axis=1)
    return low, high


def new_rule(cells_by_frame, cfg, seeds):
    """NEW's interval and p (1 where no verdict is allowed) from the per-seed data (n, S, K, F)."""
    x = cells_by_frame.mean(axis=2)
    n, s, f = x.shape
    if s == 1:  # within-scene evidence only: no verdict about scenes; its interval covers the scene's mean
        lows, highs = np.empty(n), np.empty(n)
        frames = np.repeat(np.arange(f), VIEWS)
        for i in range(n):
            est = scene_estimate(frames, np.repeat(x[i, 0], VIEWS), cfg, "s")
            lows[i], highs[i] = est.ci_low, est.ci_high
        return lows, highs, np.ones(n)
    means = x.mean(axis=2)
    _, low, high, _ = t_interval(means, cfg.confidence)
    p = sign_flip_p(means, cfg.n_resamples, np.random.default_rng(cfg.seed))
    p = np.where(sign_flip_min_p(s, cfg.n_resamples) >= cfg.alpha, 1.0, p)  # too few scenes: no verdict
    if seeds == 1:
        p = np.ones(n)  # too few seeds: one trained model's luck is not measured
    elif seeds > 1:
        low, high, p_seeds = seed_level(cells_by_frame.mean(axis=3), cfg.confidence)
        p = np.maximum(p, np.where(np.isnan(p_seeds), 1.0, p_seeds))
    return low, high, p


def allowed(scenes, seeds, cfg) -> bool:
    """Whether NEW can reach a verdict at this shape (one comparison)."""
    return scenes > 1 and sign_flip_min_p(scenes, cfg.n_resamples) < cfg.alpha and seeds != 1


def run(n_sets, resamples, seed=0):
    rng = np.random.default_rng(seed)
    cfg = BootstrapConfig(n_resamples=resamples)
    rows = []
    for name, scenes, frames, rho, seeds, seed_sd in SHAPES:
        result = {"shape": name, "allowed": allowed(scenes, seeds, cfg)}
        for effect in (0.0, 1.0):
            per_seed, scene_truth = simulate(rng, n_sets, scenes, frames, rho, effect, seeds, seed_sd)
            x = per_seed.mean(axis=2)
            o_low, o_high = old_rule(rng, x, resamples)
            n_low, n_high, p = new_rule(per_seed, cfg, seeds)
            truth = np.full(n_sets, effect)
            old_verdict = (o_low > 0) | (o_high < 0)
            new_verdict = p < cfg.alpha
            tag = "null" if effect == 0 else "effect"
            result[f"old {tag} verdicts"] = float(old_verdict.mean() if effect == 0 else (o_low > 0).mean())
            result[f"new {tag} verdicts"] = float(
                new_verdict.mean() if effect == 0 else (new_verdict & (x.mean((1, 2)) > 0)).mean()
            )
            if effect == 0:
                result["old coverage"] = float(((o_low <= truth) & (truth <= o_high)).mean())
                target = scene_truth[:, 0] if scenes == 1 else truth
                result["new coverage"] = float(((n_low <= target) & (target <= n_high)).mean())
        rows.append(result)
    return rows


def markdown(rows, n_sets, resamples) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        f"## Calibration of verdicts and intervals: old percentile bootstrap vs new scene-level rule ({today})",
        "",
        f"Command: `nice python bench/bench_calibration.py --sets {n_sets} --resamples {resamples}`; device: "
        "developers' 2-core machine, shared (CPU). Null: effect 0 (false verdicts: improved or worse, one comparison, "
        "alpha 0.05); coverage of the 95% interval under the null (new one-scene row: of that scene's own mean, "
        "it makes no verdict about scenes); power: improved under an effect of 1 (scene SD 1, frame SD 1). "
        f"Monte Carlo SE of a 5% rate over {n_sets} sets: {100 * (0.05 * 0.95 / n_sets) ** 0.5:.1f} points.",
        "",
        "| shape | verdict allowed (new) | false verdicts old | false verdicts new | coverage old | coverage new "
        "| power old | power new |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {'yes' if r['allowed'] else 'no'} "
            f"| {r['old null verdicts']:.1%} | {r['new null verdicts']:.1%} | {r['old coverage']:.1%} "
            f"| {r['new coverage']:.1%} | {r['old effect verdicts']:.1%} | {r['new effect verdicts']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--append", type=Path)
    args = parser.parse_args()
    text = markdown(run(args.sets, args.resamples), args.sets, args.resamples)
    print(text)
    if args.append:
        with args.append.open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
