import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from hi4dfix.hi4d import (
    Hi4DFormatError,
    ReadConfig,
    default_sequence_dir,
    parse_scene_name,
    read_sequence,
    validate_sequence,
)


@pytest.fixture
def sequence_copy(synthetic_sequence, tmp_path) -> Path:
    """A private copy of the fixture sequence that a test may break."""
    return Path(shutil.copytree(synthetic_sequence, tmp_path / "pair00" / "dance00"))


def _rewrite_npz(path: Path, drop: tuple[str, ...] = (), **changes) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k not in drop}
    arrays.update(changes)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _errors(path: Path) -> list:
    return [p for p in validate_sequence(path) if p.severity == "error"]


def _assert_one_error(path: Path, culprit: Path, *words: str) -> None:
    errors = _errors(path)
    assert len(errors) == 1, errors
    assert errors[0].path == culprit
    for word in words:
        assert word in errors[0].message, errors[0]
    with pytest.raises(Hi4DFormatError) as raised:
        read_sequence(path)
    assert str(culprit) in str(raised.value)


def test_reader_round_trips_what_the_generator_wrote(synthetic_sequence):
    assert validate_sequence(synthetic_sequence) == []
    sequence = read_sequence(synthetic_sequence)
    with np.load(synthetic_sequence / "cameras" / "rgb_cameras.npz") as cams:
        for i, cam_id in enumerate(cams["ids"]):
            camera = sequence.cameras[int(cam_id)]
            assert np.array_equal(camera.K, cams["intrinsics"][i])
            assert np.array_equal(camera.extrinsics, cams["extrinsics"][i])
            assert np.array_equal(camera.dist_coeffs, cams["dist_coeffs"][i])
            assert np.array_equal(camera.w2c[:3], cams["extrinsics"][i]) and np.array_equal(camera.w2c[3], [0, 0, 0, 1])
    with np.load(synthetic_sequence / "meta.npz") as meta:
        assert (sequence.meta.start, sequence.meta.end) == (int(meta["start"]), int(meta["end"]))
        assert sequence.meta.num_persons == 2 and sequence.meta.mono_cam == int(meta["mono_cam"])
        assert sequence.meta.genders == tuple(meta["genders"].tolist())
        assert sequence.meta.contact_ids == tuple(meta["contact_ids"].tolist())
    assert sequence.frames == tuple(range(sequence.meta.start, sequence.meta.end + 1))
    with np.load(synthetic_sequence / "smpl" / "000012.npz") as smpl:
        loaded = sequence.load_smpl(12)
        for key in smpl.files:
            assert np.array_equal(getattr(loaded, key), smpl[key]), key
    image = sequence.load_image(16, 13)
    assert image.shape == (80, 60, 3) and image.dtype == np.uint8
    assert sequence.load_mask(16, 13, 1).dtype == bool
    assert sequence.scan_path(11) is None  # scans are optional


def test_lazy_loaders_reject_unknown_cameras_frames_and_persons(synthetic_sequence):
    sequence = read_sequence(synthetic_sequence)
    with pytest.raises(KeyError, match="camera 5"):
        sequence.load_image(5, 11)
    with pytest.raises(KeyError, match="frame 99"):
        sequence.load_smpl(99)
    with pytest.raises(ValueError, match="person"):
        sequence.load_mask(4, 11, 2)


def test_misspelled_intrinsics_key_is_accepted(sequence_copy):
    path = sequence_copy / "cameras" / "rgb_cameras.npz"
    with np.load(path) as cams:
        K = cams["intrinsics"]
    _rewrite_npz(path, drop=("intrinsics",), intirnsics=K)
    sequence = read_sequence(sequence_copy)
    assert np.array_equal(sequence.cameras[4].K, K[0])


def test_missing_camera_key_names_file_and_key(sequence_copy):
    path = sequence_copy / "cameras" / "rgb_cameras.npz"
    _rewrite_npz(path, drop=("dist_coeffs",))
    _assert_one_error(sequence_copy, path, "missing key", "dist_coeffs")


def test_a_camera_with_images_but_no_calibration_is_an_error(sequence_copy):
    path = sequence_copy / "cameras" / "rgb_cameras.npz"
    with np.load(path) as cams:
        keep = {key: cams[key][:-1] for key in ("ids", "intrinsics", "extrinsics", "dist_coeffs")}  # not mono_cam
        dropped = int(cams["ids"][-1])
    _rewrite_npz(path, **keep)
    _assert_one_error(sequence_copy, sequence_copy / "images", f"['{dropped}']", "no calibration in cameras/")


def test_missing_smpl_key_names_file_and_key(sequence_copy):
    path = sequence_copy / "smpl" / "000012.npz"
    _rewrite_npz(path, drop=("verts",))
    _assert_one_error(sequence_copy, path, "missing key", "verts")


def test_wrong_smpl_shape_names_file_and_array(sequence_copy):
    path = sequence_copy / "smpl" / "000013.npz"
    _rewrite_npz(path, verts=np.zeros((2, 100, 3), np.float32))
    _assert_one_error(sequence_copy, path, "verts", "(2, 100, 3)")


def test_missing_meta_is_reported(sequence_copy):
    path = sequence_copy / "meta.npz"
    path.unlink()
    _assert_one_error(sequence_copy, path, "missing")


def test_missing_meta_key_names_it(sequence_copy):
    path = sequence_copy / "meta.npz"
    _rewrite_npz(path, drop=("mono_cam",))
    _assert_one_error(sequence_copy, path, "mono_cam")


def test_camera_folder_without_frames_is_reported(sequence_copy):
    folder = sequence_copy / "images" / "16"
    for image in folder.glob("*.jpg"):
        image.unlink()
    _assert_one_error(sequence_copy, folder, "no frames")


def test_frame_sets_differing_across_cameras_are_reported(sequence_copy):
    (sequence_copy / "images" / "28" / "000012.jpg").unlink()
    _assert_one_error(sequence_copy, sequence_copy / "images" / "28", "differs", "000012.jpg")


def test_unreadable_image_is_reported(sequence_copy):
    path = sequence_copy / "images" / "40" / "000011.jpg"
    path.write_bytes(b"not a jpeg at all")
    _assert_one_error(sequence_copy, path, "unreadable")


def test_missing_mask_is_reported(sequence_copy):
    path = sequence_copy / "seg" / "img_seg_mask" / "52" / "1" / "000013.png"
    path.unlink()
    _assert_one_error(sequence_copy, path, "missing")


def test_non_orthonormal_rotation_is_reported(sequence_copy):
    path = sequence_copy / "cameras" / "rgb_cameras.npz"
    with np.load(path) as cams:
        extrinsics = cams["extrinsics"].copy()
    extrinsics[2, :, :3] *= 1.1  # camera 28 now scales the world
    _rewrite_npz(path, extrinsics=extrinsics)
    _assert_one_error(sequence_copy, path, "camera 28", "orthonormal")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_distortion_coefficients_are_reported(sequence_copy, bad):
    path = sequence_copy / "cameras" / "rgb_cameras.npz"
    with np.load(path) as cams:
        dist = cams["dist_coeffs"].copy()
    dist[3, 1] = bad  # camera 40
    _rewrite_npz(path, dist_coeffs=dist)
    _assert_one_error(sequence_copy, path, "camera 40", "dist_coeffs", "finite")


def test_mono_cam_must_be_a_camera(sequence_copy):
    _rewrite_npz(sequence_copy / "meta.npz", mono_cam=np.array(5))
    _assert_one_error(sequence_copy, sequence_copy / "meta.npz", "mono_cam 5")


def test_validation_collects_every_problem_at_once(sequence_copy):
    (sequence_copy / "images" / "28" / "000012.jpg").unlink()
    (sequence_copy / "images" / "40" / "000011.jpg").write_bytes(b"garbage")
    _rewrite_npz(sequence_copy / "smpl" / "000011.npz", drop=("contact",))
    errors = _errors(sequence_copy)
    assert len(errors) == 3
    with pytest.raises(Hi4DFormatError) as raised:
        read_sequence(sequence_copy)
    assert len(raised.value.problems) == 3


def test_missing_folder_is_one_clear_error(tmp_path):
    problems = validate_sequence(tmp_path / "nope")
    assert len(problems) == 1 and "does not exist" in problems[0].message


def test_shallow_check_skips_file_contents_but_still_reads(sequence_copy):
    (sequence_copy / "images" / "40" / "000012.jpg").write_bytes(b"garbage")
    assert _errors(sequence_copy)
    sequence = read_sequence(sequence_copy, ReadConfig(check_files=False))
    with pytest.raises(ValueError, match="000012.jpg"):
        sequence.load_image(40, 12)


def test_extra_frames_outside_meta_range_only_warn(sequence_copy):
    shutil.copy(sequence_copy / "images" / "4" / "000011.jpg", sequence_copy / "images" / "4" / "000099.jpg")
    problems = validate_sequence(sequence_copy)
    assert any(p.severity == "error" and "000099.jpg" in p.message for p in problems)  # other cams lack it
    assert any(p.severity == "warning" and "start..end" in p.message for p in problems)


def test_scene_names_map_to_default_sequence_folders():
    assert default_sequence_dir("hi4d_pair00_dance") == "pair00/dance00"
    assert default_sequence_dir("hi4d_pair19_piggyback") == "pair19/piggyback19"
    scene = parse_scene_name("hi4d_pair15_fight")
    assert (scene.pair, scene.action, scene.name) == (15, "fight", "hi4d_pair15_fight")


@pytest.mark.parametrize(
    "name", ["pair00_dance", "hi4d_pairXX_dance", "hi4d_pair00_", "hi4d_pair00_Dance", "hi4d_pair00_dance_x"]
)
def test_malformed_scene_names_are_rejected(name):
    with pytest.raises(ValueError, match="hi4d_pairNN_action"):
        default_sequence_dir(name)


def test_non_finite_smpl_vertices_are_refused_naming_the_file_and_frame(synthetic_sequence, tmp_path):
    sequence = shutil.copytree(synthetic_sequence, tmp_path / "pair00" / "dance00")
    smpl = sequence / "smpl" / "000013.npz"
    arrays = dict(np.load(smpl))
    arrays["verts"][0, 0, 0] = np.inf
    np.savez(smpl, **arrays)
    with pytest.raises(Hi4DFormatError, match=re.escape(f"{smpl}: frame 13: verts hold 1 NaN or infinite value(s)")):
        read_sequence(sequence)
