"""The control arm's training data: the base's own triplets, never the study's scenes."""

from __future__ import annotations

import json

import pytest

from hi4dfix.difix.control import OOD_TRIPLETS_NAME, check_control_triplets, control_triplets_path


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
