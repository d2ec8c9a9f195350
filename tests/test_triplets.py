"""Triplet JSON: schema, reference strategies, policy, sampling, paths."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from hi4dfix.render import read_render_manifest
from hi4dfix.triplets import PROMPT, TripletConfig, build_triplets, read_triplets, scene_triplets, write_triplets

ID = re.compile(r"^(?P<scene>hi4d_pair\d+_[a-z]+)/(?P<cam>\d+)/(?P<frame>\d+)$")
PATH = re.compile(r"/(?P<cam>\d+)/(?P<frame>\d{6})\.png$")


def _cam_frame(path: str) -> tuple[int, int]:
    match = PATH.search(path)
    assert match, path
    return int(match["cam"]), int(match["frame"])


def test_same_time_reference_is_the_source_camera_at_the_same_frame(materialized_scene, rendered_scene):
    triplets = scene_triplets(materialized_scene, rendered_scene, TripletConfig())
    source = materialized_scene.mono_cam
    heldout = [cam for cam in materialized_scene.cam_ids if cam != source]
    assert len(triplets) == len(heldout) * len(materialized_scene.frames)
    for sample_id, sample in triplets.items():
        match = ID.match(sample_id)
        cam, frame = int(match["cam"]), int(match["frame"])
        assert cam != source
        assert _cam_frame(sample["image"]) == (cam, frame)
        assert _cam_frame(sample["target_image"]) == (cam, frame) and "/targets/" in sample["target_image"]
        assert _cam_frame(sample["ref_image"]) == (source, frame) and "/targets/" in sample["ref_image"]
        assert sample["prompt"] == PROMPT


def test_temporal_reference_is_the_source_camera_k_frames_away(materialized_scene, rendered_scene):
    frames = materialized_scene.frames
    triplets = scene_triplets(materialized_scene, rendered_scene, TripletConfig(reference="temporal", temporal_k=1))
    for sample_id, sample in triplets.items():
        frame = int(ID.match(sample_id)["frame"])
        ref_cam, ref_frame = _cam_frame(sample["ref_image"])
        assert ref_cam == materialized_scene.mono_cam
        assert abs(frames.index(ref_frame) - frames.index(frame)) == 1


def test_mixed_uses_both_strategies_deterministically(materialized_scene, rendered_scene):
    cfg = TripletConfig(reference="mixed", seed=3)
    first = scene_triplets(materialized_scene, rendered_scene, cfg)
    assert first == scene_triplets(materialized_scene, rendered_scene, cfg)
    same_time = [int(ID.match(k)["frame"]) == _cam_frame(v["ref_image"])[1] for k, v in first.items()]
    assert any(same_time) and not all(same_time)


def test_json_schema_and_paths(materialized_scene, rendered_scene, tmp_path, monkeypatch):
    monkeypatch.chdir(rendered_scene.parent)  # paths resolve from the working directory, like the workflow's
    relative = rendered_scene.name
    cfg = TripletConfig(cams=(16, 28), max_samples=3, seed=1)
    triplets = build_triplets({"hi4d_pair00_dance": (materialized_scene, relative)}, {}, cfg)
    assert set(triplets) == {"train", "test"} and triplets["test"] == {}
    assert len(triplets["train"]) == 3
    assert {int(ID.match(k)["cam"]) for k in triplets["train"]} <= {16, 28}
    path = tmp_path / "triplets.json"
    write_triplets(path, triplets, reserved_scenes=["hi4d_pair15_fight"])
    loaded = read_triplets(path)
    assert loaded == json.loads(path.read_text()) == triplets
    for sample in loaded["train"].values():
        assert set(sample) == {"image", "target_image", "ref_image", "prompt", "target_mask", "ref_mask"}
        assert not sample["image"].startswith("/")
        cam, frame = _cam_frame(sample["target_image"])
        assert sample["target_mask"] == str(materialized_scene.mask_path(cam, frame))
        assert sample["ref_mask"] == str(materialized_scene.mask_path(*_cam_frame(sample["ref_image"])))
    assert build_triplets({"hi4d_pair00_dance": (materialized_scene, relative)}, {}, cfg) == triplets


def test_write_refuses_reserved_scenes_and_missing_files(materialized_scene, rendered_scene, tmp_path):
    triplets = build_triplets({}, {"hi4d_pair00_dance": (materialized_scene, rendered_scene)}, TripletConfig())
    with pytest.raises(ValueError, match="reserved scene hi4d_pair00_dance would become a DiFix test sample"):
        write_triplets(tmp_path / "t.json", triplets, reserved_scenes=["hi4d_pair00_dance"])
    first = next(iter(triplets["test"]))
    triplets["test"][first]["ref_image"] = str(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match=f"triplet {first}: ref_image .*nope.png does not exist"):
        write_triplets(tmp_path / "t.json", triplets, reserved_scenes=[])
    assert not (tmp_path / "t.json").exists()


def test_bad_reference_strategy():
    with pytest.raises(ValueError, match="triplets.reference"):
        TripletConfig(reference="future")


def test_manifest_marks_the_source_camera(materialized_scene, rendered_scene):
    manifest = read_render_manifest(rendered_scene)
    assert {item["cam"] for item in manifest["images"] if item["is_source"]} == {materialized_scene.mono_cam}


def test_write_refuses_a_scene_whose_data_is_a_reserved_scenes(materialized_scene, rendered_scene, tmp_path):
    """The last check compares sequence folders, not names: hi4d_pair00_dance's data under a
    reserved scene's folder (here reached through a symbolic link and a `..`) is refused."""
    triplets = build_triplets({"hi4d_pair00_dance": (materialized_scene, rendered_scene)}, {}, TripletConfig())
    assert materialized_scene.sequence_dir is not None
    sequences = {"hi4d_pair00_dance": materialized_scene.sequence_dir}
    link = tmp_path / "hi4d" / "pair15" / "fight15"
    link.parent.mkdir(parents=True)
    link.symlink_to(materialized_scene.sequence_dir, target_is_directory=True)
    for reserved_folder in (
        materialized_scene.sequence_dir,
        link,
        tmp_path / "hi4d" / "x" / ".." / "pair15" / "fight15",
    ):
        with pytest.raises(
            ValueError, match="scene hi4d_pair00_dance .* its data is reserved scene hi4d_pair15_fight's"
        ):
            write_triplets(
                tmp_path / "t.json",
                triplets,
                ["hi4d_pair15_fight"],
                scene_sequences=sequences,
                reserved_sequences={"hi4d_pair15_fight": reserved_folder},
            )
    with pytest.raises(ValueError, match="sequence folder of scene hi4d_pair00_dance is unknown"):
        write_triplets(
            tmp_path / "t.json", triplets, [], scene_sequences={}, reserved_sequences={"hi4d_pair15_fight": link}
        )
    assert not (tmp_path / "t.json").exists()
    write_triplets(
        tmp_path / "t.json", triplets, ["hi4d_pair15_fight"], sequences, {"hi4d_pair15_fight": tmp_path / "elsewhere"}
    )
    assert read_triplets(tmp_path / "t.json") == triplets


@pytest.mark.parametrize("key", ["image", "target_image", "ref_image"])
def test_difix_reader_refuses_triplets_whose_images_differ_in_size(tmp_path, key):
    """A triplet with one image of another size used to be trained on, each image resized on its own."""
    import imageio.v3 as iio

    from hi4dfix.difix.data import load_training_triplets

    paths = {}
    for name in ("image", "target_image", "ref_image"):
        shape = (40, 30, 3) if name == key else (40, 32, 3)
        paths[name] = tmp_path / f"{name}.png"
        iio.imwrite(paths[name], np.full(shape, 100, np.uint8))
    sample = {name: str(path) for name, path in paths.items()} | {"prompt": PROMPT}
    good = {name: str(tmp_path / "image.png" if key != "image" else tmp_path / "target_image.png") for name in paths}
    path = tmp_path / "triplets.json"
    path.write_text(json.dumps({"train": {"hi4d_pair00_dance/16/11": sample, "ok": good}, "test": {}}))
    sizes = ", ".join(f"{name} {'30' if name == key else '32'}x40" for name in paths)
    with pytest.raises(
        ValueError, match=re.escape(f"[train][hi4d_pair00_dance/16/11]: the triplet's images differ in size ({sizes})")
    ):
        load_training_triplets(path, "train")
    path.write_text(json.dumps({"train": {"ok": good}, "test": {}}))
    assert [t.id for t in load_training_triplets(path, "train")] == ["ok"]
