"""NVS evaluation arms (postfix and difix3d+) and the DiFix internal evaluation, with stand-in fixers."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch

from hi4dfix.difix.infer import DifixFixer, InferenceConfig, difix_fixer
from hi4dfix.difix3d_plus import ProgressiveConfig
from hi4dfix.evaluate import chunk_length, evaluate_difix_arms, evaluate_nvs, evaluate_views, novel_views
from hi4dfix.io import read_image
from hi4dfix.metrics import MetricComputer
from hi4dfix.render import read_render_manifest
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
        calls.append((len(images), refs is None))
        return [image.copy() for image in images]

    def run(postfix):
        calls.clear()
        return evaluate_nvs(
            "difix3d+", materialized_scene.root, rendered_scene, PROFILE, identity, metrics, tmp_path / postfix,
            chunk_views=8, progressive=ProgressiveConfig(rounds=2, postfix=postfix),
        )  # fmt: skip

    rows = run("single")
    heldout = len(materialized_scene.cam_ids) - 1
    frames = len(materialized_scene.frames)
    # two progressive rounds per frame (with references), then the post-fix of all held-out views in
    # chunks of 8, as a single-image DiFix (no reference), as upstream's post-render step
    assert calls[: 2 * frames] == [(heldout, False)] * (2 * frames)
    assert calls[2 * frames :] == [(8, True), (8, True), (heldout * frames - 16, True)]
    assert len(rows) == heldout * frames
    assert len(list((tmp_path / "single" / "progressive").rglob("*.png"))) == heldout * frames
    run("reference")
    assert [refs_none for _, refs_none in calls[2 * frames :]] == [False] * 3
    run("none")
    assert len(calls) == 2 * frames  # no post-fix


def test_difix3d_plus_needs_fitted_renders(materialized_scene, rendered_scene, metrics, tmp_path):
    with pytest.raises(ValueError, match="source: fit"):
        evaluate_nvs(
            "difix3d+",
            materialized_scene.root,
            rendered_scene,
            {"source": "external"},
            lambda i, r: i,
            metrics,
            tmp_path,
        )
    with pytest.raises(ValueError, match="nvs.mode"):
        evaluate_nvs("prefix", materialized_scene.root, rendered_scene, PROFILE, None, metrics)


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


# ---- streaming and the pipeline's DiFix fixer ---------------------------------------------------


class LiveArrays:
    """Counts the image arrays alive at once (readers and fixers register what they return)."""

    def __init__(self):
        self.refs: list[weakref.ref] = []
        self.peak = 0

    def track(self, array):
        self.refs.append(weakref.ref(array))
        self.peak = max(self.peak, sum(ref() is not None for ref in self.refs))
        return array


def test_evaluate_views_holds_one_chunk_of_views_at_a_time(
    materialized_scene, rendered_scene, metrics, monkeypatch, tmp_path
):
    import hi4dfix.evaluate as evaluate

    live = LiveArrays()
    monkeypatch.setattr(evaluate, "read_image", lambda path: live.track(read_image(path)))
    calls = []

    def brighten(images, refs):
        calls.append(len(images))
        return [live.track(np.clip(image * 0.5 + ref * 0.5, 0, 1)) for image, ref in zip(images, refs)]

    views = novel_views(materialized_scene, rendered_scene)
    mask_of = lambda view: materialized_scene.load_mask(view["cam"], view["frame"])  # noqa: E731
    chunked = evaluate_views(views, brighten, metrics, mask_of, tmp_path / "chunked", chunk_views=4)
    assert len(views) == 21 and calls == [4, 4, 4, 4, 4, 1]
    cams = len({view["cam"] for view in views})
    # image, reference, output and target of the views of one chunk, and for the temporal metrics the
    # output and target of each camera's previous frame (views come frame by frame)
    assert live.peak <= 4 * 4 + 2 * cams
    whole = evaluate_views(views, brighten, metrics, mask_of, tmp_path / "whole", chunk_views=len(views))
    assert chunked == whole
    assert live.peak >= 3 * len(views)  # the check above would catch a job holding every view


def test_chunks_are_whole_batches_of_the_fixer():
    class Batched:
        batch_size = 4

    assert chunk_length(None, 5) == 5 and chunk_length(lambda i, r: i, 5) == 5
    assert chunk_length(Batched(), 5) == 8 and chunk_length(Batched(), 8) == 8
    with pytest.raises(ValueError, match="chunk_views"):
        chunk_length(None, 0)


@pytest.fixture(scope="module")
def sampling_model():
    """A tiny DiFix that draws latent noise (as sd-turbo does), so seeds matter."""
    from hi4dfix.difix.config import DifixConfig
    from hi4dfix.difix.infer import prepare_for_inference
    from hi4dfix.difix.model import build_random_difix

    model = build_random_difix(DifixConfig(preset="tiny", latent_sampling="sample", init_seed=2))
    return prepare_for_inference(model, torch.device("cpu"))


def test_fixer_gives_the_same_images_in_chunks_as_at_once(
    materialized_scene, rendered_scene, metrics, sampling_model, tmp_path
):
    from hi4dfix.difix.infer import fix_images

    views = novel_views(materialized_scene, rendered_scene)[:7]
    images = [read_image(view["image"]) for view in views]
    refs = [read_image(view["ref"]) for view in views]
    reference = fix_images(sampling_model, images, refs, batch_size=2)
    fixer = DifixFixer(sampling_model, batch_size=2)
    pieces = fixer(images[:4], refs[:4]) + fixer(images[4:], refs[4:])
    for expected, got in zip(reference, pieces):
        np.testing.assert_allclose(got, expected, atol=1e-6)
    assert fixer.views_done == 7
    timing = fixer.timing()
    assert (timing.first_views, timing.views) == (2, 5) and timing.ms_per_view > 0

    mask_of = lambda view: materialized_scene.load_mask(view["cam"], view["frame"])  # noqa: E731
    rows = {
        chunk: evaluate_views(
            views, DifixFixer(sampling_model, batch_size=2), metrics, mask_of, tmp_path / str(chunk), chunk
        )
        for chunk in (3, 100)  # 3 is rounded up to 4: two whole batches
    }
    assert rows[3] == rows[100]


def test_padded_batches_give_the_model_one_shape(sampling_model, monkeypatch):
    from hi4dfix.difix.data import model_input_size
    from hi4dfix.difix.infer import fix_images

    rng = np.random.default_rng(0)
    images = [rng.random((40, 56, 3), dtype=np.float32) for _ in range(5)]
    plain = fix_images(sampling_model, images, images, batch_size=2)
    shapes = []
    forward = type(sampling_model).forward

    def recording_forward(self, views, *args, **kwargs):
        shapes.append(tuple(views.shape))
        return forward(self, views, *args, **kwargs)

    monkeypatch.setattr(type(sampling_model), "forward", recording_forward)
    padded = fix_images(sampling_model, images, images, batch_size=2, pad_batches=True)
    assert shapes == [(2, 2, 3, *model_input_size(40, 56))] * 3
    for expected, got in zip(plain, padded):
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_inference_settings_auto_compiles_on_cuda_only():
    auto = InferenceConfig()
    assert auto.compiled_on("cuda") and not auto.compiled_on("cpu")
    assert (auto.dtype_name_on("cuda"), auto.dtype_name_on("cpu")) == ("bfloat16", "float32")
    assert not InferenceConfig(compile=False).compiled_on("cuda") and InferenceConfig(compile=True).compiled_on("cpu")
    assert InferenceConfig.from_dict({"dtype": "float32"}).dtype_name_on("cuda") == "float32"
    with pytest.raises(ValueError, match="unknown keys"):
        InferenceConfig.from_dict({"compiled": True})
    with pytest.raises(ValueError, match="dtype"):
        InferenceConfig(dtype="fp8")


def test_difix_fixer_on_cpu_is_eager_float32_with_the_configured_batch():
    fixer = difix_fixer("tiny-random", device="cpu", inference={"batch_size": 3, "compile": "auto"}, seed=5)
    assert isinstance(fixer, DifixFixer) and fixer.batch_size == 3 and not fixer.fixed_shapes
    assert fixer.model.vae.dtype == torch.float32 and fixer.model._compiled_fix is None
    assert fixer.fix_options == {"seed": 5, "resolution": None, "long_side": None}
    assert difix_fixer(None) is None
