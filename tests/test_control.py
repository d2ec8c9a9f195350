"""The control arm's training data: fresh out-of-domain triplets, never the study's scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hi4dfix.difix.control import (
    CONTROL_TRIPLETS_NAME,
    ControlDataConfig,
    check_control_triplets,
    check_fresh,
    control_images,
    control_triplets_path,
    write_control_triplets,
)


def difix_block(**changes):
    control = {"enabled": True, "triplets": None, "seed": 1}
    return {"base": "pretrain", "preset": "tiny", "control": control, "pretrain": {"seed": 0}, **changes}


def test_control_triplets_are_fresh_ones_or_named():
    assert control_triplets_path(difix_block(), "results") == f"results/difix_control/{CONTROL_TRIPLETS_NAME}"
    # a released base gets fresh out-of-domain triplets too (it has no "own data" in the study)
    released = difix_block(base="nvidia/difix_ref")
    assert control_triplets_path(released, "results") == f"results/difix_control/{CONTROL_TRIPLETS_NAME}"
    named = difix_block(base="nvidia/difix_ref", control={"enabled": True, "triplets": "/data/dl3dv.json"})
    assert control_triplets_path(named, "results") == "/data/dl3dv.json"
    check_fresh(difix_block())
    check_fresh(released)  # a released base was not pretrained here: any seed is fresh
    # the pretraining's seed would give the base's own scenes back
    with pytest.raises(ValueError, match="difix.control.seed is 0, difix.pretrain.seed's too"):
        check_fresh(difix_block(control={"enabled": True, "triplets": None, "seed": 0}))
    with pytest.raises(ValueError, match="difix.control.n_train_scenes must be >= 1"):
        ControlDataConfig(n_train_scenes=0)
    assert ControlDataConfig.from_control({"enabled": True, "triplets": None, "seed": 3}).seed == 3


def test_fresh_control_triplets_come_from_the_render_path_not_the_study(tmp_path):
    """The control's data is generated content only: every image under its own folder, none in the Hi4D root,
    the scenes or the renders, and none equal to the pretraining's (seed 0) scenes."""
    from hi4dfix.difix.ood_scenes import OODSceneConfig, write_ood_triplets
    from hi4dfix.io import read_image
    from hi4dfix.render.fit import RenderConfig

    profile = {"source": "fit", "external_pattern": None, "backend": "torch", "device": "cpu", "fit_steps": 2}
    profile["num_gaussians"] = 60
    path = tmp_path / "results/difix_control/triplets.json"
    cfg = ControlDataConfig(n_train_scenes=2, n_test_scenes=1, seed=1)
    assert write_control_triplets(path, cfg, (32, 32), profile, workers=1) == 2 * 7
    forbidden = {
        k: tmp_path / v
        for k, v in {"data.root": "hi4d", "scenes": "results/scenes", "renders": "results/renders"}.items()
    }
    assert check_control_triplets(path, forbidden) == 14
    images = control_images(path)
    assert all(p.startswith(str(tmp_path / "results/difix_control/triplets")) for p in images)
    data = json.loads(path.read_text())
    assert set(data) == {"train", "test"} and read_image(images[0]).shape == (32, 32, 3)
    # the pretraining's scenes (seed 0) at the same size and render settings are other images
    render = RenderConfig(backend="torch", device="cpu", fit_steps=2, num_gaussians=60)
    own = write_ood_triplets(
        tmp_path / "base", 2, 1, 0, OODSceneConfig(height=32, width=32, black_background=1.0, render=render)
    )
    own_first = read_image(json.loads(own.read_text())["train"]["scene00000/1"]["target_image"])
    assert not np.array_equal(own_first, read_image(data["train"]["scene00000/1"]["target_image"]))


def write_triplets(path, images):
    data = {"train": {f"s/{i}": {"image": p, "target_image": p, "ref_image": p} for i, p in enumerate(images)}}
    path.write_text(json.dumps(data))
    return path


def test_control_triplets_inside_the_studys_data_are_refused(tmp_path):
    root, renders = tmp_path / "hi4d", tmp_path / "results/renders"
    forbidden = {"data.root": root, "the renders": renders}
    ok = write_triplets(tmp_path / "ok.json", [str(tmp_path / "ood/a.png"), str(tmp_path / "ood/b.png")])
    assert check_control_triplets(ok, forbidden) == 2
    leak = write_triplets(tmp_path / "leak.json", [str(tmp_path / "ood/a.png"), str(root / "pair15/fight15/x.jpg")])
    with pytest.raises(ValueError, match=r"leak.json: train triplet s/1 takes its image from .*inside data.root"):
        check_control_triplets(leak, forbidden)
    # a path that only looks inside (a sibling folder sharing the prefix) is not
    sibling = write_triplets(tmp_path / "sibling.json", [str(tmp_path / "hi4d_other/a.png")])
    assert check_control_triplets(sibling, forbidden) == 1
    # relative paths resolve from the working directory, as tuning reads them
    relative = write_triplets(tmp_path / "relative.json", ["results/renders/imperfect/x/0.png"])
    with pytest.raises(ValueError, match="inside the renders"):
        check_control_triplets(relative, {"the renders": "results/renders"})
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ValueError, match="no 'train' split"):
        check_control_triplets(tmp_path / "empty.json", forbidden)


def test_control_triplets_of_the_wrong_shape_are_refused_naming_the_setting(tmp_path):
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps({"train": [{"image": "a.png", "target_image": "a.png", "ref_image": "a.png"}]}))
    with pytest.raises(ValueError, match=r"difix.control.triplets .*listed.json: split 'train' is a list; each split"):
        check_control_triplets(listed, {})
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"train": {"t0": "a.png"}}))
    with pytest.raises(ValueError, match=r"train triplet 't0' is not a mapping with image and target_image"):
        control_images(bare)
    ok = write_triplets(tmp_path / "ok.json", ["x.png", "y.png", "x.png"])
    assert control_images(ok) == ["x.png", "y.png"]


def test_control_images_copying_a_reserved_scenes_frames_are_refused(tmp_path):
    from skimage import data

    from hi4dfix.fingerprint import ContentPolicyError, check_control_content, image_entry, make_fingerprint
    from hi4dfix.io import write_image

    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "rocket": data.rocket()}
    masks = {name: np.full(photo.shape[:2], 255, np.uint8) for name, photo in photos.items()}  # all people
    entry = image_entry(0, 0, "astronaut", photos["astronaut"], masks["astronaut"])
    reserved = make_fingerprint("hi4d_pair15_fight", [entry])
    paths = {}
    for name, photo in photos.items():
        paths[name] = str(tmp_path / f"{name}.png")
        write_image(paths[name], photo)
    mirrored = str(tmp_path / "mirrored.jpg")
    write_image(mirrored, np.ascontiguousarray(photos["astronaut"][:, ::-1]), quality=80)
    others = [paths["coffee"], paths["rocket"]]
    fingerprint = check_control_content("ood.json", others, {"hi4d_pair15_fight": reserved})
    assert len(fingerprint["images"]) == 2
    for copy in (paths["astronaut"], mirrored):
        with pytest.raises(
            ContentPolicyError, match=r"difix.control.triplets ood.json: 1 images are copies of reserved scene"
        ):
            check_control_content("ood.json", [paths["coffee"], copy], {"hi4d_pair15_fight": reserved})
