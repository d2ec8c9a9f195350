"""The paired cluster bootstrap: known answers, the resampling unit, determinism and verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hi4dfix.stats import (
    IMPROVED,
    INCONCLUSIVE,
    NO_VERDICT,
    NOT_MEASURED,
    WORSE,
    BootstrapConfig,
    Estimate,
    mean_distribution,
    mean_estimate,
    scene_distribution,
    scene_estimate,
    verdict,
)

CFG = BootstrapConfig()


def views(frame_sizes, values_of_frame):
    """Frames with the given numbers of views; every view of frame f has value values_of_frame(f, i)."""
    frames, values = [], []
    for frame, size in enumerate(frame_sizes):
        for i in range(size):
            frames.append(frame)
            values.append(values_of_frame(frame, i))
    return np.array(frames), np.array(values, dtype=float)


def test_identical_arms_give_exactly_zero():
    rng = np.random.default_rng(1)
    a = rng.normal(25.0, 3.0, size=40)
    frames = np.repeat(np.arange(8), 5)
    est = scene_estimate(frames, a - a, CFG, "s")
    assert (est.delta, est.ci_low, est.ci_high) == (0.0, 0.0, 0.0)
    assert (est.n_scenes, est.n_frames, est.n_views) == (1, 8, 40)
    assert verdict(est, higher_is_better=True) == INCONCLUSIVE
    scenes = np.repeat(["s1", "s2"], 20)
    mean = mean_estimate(scenes, frames, a - a, CFG)
    assert (mean.delta, mean.ci_low, mean.ci_high) == (0.0, 0.0, 0.0)
    assert (mean.n_scenes, mean.n_frames, mean.n_views) == (2, 8, 40)


def test_constant_shift_gives_exactly_that_shift():
    # 0.1 is not a binary fraction: sums of it round, the interval must still be exactly [0.1, 0.1].
    frames, _ = views([1, 3, 7, 2, 5], lambda f, i: 0.0)
    a = np.random.default_rng(2).uniform(0.1, 0.4, size=len(frames))
    b = a + 0.1
    differences = np.full(len(frames), 0.1)  # the per-view b - a, exact
    est = scene_estimate(frames, differences, CFG, "s")
    assert (est.delta, est.ci_low, est.ci_high) == (0.1, 0.1, 0.1)
    assert verdict(est, higher_is_better=True) == IMPROVED
    assert verdict(est, higher_is_better=False) == WORSE  # e.g. LPIPS went up by 0.1
    scenes = np.where(frames < 2, "s1", "s2")
    mean = mean_estimate(scenes, frames, differences, CFG)
    assert (mean.delta, mean.ci_low, mean.ci_high) == (0.1, 0.1, 0.1)
    # b - a in floating point is c up to rounding: the interval is c up to rounding too
    near = scene_estimate(frames, b - a, CFG, "s")
    assert near.ci_low == pytest.approx(0.1, abs=1e-15) and near.ci_high == pytest.approx(0.1, abs=1e-15)


def test_two_frames_give_the_hand_computed_bootstrap_distribution():
    # frame 0: one view with difference 0; frame 1: three views with difference 1. A resample draws
    # two frames: {0, 0} -> 0 (p 1/4), {0, 1} -> 3/4 (p 1/2: views weigh), {1, 1} -> 1 (p 1/4).
    frames, differences = views([1, 3], lambda f, i: float(f))
    cfg = BootstrapConfig(n_resamples=20000, seed=3)
    distribution = scene_distribution(frames, differences, cfg, "s")
    values, counts = np.unique(distribution, return_counts=True)
    assert values.tolist() == [0.0, 0.75, 1.0]
    n = cfg.n_resamples
    for count, p in zip(counts, (0.25, 0.5, 0.25)):
        assert abs(count - n * p) < 5 * math.sqrt(n * p * (1 - p))
    est = scene_estimate(frames, differences, cfg, "s")
    assert est.delta == 0.75  # the mean over views, not over frames (0.5)
    assert (est.ci_low, est.ci_high) == (0.0, 1.0)  # 2.5% and 97.5% fall in the outer atoms
    assert verdict(est, higher_is_better=True) == INCONCLUSIVE  # the interval touches 0


def test_mean_row_resamples_scenes_then_frames():
    # two scenes of one frame each, means 0 and 1: the mean row's statistic is 0, 1/2 or 1 with
    # probabilities 1/4, 1/2, 1/4 (scenes drawn with replacement); pooling views would give a point.
    scenes = np.array(["a", "a", "b"])
    frames = np.array([0, 0, 0])
    differences = np.array([0.0, 0.0, 1.0])
    cfg = BootstrapConfig(n_resamples=20000, seed=4)
    distribution = mean_distribution(scenes, frames, differences, cfg)
    values, counts = np.unique(distribution, return_counts=True)
    assert values.tolist() == [0.0, 0.5, 1.0]
    for count, p in zip(counts, (0.25, 0.5, 0.25)):
        assert abs(count - cfg.n_resamples * p) < 5 * math.sqrt(cfg.n_resamples * p * (1 - p))
    est = mean_estimate(scenes, frames, differences, cfg)
    assert est.delta == 0.5  # mean of the scene means, not of the 3 views (1/3)
    assert (est.ci_low, est.ci_high) == (0.0, 1.0)
    assert (est.n_scenes, est.n_frames, est.n_views) == (2, 2, 3)


def test_mean_row_adds_frame_variation_within_drawn_scenes():
    # One scene: scene resampling is trivial, the mean row is that scene's frame bootstrap, draw for draw.
    rng = np.random.default_rng(5)
    frames = np.repeat(np.arange(12), 3)
    differences = rng.normal(0.3, 1.0, size=len(frames))
    scene = scene_estimate(frames, differences, CFG, "hi4d_pair02_dance")
    mean = mean_estimate(np.full(len(frames), "hi4d_pair02_dance"), frames, differences, CFG)
    assert (mean.delta, mean.ci_low, mean.ci_high) == (scene.delta, scene.ci_low, scene.ci_high)
    # Two scenes with the same mean: the mean row's spread comes from the frames within them.
    both = mean_estimate(np.repeat(["x", "y"], len(frames)), np.tile(frames, 2), np.tile(differences, 2), CFG)
    assert both.ci_low < both.delta < both.ci_high


def test_single_frame_scene_has_a_point_interval_and_no_verdict_of_change():
    frames = np.zeros(7, dtype=int)
    differences = np.linspace(0.5, 1.5, 7)
    est = scene_estimate(frames, differences, CFG, "s")
    assert est.delta == pytest.approx(1.0)
    assert est.ci_low == est.ci_high == est.delta  # every resample draws the one frame
    assert est.n_frames == 1 and est.n_views == 7
    assert verdict(est, higher_is_better=True) == INCONCLUSIVE  # nothing to tell noise from change
    mean = mean_estimate(np.full(7, "s"), frames, differences, CFG)
    assert verdict(mean, higher_is_better=True) == INCONCLUSIVE  # one scene of one frame


def test_frames_not_views_are_resampled():
    # Views of a frame are perfectly correlated here: 7 copies of the frame's value.
    rng = np.random.default_rng(6)
    per_frame = rng.normal(0.2, 1.0, size=30)
    frames = np.repeat(np.arange(30), 7)
    differences = np.repeat(per_frame, 7)
    by_frame = scene_estimate(frames, differences, CFG, "s")
    one_view_each = scene_estimate(np.arange(30), per_frame, CFG, "s")
    # The copies add no information: the interval is the one of a single view per frame, exactly.
    single = (one_view_each.ci_low, one_view_each.ci_high)
    assert (by_frame.ci_low, by_frame.ci_high) == pytest.approx(single, abs=1e-12)
    # Resampling views as if independent would claim about sqrt(7) times more precision.
    by_view = scene_estimate(np.arange(len(differences)), differences, CFG, "s")
    width = by_frame.ci_high - by_frame.ci_low
    assert width > 2.0 * (by_view.ci_high - by_view.ci_low)


def test_interval_width_matches_the_normal_approximation():
    rng = np.random.default_rng(7)
    per_frame = rng.normal(0.5, 1.0, size=400)
    est = scene_estimate(np.arange(400), per_frame, CFG, "s")
    half_width = 1.959964 * per_frame.std(ddof=1) / math.sqrt(400)
    assert (est.ci_high - est.ci_low) / 2 == pytest.approx(half_width, rel=0.12)
    assert est.ci_low < per_frame.mean() < est.ci_high
    assert verdict(est, higher_is_better=True) == IMPROVED


def test_deterministic_and_independent_of_row_order():
    rng = np.random.default_rng(8)
    scenes = np.repeat(["b", "a", "c"], 20)
    frames = np.tile(np.repeat(np.arange(5), 4), 3)
    differences = rng.normal(0.1, 0.5, size=60)
    first = mean_estimate(scenes, frames, differences, CFG)
    assert mean_estimate(scenes, frames, differences, CFG) == first
    order = rng.permutation(60)
    assert mean_estimate(scenes[order], frames[order], differences[order], CFG) == first
    mine = scenes == "a"
    shuffled = rng.permutation(int(mine.sum()))
    assert scene_estimate(frames[mine][shuffled], differences[mine][shuffled], CFG, "a") == scene_estimate(
        frames[mine], differences[mine], CFG, "a"
    )
    other_seed = mean_estimate(scenes, frames, differences, BootstrapConfig(seed=1))
    assert other_seed.delta == first.delta and (other_seed.ci_low, other_seed.ci_high) != (first.ci_low, first.ci_high)


def test_nan_views_are_left_out_and_all_nan_is_not_measured():
    frames = np.array([0, 0, 1, 1, 2])
    differences = np.array([1.0, math.nan, 2.0, 3.0, math.nan])
    est = scene_estimate(frames, differences, CFG, "s")
    assert est.delta == 2.0 and est.n_views == 3 and est.n_frames == 2  # frame 2 has no measured view
    nothing = scene_estimate(frames, np.full(5, math.nan), CFG, "s")
    assert nothing == NOT_MEASURED and verdict(nothing, True) == NO_VERDICT
    assert mean_estimate(np.full(5, "s"), frames, np.full(5, math.nan), CFG) == NOT_MEASURED
    assert len(scene_distribution(frames, np.full(5, math.nan), CFG, "s")) == 0
    with pytest.raises(ValueError, match="differ in length"):
        scene_estimate(frames, differences[:3], CFG, "s")


def test_verdict_respects_the_metric_direction():
    def est(low, high):
        return Estimate(delta=(low + high) / 2, ci_low=low, ci_high=high, n_scenes=1, n_frames=5, n_views=20)

    assert verdict(est(0.1, 0.3), higher_is_better=True) == IMPROVED  # PSNR up
    assert verdict(est(0.1, 0.3), higher_is_better=False) == WORSE  # LPIPS up
    assert verdict(est(-0.3, -0.1), higher_is_better=False) == IMPROVED  # LPIPS down
    assert verdict(est(-0.3, -0.1), higher_is_better=True) == WORSE
    assert verdict(est(-0.1, 0.3), higher_is_better=True) == INCONCLUSIVE
    assert verdict(est(0.0, 0.3), higher_is_better=True) == INCONCLUSIVE  # touching 0 is not excluding it


def test_config_checks_and_caption():
    assert BootstrapConfig() == BootstrapConfig(n_resamples=2000, confidence=0.95, seed=0)
    for bad in ({"n_resamples": 0}, {"confidence": 1.0}, {"confidence": 0.0}, {"seed": -1}, {"n_resamples": 2.5}):
        with pytest.raises(ValueError, match="stats"):
            BootstrapConfig(**bad)
    text = BootstrapConfig(n_resamples=500, confidence=0.9, seed=7).describe()
    assert "90% percentile intervals" in text and "500 resamples, seed 7" in text and "frames" in text
