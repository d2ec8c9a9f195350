import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conftest import FIXTURE_SCENE
from hi4dfix.camera import project_points
from hi4dfix.hi4d import Hi4DFormatError, read_sequence
from hi4dfix.materialize import MaterializeConfig, materialize_scene
from hi4dfix.scene import MaterializedScene, load_scene


def _fraction_in_masks(scene: MaterializedScene, cam: int, frame: int, w2c: np.ndarray | None = None) -> float:
    """Share of the frame's SMPL vertices landing on the 'all' mask (one pixel of slack)."""
    camera = scene.cameras[cam]
    # A point on a silhouette's rim can round to a pixel whose centre ray just misses the body.
    mask = cv2.dilate(scene.load_mask(cam, frame).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    pixels, depth = project_points(scene.load_verts(frame).reshape(-1, 3), camera.K, camera.w2c if w2c is None else w2c)
    u, v = np.round(pixels).astype(int).T
    inside = (depth > 0) & (u >= 0) & (u < scene.width) & (v >= 0) & (v < scene.height)
    hits = np.zeros(len(u), bool)
    hits[inside] = mask[v[inside], u[inside]]
    return float(hits.mean())


def test_scene_round_trips_through_load_scene(materialized_scene, synthetic_sequence):
    sequence = read_sequence(synthetic_sequence)
    scene = load_scene(materialized_scene.root)
    assert scene.name == FIXTURE_SCENE
    assert scene.cam_ids == sequence.cam_ids and scene.frames == list(sequence.frames)
    assert (scene.width, scene.height) == (60, 80) and scene.mono_cam == sequence.meta.mono_cam
    manifest = json.loads((scene.root / "scene.json").read_text())
    assert manifest["sequence_dir"] == str(synthetic_sequence.resolve())
    assert manifest["num_persons"] == 2 and manifest["cam_ids"] == scene.cam_ids
    for cam in scene.cam_ids:
        assert scene.cameras[cam].width == 60 and np.array_equal(scene.cameras[cam].w2c, sequence.cameras[cam].w2c)
        for frame in scene.frames:
            assert scene.load_image(cam, frame).shape == (80, 60, 3)
            assert scene.load_mask(cam, frame).any()
    verts = scene.load_verts(12)
    assert np.allclose(verts, sequence.load_smpl(12).verts)
    with np.load(scene.smpl_path(12)) as smpl:
        assert smpl["joints_3d"].shape == (2, 24, 3)


def test_vertices_project_into_the_undistorted_masks(materialized_scene):
    for cam in materialized_scene.cam_ids:
        for frame in materialized_scene.frames:
            assert _fraction_in_masks(materialized_scene, cam, frame) >= 0.95, (cam, frame)


def test_projection_check_notices_a_slightly_wrong_camera(materialized_scene):
    camera = materialized_scene.cameras[4]
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("y", 3, degrees=True).as_matrix()  # pan the camera by 3 degrees
    tilted = turn @ camera.w2c
    assert _fraction_in_masks(materialized_scene, 4, 11, w2c=tilted) < 0.8


def test_undistortion_matches_the_lens_model(materialized_scene, synthetic_sequence):
    # Materialized images are the raw images warped by the calibrated lens model.
    sequence = read_sequence(synthetic_sequence)
    for cam in (4, 52):
        camera = sequence.cameras[cam]
        raw = sequence.load_image(cam, 11)
        undistorted = (materialized_scene.load_image(cam, 11) * 255).round()
        expected = cv2.undistort(raw, camera.K, camera.dist_coeffs).astype(np.float64)
        off_model = np.abs(undistorted - expected).mean()
        assert off_model < 0.5
        assert np.abs(undistorted - raw).mean() > 5 * max(off_model, 0.2)  # the lens did move things


@pytest.mark.parametrize(
    "cfg, size",
    [
        (MaterializeConfig(width=30), (30, 40)),
        (MaterializeConfig(long_side=120), (90, 120)),
        (MaterializeConfig(scale=0.5, max_frames=1), (30, 40)),
    ],
)
def test_resized_scenes_keep_cameras_consistent(synthetic_sequence, tmp_path, cfg, size):
    scene = materialize_scene(read_sequence(synthetic_sequence), tmp_path / "scene", "resized", cfg)
    assert (scene.width, scene.height) == size
    assert scene.load_image(4, scene.frames[0]).shape == (size[1], size[0], 3)
    for cam in scene.cam_ids:
        assert _fraction_in_masks(scene, cam, scene.frames[0]) >= 0.95, cam


def test_frame_selection(synthetic_sequence, tmp_path):
    sequence = read_sequence(synthetic_sequence)
    cfg = MaterializeConfig(first_frame_offset=1, frame_stride=2, width=20)
    scene = materialize_scene(sequence, tmp_path / "s", "sel", cfg)
    assert scene.frames == [12]
    assert sorted(p.name for p in (scene.root / "images" / "4").iterdir()) == ["000012.png"]
    with pytest.raises(ValueError, match="selects no frames"):
        materialize_scene(sequence, tmp_path / "none", "none", MaterializeConfig(first_frame_offset=5))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"scale": 0.5, "long_side": 100}, "only one"),
        ({"width": 0}, "width"),
        ({"frame_stride": 0}, "frame_stride"),
        ({"max_frames": 0}, "max_frames"),
    ],
)
def test_bad_materialize_config_names_the_setting(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MaterializeConfig(**kwargs)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header survives: only decoding fails


def test_failure_keeps_the_previous_complete_scene(synthetic_sequence, tmp_path):
    """A failed rewrite leaves the earlier complete scene as it was (it used to delete its
    manifest and leave half-rewritten files); the new one replaces it only on success."""
    broken = Path(shutil.copytree(synthetic_sequence, tmp_path / "seq"))
    sequence = read_sequence(broken)
    out = tmp_path / "scenes" / "scene"
    materialize_scene(sequence, out, "first", MaterializeConfig(width=20))
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (broken / "smpl" / "000013.npz").write_bytes(b"broken")
    with pytest.raises(Hi4DFormatError, match="000013.npz"):
        materialize_scene(sequence, out, "second", MaterializeConfig(width=30))
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert load_scene(out).name == "first"
    assert sorted(p.name for p in out.parent.iterdir()) == ["scene"]  # no temporary folder left

    shutil.copy(synthetic_sequence / "smpl" / "000013.npz", broken / "smpl" / "000013.npz")
    scene = materialize_scene(sequence, out, "second", MaterializeConfig(width=30, max_frames=1))
    assert (scene.name, scene.width, scene.frames) == ("second", 30, [11])
    assert sorted(p.name for p in (out / "images" / "4").iterdir()) == ["000011.png"]  # nothing of the first
    assert sorted(p.name for p in out.parent.iterdir()) == ["scene"]


def test_failure_leaves_no_partial_scene(synthetic_sequence, tmp_path):
    broken = Path(shutil.copytree(synthetic_sequence, tmp_path / "seq"))
    last_cam = read_sequence(broken).cam_ids[-1]
    truncated = broken / "images" / str(last_cam) / "000013.jpg"
    _truncate(truncated)
    sequence = read_sequence(broken)  # a header read passes the truncated file
    out = tmp_path / "scenes" / "scene"
    with pytest.raises(ValueError, match=f"{truncated}: unreadable image"):
        materialize_scene(sequence, out, "scene", MaterializeConfig())
    assert not out.exists()
    assert list(out.parent.iterdir()) == []
