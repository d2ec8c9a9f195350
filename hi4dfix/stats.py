"""Paired inference for the mean difference between two arms measured on the same views, at the level of the claim.

The data: one value per view and arm, a view being (scene, frame, camera), and the per-view paired
difference ``d = b - a`` (arm ``b`` against arm ``a``). Views of one frame share the people's pose and the
render's errors, consecutive frames share the motion, and the claim ("tuned DiFix is better") is about
scenes not yet seen. So the unit of inference is the scene for a row that speaks for scenes, and blocks of
consecutive frames for a row that speaks for one scene only.

* **Scene estimate** (:func:`scene_estimate`, a table's scene row: *within that scene only*): the point
  estimate is the mean of ``d`` over the scene's views. Its frames, in time order, are cut into ``k``
  consecutive non-overlapping batches of about ``L`` frames (:func:`block_length`) and the interval is the
  t interval (``k - 1`` degrees of freedom) of the view-weighted batch means, the batch-means method for a
  correlated series; the p-value is the t test's (or, where the batch means do not vary, the exact
  sign-flip test's on them). One batch (one frame): no interval, verdict ``too few frames``.
* **Block length** (:func:`block_length`): from the lag-1 autocorrelation ``r`` of the frame means,
  bias-corrected (``r + (1 + 3 r) / F``, Kendall's first-order bias of the AR(1) estimate) and clipped to
  [0, 0.99]: ``L = ceil(3 (1 + r) / (1 - r))``, three integrated autocorrelation times of an AR(1) series,
  so neighbouring batch means are nearly independent; at most ``F // 2`` (two batches at least). With fewer
  than :data:`MIN_FRAMES_FOR_ACF` frames the autocorrelation cannot be measured: frames are taken as
  independent (``L = 1``) and the tables say so. The calibration bench (``bench/bench_calibration.py``,
  BENCHMARKS.md) measures the coverage this rule holds.
* **Mean estimate** (:func:`mean_estimate`, the ``mean`` row: *across S scenes*): the point estimate is
  the mean over scenes of the per-scene means (every scene weighs the same). Inference treats the S scene
  means as the units: the interval is the t interval on them (``S - 1`` degrees of freedom), the test
  the exact sign-flip (randomization) test of "no difference": all ``2^S`` sign patterns of the scene
  means up to :data:`EXACT_SIGN_FLIP_MAX` scenes, else ``n_resamples`` random patterns with
  ``p = (k + 1) / (B + 1)``; a p-value is never 0. With one scene the row is that scene's within-scene
  estimate and says no more than it.
* **Training seeds** (``trained``: a comparison with an arm trained in the study, so one trained model
  is one draw of the recipe). A trained model is better or worse on every scene at once, so its seed's
  luck is common to the scenes and no test over scenes sees it (BENCHMARKS.md, calibration: 48% false
  verdicts at 12 scenes with one seed of the effect's spread). With one seed that spread is not
  measured: the verdict is ``too few seeds``. With ``K >= 2`` seeds (``replicates``) the scenes x seeds
  table of cell means is a two-way layout without replication: the grand mean's variance is estimated by
  ``(MS_seeds + MS_scenes) / (S K)`` (:func:`crossed_t`; its expectation exceeds the true
  ``seed / K + scene / S + residual / (S K)`` by ``residual / (S K)``, so it errs wide) with
  Satterthwaite's degrees of freedom, which are too many where the seed term dominates (6.5% false verdicts
  at 12 scenes x 3 seeds), so the t test across the K seeds' means (K - 1 degrees of freedom) must reject too
  (:func:`seed_level`). The interval is the hull of the two t intervals, the p-value the largest of the two
  t tests' and the scene sign flip's (all must reject: the sign flip keeps the few-scenes limit). A scene
  row with seeds takes the larger of its batch-means p and the t test across its K seed means, and the
  hull of the two intervals.
* **Verdict** (:func:`verdict`): ``too few scenes`` when the scene-level test cannot reach the level:
  its smallest p-value (``2 / 2^S``) times the Holm family size is not below ``alpha = 1 - confidence``
  (:func:`scenes_needed` says how many would do); ``too few seeds`` for a comparison with a trained arm
  resting on one training seed; ``improved`` / ``worse`` when p (Holm-adjusted where given) is below
  alpha, on the metric's good / bad side; ``equivalent`` when the interval lies inside ``±min_effect``;
  else ``inconclusive``. ``""`` when nothing was measured.
* **Determinism**: Monte Carlo sign patterns come from a ``numpy.random.Generator`` seeded by ``(seed,
  name)``. Views are sorted (scene, frame, value) before any sum, so results do not depend on row order.

NaN differences (a view where either arm lacks the metric) are left out before anything else.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

IMPROVED, WORSE, INCONCLUSIVE, EQUIVALENT = "improved", "worse", "inconclusive", "equivalent"
TOO_FEW_SCENES, TOO_FEW_FRAMES, TOO_FEW_SEEDS = "too few scenes", "too few frames", "too few seeds"
NO_VERDICT = ""  # nothing measured
VERDICTS = (IMPROVED, WORSE, INCONCLUSIVE, EQUIVALENT, TOO_FEW_SCENES, TOO_FEW_FRAMES, TOO_FEW_SEEDS)
UNTESTED = (NO_VERDICT, TOO_FEW_SCENES, TOO_FEW_FRAMES, TOO_FEW_SEEDS)  # no test could reach a verdict
DECIDED = (IMPROVED, WORSE)  # the verdicts that claim a change
FEW_UNITS = 10  # fewer frames than this in a scene: its frames are taken as independent (no autocorrelation)
MIN_FRAMES_FOR_ACF = FEW_UNITS
EXACT_SIGN_FLIP_MAX = 16  # 2^16 sign patterns: enumerated; beyond, Monte Carlo
SIGN_FLIP, T_BATCH_MEANS = "sign-flip", "t on batch means"
SIGN_FLIP_SEEDS = "sign-flip and t over scenes x seeds"  # mean row with training seeds (crossed_t)
T_BATCH_SEEDS = "t on batch means and across seeds"  # scene row with training seeds
_SIGN_STREAM = "\0signs"  # not a scene name: scene names never start with NUL


@dataclass(frozen=True)
class BootstrapConfig:
    """Settings of the paired inference and the declared endpoint (config block ``stats``)."""

    n_resamples: int = 2000  # Monte Carlo sign patterns beyond EXACT_SIGN_FLIP_MAX scenes
    confidence: float = 0.95  # two-sided intervals; tests at alpha = 1 - confidence
    seed: int = 0
    primary: str = "psnr_person"  # the metric a decision is made on
    primary_split: str = "internal"  # and the split (compare.md; never the reserved scenes)
    min_effect: float = 0.5  # smallest primary difference worth adopting, in the metric's units
    secondary: tuple[str, ...] = (
        "psnr", "ssim", "lpips", "flip", "haarpsi", "gmsd", "flicker", "flicker_flow", "ssim_person", "lpips_person",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if int(self.n_resamples) != self.n_resamples or self.n_resamples < 1:
            raise ValueError(f"stats.n_resamples must be a positive integer, got {self.n_resamples!r}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"stats.confidence must be in (0, 1), got {self.confidence!r}")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"stats.seed must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.min_effect, (int, float)) and self.min_effect >= 0):
            raise ValueError(f"stats.min_effect must be a non-negative number, got {self.min_effect!r}")
        if self.primary_split not in ("internal", "reserved"):
            raise ValueError(f"stats.primary_split must be internal or reserved, got {self.primary_split!r}")
        if self.primary in self.secondary:
            raise ValueError(f"stats.secondary repeats the primary metric {self.primary!r}")
        object.__setattr__(self, "secondary", tuple(self.secondary))

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    def describe(self) -> str:
        """One sentence for captions: how the intervals and tests were computed."""
        return (
            f"{self.confidence * 100:g}% intervals; across scenes (mean rows): t interval on the scene means "
            f"and exact sign-flip test of the scene means (all 2^S patterns up to {EXACT_SIGN_FLIP_MAX} scenes, "
            f"else {self.n_resamples} random ones, seed {self.seed}); within one scene (scene rows): t interval "
            "and test on means of consecutive frame batches (batch length from the frames' autocorrelation); "
            "a comparison with a trained arm needs 2 or more training seeds, which then enter as units "
            "(t over the scenes x seeds table, Satterthwaite degrees of freedom)"
        )


@dataclass(frozen=True)
class Estimate:
    """A mean paired difference with its interval, test and what it rests on."""

    delta: float  # point estimate (NaN when nothing was measured)
    ci_low: float
    ci_high: float
    n_scenes: int
    n_frames: int  # frames with at least one measured view
    n_views: int  # views with both arms measured
    p_value: float = math.nan  # two-sided, of "no difference"; never 0
    min_p: float = 0.0  # the smallest p-value the test can give on these units (2 / 2^S for the sign flip)
    test: str = ""  # SIGN_FLIP or T_BATCH_MEANS
    unit: str = ""  # "across 4 scenes", "within hi4d_pair02_dance only (5 batches of 22 frames)"
    n_units: int = 0  # scenes (sign flip) or batches (t on batch means)
    for_scenes: bool = False  # a mean row: it speaks for scenes, so one scene cannot decide it
    n_seeds: int = 0  # training seeds of a comparison with a trained arm (0: none trains, nothing to replicate)

    @property
    def measured(self) -> bool:
        return self.n_views > 0


NOT_MEASURED = Estimate(math.nan, math.nan, math.nan, 0, 0, 0)


# --------------------------------------------------------------------------------------------------
# Pure tests and intervals on units (vectorised over leading axes: the calibration bench uses them)


def sign_flip_p(values, n_resamples: int = 2000, rng: np.random.Generator | None = None) -> np.ndarray:
    """Two-sided sign-flip p-value of "mean 0" for each row of ``values`` (..., S): the share of sign patterns
    whose |mean| reaches the observed one (a relative 1e-12 tolerance, so ties count). Exact (all 2^S
    patterns, the identity among them, so p >= 2 / 2^S by symmetry) up to :data:`EXACT_SIGN_FLIP_MAX`
    units; else ``n_resamples`` random patterns and ``(k + 1) / (B + 1)``."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[-1]
    if n < 1:
        raise ValueError("sign_flip_p needs at least one unit")
    if n <= EXACT_SIGN_FLIP_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        extra, denominator = 0, len(signs)
    else:
        rng = rng if rng is not None else np.random.default_rng(0)
        signs = rng.choice((1.0, -1.0), size=(n_resamples, n))
        extra, denominator = 1, n_resamples + 1
    observed = np.abs(values.sum(axis=-1))
    flipped = np.abs(values @ signs.T)  # (..., patterns)
    tolerance = 1e-12 * np.maximum(np.abs(values).sum(axis=-1), 1e-300)
    k = (flipped >= (observed - tolerance)[..., None]).sum(axis=-1)
    return (k + extra) / denominator


def sign_flip_min_p(n_units: int, n_resamples: int = 2000) -> float:
    """The smallest two-sided p-value :func:`sign_flip_p` can give on ``n_units`` units."""
    return 2.0 / 2.0**n_units if n_units <= EXACT_SIGN_FLIP_MAX else 1.0 / (n_resamples + 1)


def scenes_needed(family: int, alpha: float, n_resamples: int = 2000) -> int:
    """The fewest scenes whose sign-flip test can reach ``alpha`` after Holm over ``family`` comparisons."""
    if family < 1 or not 0 < alpha < 1:
        raise ValueError(f"scenes_needed: family {family} must be >= 1 and alpha {alpha} in (0, 1)")
    n = 1
    while family * sign_flip_min_p(n, n_resamples) >= alpha:
        n += 1
        if n > 64:
            raise ValueError(f"no number of scenes reaches alpha {alpha} over {family} comparisons")
    return n


def t_interval(values, confidence: float, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean of each row of ``values`` (..., n) (``weights``: a weighted mean, and the standard error of a
    weighted mean of independent units) with its t interval (n - 1 degrees of freedom) and two-sided t-test
    p-value: ``(mean, low, high, p)``; NaN interval and p for n < 2; p NaN where the units do not vary."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[-1]
    w = np.ones_like(values) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), values.shape)
    w = w / w.sum(axis=-1, keepdims=True)
    mean = (w * values).sum(axis=-1)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan, nan
    variance = (values - mean[..., None]) ** 2
    # Unbiased for equal weights (the n / (n - 1) correction of the sample variance).
    se = np.sqrt((w**2 * variance).sum(axis=-1) * n / (n - 1))
    q = scipy_stats.t.ppf(0.5 + confidence / 2.0, n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, np.abs(mean) / np.where(se > 0, se, 1.0), np.nan)
    p = 2.0 * scipy_stats.t.sf(t, n - 1)
    return mean, mean - q * se, mean + q * se, p


def crossed_t(cells, confidence: float) -> tuple[np.ndarray, ...]:
    """Grand mean of a scenes x seeds table of cell means (..., S, K) with its t interval and two-sided t-test
    p-value, the grand mean's variance taken as ``(MS_seeds + MS_scenes) / (S K)`` with Satterthwaite's degrees
    of freedom (module doc): ``(mean, low, high, p, df)``. Needs S >= 2 and K >= 2; p NaN where nothing varies."""
    cells = np.asarray(cells, dtype=np.float64)
    s, k = cells.shape[-2:]
    if s < 2 or k < 2:
        raise ValueError(f"crossed_t needs at least 2 scenes and 2 seeds, got {s} x {k}")
    mean = cells.mean(axis=(-2, -1))
    ms_seeds = s * ((cells.mean(axis=-2) - mean[..., None]) ** 2).sum(axis=-1) / (k - 1)
    ms_scenes = k * ((cells.mean(axis=-1) - mean[..., None]) ** 2).sum(axis=-1) / (s - 1)
    total = ms_seeds + ms_scenes
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(total > 0, total**2 / (ms_seeds**2 / (k - 1) + ms_scenes**2 / (s - 1)), np.nan)
        se = np.sqrt(total / (s * k))
        t = np.where(se > 0, np.abs(mean) / np.where(se > 0, se, 1.0), np.nan)
        q = scipy_stats.t.ppf(0.5 + confidence / 2.0, df)
    p = 2.0 * scipy_stats.t.sf(t, df)
    return mean, mean - q * se, mean + q * se, p, df


def seed_level(cells, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The seed level of a mean row (module doc) on a scenes x seeds table of cell means (..., S, K): the hull of
    :func:`crossed_t`'s interval and the t interval across the K seeds' means over scenes (K - 1 degrees of
    freedom, exact where the seed term dominates, where Satterthwaite's are too many), and the larger of the two
    p-values: ``(low, high, p)``; p NaN where nothing varies."""
    cells = np.asarray(cells, dtype=np.float64)
    _, low, high, p, _ = crossed_t(cells, confidence)
    _, seed_low, seed_high, seed_p = t_interval(cells.mean(axis=-2), confidence)
    with np.errstate(invalid="ignore"):
        return np.fmin(low, seed_low), np.fmax(high, seed_high), np.fmax(p, seed_p)


def block_length(frame_means) -> int:
    """Frames per batch for one scene's frame means in time order (module doc: the rule)."""
    x = np.asarray(frame_means, dtype=np.float64)
    n = len(x)
    if n < MIN_FRAMES_FOR_ACF:
        return 1
    centred = x - x.mean()
    denominator = float((centred**2).sum())
    r = float((centred[1:] * centred[:-1]).sum() / denominator) if denominator > 0 else 0.0
    r = min(max(r + (1.0 + 3.0 * r) / n, 0.0), 0.99)
    return int(min(math.ceil(3.0 * (1.0 + r) / (1.0 - r)), n // 2))


def batch_means(sums, counts, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive frames (per-frame sums and view counts, time order) cut into ``len // length`` batches of
    nearly equal size (``numpy.array_split``): each batch's view-weighted mean and its views."""
    sums, counts = np.asarray(sums, np.float64), np.asarray(counts, np.float64)
    k = max(len(sums) // max(length, 1), 1)
    bounds = [len(part) for part in np.array_split(np.arange(len(sums)), k)]
    starts = np.concatenate([[0], np.cumsum(bounds)[:-1]])
    batch_sums, batch_counts = np.add.reduceat(sums, starts), np.add.reduceat(counts, starts)
    return batch_sums / batch_counts, batch_counts


# --------------------------------------------------------------------------------------------------
# Estimates of the tables


@dataclass(frozen=True)
class _Frames:
    """One scene's differences summed per frame (frames in ascending order)."""

    sums: np.ndarray  # float64 (F,)
    counts: np.ndarray  # int64 (F,), views per frame
    low: float  # smallest and largest per-view difference
    high: float

    @property
    def mean(self) -> float:
        return float(np.clip(self.sums.sum() / self.counts.sum(), self.low, self.high))


def _as_arrays(*columns) -> list[np.ndarray]:
    arrays = [np.asarray(column) for column in columns]
    lengths = {len(array) for array in arrays}
    if len(lengths) > 1:
        raise ValueError(f"inference inputs differ in length: {[len(array) for array in arrays]}")
    return arrays


def _frames(frames: np.ndarray, differences: np.ndarray) -> _Frames | None:
    """Per-frame sums of the finite differences; ``None`` when none is finite."""
    differences = differences.astype(np.float64)
    keep = np.isfinite(differences)
    frames, differences = frames[keep], differences[keep]
    if not len(differences):
        return None
    order = np.lexsort((differences, frames))  # sums independent of the input order
    frames, differences = frames[order], differences[order]
    _, starts, counts = np.unique(frames, return_index=True, return_counts=True)
    sums = np.add.reduceat(differences, starts)
    return _Frames(sums, counts.astype(np.int64), float(differences.min()), float(differences.max()))


def _generator(seed: int, name: str) -> np.random.Generator:
    words = np.frombuffer(hashlib.sha256(name.encode()).digest(), dtype=np.uint32)
    return np.random.default_rng(np.random.SeedSequence([seed, *map(int, words)]))


def _within(grouped: _Frames, cfg: BootstrapConfig, scene: str) -> Estimate:
    length = block_length(grouped.sums / grouped.counts)
    means, weights = batch_means(grouped.sums, grouped.counts, length)
    k = len(means)
    delta = grouped.mean
    unit = f"within {scene} only" + (f" ({k} batches of ~{len(grouped.sums) // k} frames)" if length > 1 else "")
    common = dict(n_scenes=1, n_frames=len(grouped.sums), n_views=int(grouped.counts.sum()), unit=unit, n_units=k)
    if k < 2:
        return Estimate(delta, math.nan, math.nan, p_value=math.nan, min_p=1.0, test=T_BATCH_MEANS, **common)
    _, low, high, p = (float(v) for v in t_interval(means, cfg.confidence, weights))
    if math.isnan(p):  # batch means all equal: the t test has no scale; the exact sign flip still answers
        p = float(sign_flip_p(means - 0.0))
        low = high = delta
    # A mean lies between the smallest and largest difference: clipping removes rounding only.
    low, high = float(np.clip(low, -np.inf, grouped.high)), float(np.clip(high, grouped.low, np.inf))
    return Estimate(delta, low, high, p_value=max(p, np.finfo(float).tiny), test=T_BATCH_MEANS, **common)


def scene_estimate(
    frames, differences, cfg: BootstrapConfig, scene: str, replicates=None, trained: bool = False
) -> Estimate:
    """Mean of ``differences`` over one scene's views with its within-scene interval and test (module doc).

    ``frames[i]`` is the frame of view ``i`` (frame numbers give the time order); ``replicates[i]`` (optional)
    its training seed: each seed's frames are a series of their own, as in :func:`mean_estimate`, and with two
    or more seeds the seeds enter the test. ``trained``: an arm of the comparison trains (module doc: seeds)."""
    frames, differences = _as_arrays(frames, differences)
    seeds = _seed_labels(replicates, differences)
    keyed = _replicate_frames(replicates, frames) if replicates is not None else frames
    grouped = _frames(keyed, differences)
    if grouped is None:
        return NOT_MEASURED
    within = _within(grouped, cfg, scene)
    if not trained:
        return within
    if len(seeds) < 2:
        return Estimate(**{**within.__dict__, "n_seeds": 1})
    # The scene's mean for each seed: the seeds' spread is the training noise this scene sees.
    values = differences.astype(np.float64)
    finite = np.isfinite(values)
    labels = np.asarray(replicates).astype(str)[finite]
    seed_means = np.array([np.sort(values[finite][labels == seed]).mean() for seed in seeds])
    _, low, high, p = (float(v) for v in t_interval(seed_means, cfg.confidence))
    if math.isnan(p):  # every seed the same: the seeds add nothing to the frames' evidence
        low, high, p = within.ci_low, within.ci_high, within.p_value
    p = max(p, within.p_value) if not math.isnan(within.p_value) else p
    low, high = min(low, within.ci_low), max(high, within.ci_high)
    return Estimate(
        **{**within.__dict__, "ci_low": low, "ci_high": high, "p_value": p, "test": T_BATCH_SEEDS,
           "unit": f"{within.unit}, {len(seeds)} training seeds", "n_seeds": len(seeds)}
    )  # fmt: skip


def _seed_labels(replicates, differences) -> list[str]:
    """The distinct training seeds among the views with a finite difference (none: ``[]``)."""
    if replicates is None:
        return []
    replicates, differences = _as_arrays(replicates, differences)
    finite = np.isfinite(differences.astype(np.float64))
    return sorted(set(replicates.astype(str)[finite].tolist()))


def _replicate_frames(replicates, frames) -> np.ndarray:
    """Frames keyed by (replicate, frame): frames of different training seeds are different units of the
    scene's series, so a scene's mean weighs its seeds by their views (equal frames: the seed-averaged
    scene mean) and the scene stays the unit of the mean row."""
    replicates, frames = _as_arrays(replicates, frames)
    return np.asarray([f"{r}\0{int(f):012d}" for r, f in zip(replicates, frames)])


def _scene_parts(scenes, frames, differences, replicates) -> dict[str, _Frames]:
    scenes, frames, differences = _as_arrays(scenes, frames, differences)
    scenes = scenes.astype(str)
    if replicates is not None:
        frames = _replicate_frames(replicates, frames)
    grouped: dict[str, _Frames] = {}
    for scene in sorted(set(scenes.tolist())):
        mine = scenes == scene
        found = _frames(frames[mine], differences[mine])
        if found is not None:
            grouped[scene] = found
    return grouped


def mean_estimate(
    scenes, frames, differences, cfg: BootstrapConfig, replicates=None, trained: bool = False
) -> Estimate:
    """Mean over scenes of the per-scene mean differences, with the across-scenes interval and sign-flip
    test (module doc); one scene: its within-scene estimate. ``scenes[i]`` and ``frames[i]`` locate view
    ``i``; ``replicates[i]`` (optional) its training seed. A scene without a finite difference is left out.
    ``trained``: an arm of the comparison trains, so its training seeds are units too (module doc)."""
    grouped = _scene_parts(scenes, frames, differences, replicates)
    if not grouped:
        return NOT_MEASURED
    seeds = _seed_labels(replicates, differences)
    n_seeds = (len(seeds) or 1) if trained else 0
    parts = list(grouped.values())
    n_frames, n_views = sum(len(p.sums) for p in parts), int(sum(p.counts.sum() for p in parts))
    if len(parts) == 1:
        name, part = next(iter(grouped.items()))
        one = _within(part, cfg, name)
        return Estimate(
            **{**one.__dict__, "n_frames": n_frames, "n_views": n_views, "for_scenes": True, "n_seeds": n_seeds}
        )
    means = np.array([part.mean for part in parts])
    low_all, high_all = min(p.low for p in parts), max(p.high for p in parts)
    delta = float(np.clip(means.mean(), low_all, high_all))
    _, low, high, _ = (float(v) for v in t_interval(means, cfg.confidence))
    if not means.std() > 0:  # every scene the same: rounding only
        low = high = delta
    low, high = float(np.clip(low, -np.inf, high_all)), float(np.clip(high, low_all, np.inf))
    p = float(sign_flip_p(means - 0.0, cfg.n_resamples, _generator(cfg.seed, _SIGN_STREAM)))
    test, unit = SIGN_FLIP, f"across {len(parts)} scenes"
    if n_seeds >= 2:
        cells = _cells(scenes, replicates, differences, list(grouped), seeds)
        if cells is None:  # fewer than 2 scenes measured in every seed: the seeds' spread is not measured
            n_seeds = 1
        else:
            low_t, high_t, p_t = (float(v) for v in seed_level(cells, cfg.confidence))
            if not math.isnan(p_t):
                low, high, p = low_t, high_t, max(p, p_t)
            test, unit = SIGN_FLIP_SEEDS, f"across {len(parts)} scenes x {n_seeds} training seeds"
    return Estimate(
        delta, low, high, len(parts), n_frames, n_views, p_value=p,
        min_p=sign_flip_min_p(len(parts), cfg.n_resamples), test=test,
        unit=unit, n_units=len(parts), for_scenes=True, n_seeds=n_seeds,
    )  # fmt: skip


def _cells(scenes, replicates, differences, scene_names, seeds) -> np.ndarray | None:
    """The scenes x seeds table of cell means (mean of the cell's finite differences, summed in sorted order) of
    the scenes measured in every seed; None when fewer than 2 are."""
    scenes, replicates, differences = _as_arrays(scenes, replicates, differences)
    differences = differences.astype(np.float64)
    finite = np.isfinite(differences)
    scenes, replicates, differences = scenes.astype(str)[finite], replicates.astype(str)[finite], differences[finite]
    cells = np.full((len(scene_names), len(seeds)), np.nan)
    for i, scene in enumerate(scene_names):
        mine = scenes == scene
        for j, seed in enumerate(seeds):
            values = differences[mine & (replicates == seed)]
            if len(values):
                cells[i, j] = np.sort(values).mean()
    cells = cells[~np.isnan(cells).any(axis=1)]
    return cells if len(cells) >= 2 else None


def verdict(
    estimate: Estimate,
    higher_is_better: bool,
    alpha: float = 0.05,
    p_value: float | None = None,
    family: int = 1,
    min_effect: float = 0.0,
) -> str:
    """The verdict of arm b against arm a (module doc). ``p_value``: the Holm-adjusted p where the row is one
    of ``family`` comparisons (default: the estimate's own p, a family of one); ``min_effect`` > 0 allows
    ``equivalent``."""
    if not estimate.measured:
        return NO_VERDICT
    if estimate.for_scenes and (estimate.n_scenes < 2 or family * estimate.min_p >= alpha):
        return TOO_FEW_SCENES  # one scene, or too few for the sign-flip test to reach alpha after Holm
    if estimate.n_units < 2:
        return TOO_FEW_FRAMES  # one batch: no within-scene variation to test against
    if estimate.n_seeds == 1:
        return TOO_FEW_SEEDS  # one trained model: its seed's luck is not measured (module doc)
    p = estimate.p_value if p_value is None else p_value
    if p < alpha and estimate.delta != 0:
        return IMPROVED if (estimate.delta > 0) == higher_is_better else WORSE
    if min_effect > 0 and -min_effect < estimate.ci_low and estimate.ci_high < min_effect:
        return EQUIVALENT
    return INCONCLUSIVE


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN ones are left out of the family and stay NaN):
    the i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j))."""
    p_values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p_values, np.nan)
    finite = np.flatnonzero(np.isfinite(p_values))
    order = finite[np.argsort(p_values[finite], kind="stable")]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
