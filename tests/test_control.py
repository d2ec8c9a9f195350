"""The control arm's training data: the base's own triplets, never the study's scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hi4dfix.difix.control import OOD_TRIPLETS_NAME, check_control_triplets, control_images, control_triplets_path


def difix_block(**changes):
    return {"base": "pretrain", "preset": "tiny", "control": {"enabled": True, "triplets": None}, **changes}


def test_control_triplets_are_the_pretraining_ones_or_named():
    assert control_triplets_path(difix_block(), "results") == f"results/difix_base/tiny/{OOD_TRIPLETS_NAME}"
    named = difix_block(base="nvidia/difix_ref", control={"enabled": True, "triplets": "/data/dl3dv.json"})
    assert control_triplets_path(named, "results") == "/data/dl3dv.json"
    with pytest.raises(ValueError, match="difix.base is 'nvidia/difix_ref'.*set difix.control.triplets"):
        control_triplets_path(difix_block(base="nvidia/difix_ref"), "results")


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
