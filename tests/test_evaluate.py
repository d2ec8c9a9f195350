"""NVS evaluation arms (postfix and difix3d+) and the DiFix internal evaluation, with stand-in fixers."""

from __future__ import annotations

import numpy as np
import pytest

from hi4dfix.difix3d_plus import interpolate_camera
from hi4dfix.evaluate import evaluate_difix_arms, evaluate_nvs, novel_views
from hi4dfix.io import read_image
from hi4dfix.metrics import MetricComputer
from hi4dfix.render import read_render_manifest
from hi4dfix.render.fit import RenderConfig
from hi4dfix.triplets import TripletConfig, build_triplets

PROFILE = {"source": "fit", "fit_steps": 6, "num_gaussians": 300, "device": "cpu"}


@pytest.fixture(scope="module")
def metrics():
    with pytest.warns(UserWarning):  # no LPIPS backbone offline
        return MetricComputer()




def test_raw_arm_scores_the_renders_and_lists_every_heldout_view(materialized_scene, rendered_scene, metrics, tmp_path):
    rows = evaluate_nvs("postfix", materialized_scene.root, rendered_scene, PROFILE, None, metrics, tmp_path / "raw")
    manifest = read_render_manifest(rendered_scene)
    heldout = {(item["frame"], item["cam"]): item["psnr"] for item in manifest["images"] if not item["is_source"]}
    assert {(row["frame"], row["cam"]) for row in rows} == set(heldout)
    for row in rows:
        assert row["psnr"] == pytest.approx(heldout[(row["frame"], row["cam"])], abs=1e-6)
        assert np.isnan(row["lpips"]) and row["lpips_computed"] is False
        assert 0 < row["ssim"] < 1 and np.isfinite(row["psnr_person"])
    assert len(list((tmp_path / "raw").rglob("*.png"))) == len(rows)


def test_postfix_feeds_the_source_view_as_reference(materialized_scene, rendered_scene, metrics, tmp_path):
    seen = []

    def blend_with_reference(images, refs):
        seen.extend(refs)
        return [0.5 * image + 0.5 * ref for image, ref in zip(images, refs)]

    rows = evaluate_nvs("postfix", materialized_scene.root, rendered_scene, PROFILE, blend_with_reference, metrics)
    views = novel_views(materialized_scene, rendered_scene)
    assert len(seen) == len(rows) == len(views)
    for ref, view in zip(seen, views):
        assert view["ref_cam"] == materialized_scene.mono_cam
        np.testing.assert_array_equal(ref, read_image(view["ref"]))
    raw = evaluate_nvs("postfix", materialized_scene.root, rendered_scene, PROFILE, None, metrics)
    assert [r["psnr"] for r in rows] != [r["psnr"] for r in raw]


def test_difix3d_plus_refits_with_fixed_novel_views(materialized_scene, rendered_scene, metrics, tmp_path):
    calls = []

    def identity(images, refs):
        calls.append(len(images))
        return [image.copy() for image in images]

    rows = evaluate_nvs("difix3d+", materialized_scene.root, rendered_scene, PROFILE, identity, metrics, tmp_path / "plus")
    heldout = len(materialized_scene.cam_ids) - 1
    frames = len(materialized_scene.frames)
    # two progressive rounds per frame plus the final post-fix of all held-out views
    assert calls == [heldout] * (2 * frames) + [heldout * frames]
    assert len(rows) == heldout * frames
    assert len(list((tmp_path / "plus" / "progressive").rglob("*.png"))) == heldout * frames


def test_difix3d_plus_needs_fitted_renders(materialized_scene, rendered_scene, metrics, tmp_path):
    with pytest.raises(ValueError, match="source: fit"):
        evaluate_nvs("difix3d+", materialized_scene.root, rendered_scene, {"source": "external"}, lambda i, r: i, metrics, tmp_path)
    with pytest.raises(ValueError, match="nvs.mode"):
        evaluate_nvs("prefix", materialized_scene.root, rendered_scene, PROFILE, None, metrics)


def test_interpolated_camera_ends_on_both_cameras(materialized_scene):
    start, end = (materialized_scene.cameras[c] for c in materialized_scene.cam_ids[:2])
    np.testing.assert_allclose(interpolate_camera(start, end, 0.0).w2c, start.w2c, atol=1e-6)
    np.testing.assert_allclose(interpolate_camera(start, end, 1.0).w2c, end.w2c, atol=1e-6)
    middle = interpolate_camera(start, end, 0.5)
    np.testing.assert_allclose(middle.w2c[:3, :3] @ middle.w2c[:3, :3].T, np.eye(3), atol=1e-9)
    assert np.linalg.norm(middle.center - start.center) == pytest.approx(np.linalg.norm(middle.center - end.center))


def test_difix_arms_on_test_triplets(materialized_scene, rendered_scene, metrics):
    triplets = build_triplets({}, {materialized_scene.name: (materialized_scene, rendered_scene)}, TripletConfig())
    fixers = {"raw": None, "to_reference": lambda images, refs: list(refs)}
    rows = evaluate_difix_arms(triplets["test"], fixers, metrics, [materialized_scene.root])
    assert {row["arm"] for row in rows} == set(fixers)
    assert len(rows) == 2 * len(triplets["test"])
    raw = {row["id"]: row["psnr"] for row in rows if row["arm"] == "raw"}
    assert set(raw) == set(triplets["test"])
    with pytest.raises(ValueError, match="without a materialized scene"):
        evaluate_difix_arms(triplets["test"], fixers, metrics, [])
