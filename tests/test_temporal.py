"""Temporal consistency: flicker against the ground truth over consecutive frames of a camera."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hi4dfix import metrics as M
from hi4dfix.evaluate import evaluate_views
from hi4dfix.io import write_image
from hi4dfix.temporal import FlickerTracker, flicker_metrics, ground_truth_flow, previous_views, warp_to


def texture(h: int, w: int, shift: int = 0, seed: int = 0) -> np.ndarray:
    """A smooth colour texture in [0.2, 0.8] (room for +-0.05 noise without clipping), moved ``shift`` px right."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xx = xx - shift
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)
    image = 0.5 + 0.3 * np.sin(xx[..., None] / 5.0 + phase) * np.cos(yy / 7.0)[..., None]
    return np.clip(image, 0.2, 0.8).astype(np.float32)


@pytest.fixture(scope="module")
def computer():
    with pytest.warns(M.LpipsUnavailableWarning):  # LPIPS does not matter here
        return M.MetricComputer()


def sequence_views(tmp_path, frames=4, cams=(1, 2), h=48, w=64) -> list[dict]:
    """Views of a texture moving 1 px a frame, frame-major like hi4dfix.evaluate.novel_views: the render is
    the ground truth (8-bit PNG), so an arm's own change is all that differs."""
    views = []
    for frame in range(frames):
        for cam in cams:
            path = tmp_path / f"gt_{cam}_{frame}.png"
            write_image(path, texture(h, w, shift=frame, seed=cam))
            views.append({"frame": frame, "cam": cam, "image": path, "target": path, "ref": path})
    return views


def noise_fixer(per_frame: bool, sigma: float = 0.05):
    """A fixer that errs by as much on every view: with ``per_frame`` it adds a noise field rolled by the count
    of views fixed so far (DiFix draws its noise so: a new field on each frame of a camera); without, it adds a
    constant of the noise's root mean square, the same error on every frame. Both have the same squared error,
    so the same PSNR, on every view."""
    field = np.random.default_rng(42).uniform(-sigma, sigma, (48, 64, 3)).astype(np.float32)
    rms = np.float32(np.sqrt(np.mean(field.astype(np.float64) ** 2)))
    done = [0]

    def fix(images, refs):
        out = []
        for image in images:
            error = np.roll(field, 7 * done[0], axis=(0, 1)) if per_frame else rms
            out.append(np.clip(image + error, 0, 1))
            done[0] += 1
        return out

    fix.batch_size = 1
    return fix


def test_a_fixer_with_per_frame_noise_flickers_more_at_equal_psnr(tmp_path, computer):
    views = sequence_views(tmp_path)
    no_mask = lambda view: None  # noqa: E731
    steady = evaluate_views(views, noise_fixer(per_frame=False), computer, no_mask, chunk_views=3)
    noisy = evaluate_views(views, noise_fixer(per_frame=True), computer, no_mask, chunk_views=3)
    for a, b in zip(steady, noisy):
        assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-3)  # equal PSNR on every view
        if a["frame"] == 0:  # a camera's first frame has no previous frame
            assert all(math.isnan(a[c]) and math.isnan(b[c]) for c in M.TEMPORAL_COLUMNS)
            continue
        assert a["flicker"] == pytest.approx(0.0, abs=1e-6)  # the same error on both frames cancels
        assert a["flicker_flow"] < 1e-3
        assert b["flicker"] > 0.02 and b["flicker_flow"] > 0.02
    raw = evaluate_views(views, None, computer, no_mask)
    assert all(r["flicker"] == 0.0 for r in raw if r["frame"] > 0)  # the ground truth itself
    assert list(raw[0]) == ["frame", "cam", *M.METRIC_COLUMNS, M.LPIPS_FLAG_COLUMN]


def test_flow_of_the_ground_truth_warps_the_previous_frame_onto_the_current_one():
    previous, current = texture(64, 80, shift=0), texture(64, 80, shift=2)
    flow = ground_truth_flow(previous, current)
    inner = (slice(8, -8), slice(8, -8))
    assert np.median(flow[..., 0][inner]) == pytest.approx(-2.0, abs=0.25)  # current(p) = previous(p - 2 px)
    warped = warp_to(previous, flow)
    assert np.abs(warped - current)[inner].mean() < 0.25 * np.abs(previous - current)[inner].mean()


def test_flow_warping_forgives_an_arm_that_moves_with_the_scene_and_person_box():
    g0, g1 = texture(64, 80, shift=0), texture(64, 80, shift=2)
    blur0, blur1 = (0.5 * g + 0.25 for g in (g0, g1))  # a steady edit that follows the motion
    mask = np.zeros((64, 80), bool)
    mask[30:40, 30:40] = True
    row = flicker_metrics(blur0, blur1, g0, g1, None, mask, person_min_side=16)
    assert row["flicker_flow"] < 0.5 * row["flicker"]
    box = M.person_bbox(mask, 16)
    crop = [M.crop(im, box) for im in (blur0, blur1, g0, g1)]
    expected = np.abs((crop[1].astype(np.float64) - crop[0]) - (crop[3].astype(np.float64) - crop[2])).mean()
    assert row["flicker_person"] == pytest.approx(expected)
    assert math.isnan(flicker_metrics(blur0, blur1, g0, g1)["flicker_person"])  # no mask: no person region
    with pytest.raises(ValueError, match="four images of one shape"):
        flicker_metrics(blur0[:10], blur1, g0, g1)


def test_views_pair_with_their_cameras_previous_frame_in_any_order():
    keys = [(("s", 2), 10), (("s", 1), 3), (("s", 2), 2), (("s", 1), 1), (("s", 2), 9), (("t", 2), 4)]
    assert previous_views(keys) == [4, 3, None, None, 2, None]
    rng = np.random.default_rng(0)
    images = {i: tuple(rng.random((20, 20, 3)).astype(np.float32) for _ in range(2)) for i in range(6)}

    def scored(order):
        tracker, out = FlickerTracker(keys, person_min_side=8), {}
        for i in order:
            out.update(tracker.add(i, *images[i], None))
        assert tracker.held == 0 and sorted(out) == list(range(6))
        return out

    forward, backward = scored(range(6)), scored(reversed(range(6)))
    for i in range(6):
        assert forward[i] == pytest.approx(backward[i], nan_ok=True)
    with pytest.raises(ValueError, match="repeat a frame"):
        previous_views([(("s", 1), 3), (("s", 1), 3)])
