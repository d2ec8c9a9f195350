from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FIXTURE_SCENE, FIXTURE_SYNTH_CONFIG
from hi4dfix.camera import project_points
from hi4dfix.hi4d import HI4D_CAMERA_IDS, read_sequence
from hi4dfix.hi4d.layout import parse_scene_name
from hi4dfix.synth import SynthConfig, generate_sequence
from hi4dfix.synth.bodies import NUM_VERTS, forward_kinematics, lowest_point, make_people
from hi4dfix.synth.generate import contact_correspondences, sequence_rngs
from hi4dfix.synth.motion import ACTIONS, poses_at, resolve_action


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_another_seed_differs(synthetic_sequence, tmp_path):
    again = generate_sequence(tmp_path / "again", FIXTURE_SCENE, FIXTURE_SYNTH_CONFIG)
    reference = _all_files(synthetic_sequence)
    assert _all_files(again) == reference
    other = _all_files(generate_sequence(tmp_path / "other", FIXTURE_SCENE, replace(FIXTURE_SYNTH_CONFIG, seed=1)))
    assert other.keys() == reference.keys()
    for name in ("cameras/rgb_cameras.npz", "smpl/000011.npz", "images/4/000011.jpg"):
        assert other[name] != reference[name], name


def test_layout_frames_and_sizes_follow_hi4d(synthetic_sequence):
    sequence = read_sequence(synthetic_sequence)
    assert sequence.cam_ids == list(HI4D_CAMERA_IDS)
    assert sequence.frames == (11, 12, 13)  # Hi4D-like nonzero start
    for camera in sequence.cameras.values():
        assert (camera.width, camera.height) == (60, 80)  # portrait, like Hi4D's 940x1280
        assert np.any(camera.dist_coeffs != 0)
    assert sequence.meta.mono_cam in sequence.cam_ids


def test_masks_are_nonempty_in_every_camera_and_all_is_the_union(synthetic_sequence):
    sequence = read_sequence(synthetic_sequence)
    for cam in sequence.cam_ids:
        for frame in sequence.frames:
            m0, m1, both = (sequence.load_mask(cam, frame, p) for p in (0, 1, "all"))
            assert m0.any() and m1.any(), (cam, frame)
            assert not (m0 & m1).any()  # each pixel shows at most one person
            assert np.array_equal(both, m0 | m1)


def test_people_fill_a_decent_part_of_every_image(synthetic_sequence):
    sequence = read_sequence(synthetic_sequence)
    for cam in sequence.cam_ids:
        mask = sequence.load_mask(cam, sequence.frames[0])
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert 0.3 <= (rows[-1] - rows[0] + 1) / mask.shape[0] <= 0.7, cam
        assert rows[0] > 0 and rows[-1] < mask.shape[0] - 1 and cols[0] > 0 and cols[-1] < mask.shape[1] - 1, cam


def test_vertices_project_into_the_distorted_person_masks(synthetic_sequence):
    sequence = read_sequence(synthetic_sequence)
    for frame in sequence.frames:
        verts = sequence.load_smpl(frame).verts.reshape(-1, 3)
        for cam_id, camera in sequence.cameras.items():
            # One pixel of slack: a point on the silhouette rim can round to a pixel whose centre ray misses.
            mask = cv2.dilate(sequence.load_mask(cam_id, frame).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            pixels, depth = project_points(verts, camera.K, camera.w2c, camera.dist_coeffs)
            assert (depth > 0).all()
            u, v = np.round(pixels).astype(int).T
            inside = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
            hits = np.zeros(len(u), bool)
            hits[inside] = mask[v[inside], u[inside]]
            assert hits.mean() >= 0.95, (frame, cam_id, hits.mean())


def test_images_show_the_people_in_their_clothes(synthetic_sequence):
    sequence = read_sequence(synthetic_sequence)
    image = sequence.load_image(4, 11).astype(np.float64)
    means = [image[sequence.load_mask(4, 11, p)].mean(axis=0) for p in (0, 1)]
    background = image[~sequence.load_mask(4, 11)].mean(axis=0)
    assert np.abs(means[0] - means[1]).max() > 10  # distinct clothing
    assert image[sequence.load_mask(4, 11)].std(axis=0).max() > 10  # textured, not flat
    assert np.abs(background - (means[0] + means[1]) / 2).max() > 5


def test_smpl_files_have_consistent_contents(synthetic_sequence):
    sequence = read_sequence(synthetic_sequence)
    smpl = sequence.load_smpl(11)
    assert smpl.verts.shape == (2, NUM_VERTS, 3) and np.isfinite(smpl.verts).all()
    assert np.allclose(smpl.joints_3d[:, 0], smpl.transl, atol=1e-5)  # pelvis at transl
    assert smpl.verts[..., 1].min() == pytest.approx(0.0, abs=0.01)  # standing on the floor (y up)
    heights = smpl.verts[..., 1].max(axis=1) - smpl.verts[..., 1].min(axis=1)
    assert ((heights > 1.4) & (heights < 2.0)).all()
    assert np.array_equal(smpl.betas, sequence.meta.betas)
    touching = [f for f in sequence.frames if (sequence.load_smpl(f).contact >= 0).any()]
    assert list(sequence.meta.contact_ids) == touching


@pytest.mark.parametrize("action", sorted(ACTIONS) + ["sidehug", "yoga"])
def test_every_action_keeps_two_plausible_people_in_view(action):
    people = make_people(np.random.default_rng(3))
    for t in (0.0, 0.37, 1.9):
        poses = poses_at(action, people, t, scene_yaw=40.0)
        bodies = [forward_kinematics(p, pose) for p, pose in zip(people, poses)]
        for body in bodies:
            assert np.isfinite(body.joints).all()
            assert lowest_point(body) >= -1e-6
            assert np.linalg.norm(body.joints[0, [0, 2]]) < 1.2  # near the ring's centre
            assert body.joints[15, 1] > 0.9  # head well above the floor
        if resolve_action(action) not in ("jump", "piggyback"):
            assert min(lowest_point(b) for b in bodies) == pytest.approx(0.0, abs=1e-9)


def test_unknown_actions_fall_back_and_aliases_resolve():
    assert resolve_action("somethingelse") == "idle"
    assert resolve_action("kiss") == "hug"
    assert resolve_action("dance") == "dance"


def test_actions_render_both_people_in_all_cameras(tmp_path):
    cfg = SynthConfig(num_frames=1, width=30, height=40)
    for action in ("piggyback", "hug", "jump"):
        sequence = read_sequence(generate_sequence(tmp_path / action, f"hi4d_pair01_{action}", cfg))
        for cam in sequence.cam_ids:
            assert sequence.load_mask(cam, 11).any(), (action, cam)


def test_contact_correspondences_pair_nearby_points():
    verts = np.zeros((2, 4, 3))
    verts[0, :, 0] = [0.0, 1.0, 2.0, 3.0]
    verts[1, :, 0] = [0.005, 5.0, 6.0, 2.01]
    contact = contact_correspondences(verts, 0.02)
    assert contact.tolist() == [[0, -1, 3, -1], [0, -1, -1, 2]]


def test_without_distortion_the_calibration_is_pinhole(tmp_path):
    cfg = SynthConfig(num_frames=1, width=30, height=40, distortion_scale=0.0)
    sequence = read_sequence(generate_sequence(tmp_path / "seq", "hi4d_pair00_talk", cfg))
    assert all(np.all(c.dist_coeffs == 0) for c in sequence.cameras.values())


def test_generation_refuses_folders_with_files_unless_replacing(synthetic_sequence, tmp_path):
    target = tmp_path / "seq"
    (target / "cameras").mkdir(parents=True)  # empty folders (made by a workflow engine) are fine
    cfg = SynthConfig(num_frames=1, width=20, height=28)
    generate_sequence(target, "hi4d_pair00_hug", cfg)
    with pytest.raises(FileExistsError, match="seq"):
        generate_sequence(target, "hi4d_pair00_hug", cfg)
    (target / "stale.txt").write_text("old")
    generate_sequence(target, "hi4d_pair00_hug", replace(cfg, num_frames=2), replace=True)
    assert not (target / "stale.txt").exists()
    assert read_sequence(target).frames == (11, 12)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


@pytest.mark.parametrize(
    "bad, field",
    [({"num_frames": 0}, "num_frames"), ({"jpeg_quality": 0}, "jpeg_quality"), ({"mono_cam": 5}, "mono_cam")],
)
def test_bad_synth_config_names_the_setting(bad, field):
    with pytest.raises(ValueError, match=field):
        SynthConfig(**bad)


def test_bad_scene_name_is_rejected_before_writing(tmp_path):
    with pytest.raises(ValueError, match="hi4d_pairNN_action"):
        generate_sequence(tmp_path / "x", "pair00_dance")
    assert not (tmp_path / "x").exists()


DEFAULT_STUDY_SCENES = (
    "hi4d_pair00_dance", "hi4d_pair01_talk", "hi4d_pair02_dance",
    "hi4d_pair15_fight", "hi4d_pair16_jump", "hi4d_pair17_dance", "hi4d_pair19_piggyback",
)  # fmt: skip


def test_the_default_studys_scenes_share_no_file_and_reserved_pairs_have_other_people(tmp_path):
    """Each scene is its own capture: people and cameras by pair, motion by (pair, action)."""
    cfg = SynthConfig(num_frames=2, width=48, height=64)
    files = {scene: _all_files(generate_sequence(tmp_path / scene, scene, cfg)) for scene in DEFAULT_STUDY_SCENES}
    owner: dict[bytes, str] = {}
    for scene, contents in files.items():
        for name, data in contents.items():
            # across scenes only: a small mask may repeat between two frames of one scene
            assert owner.setdefault(data, scene) == scene, f"{scene}/{name} is a file of {owner[data]} byte for byte"
    betas = {scene: np.load(tmp_path / scene / "meta.npz")["betas"] for scene in DEFAULT_STUDY_SCENES}
    people = {
        scene: make_people(sequence_rngs(cfg.seed, parse_scene_name(scene))[0]) for scene in DEFAULT_STUDY_SCENES
    }
    for reserved in DEFAULT_STUDY_SCENES[3:]:
        for training in DEFAULT_STUDY_SCENES[:3]:
            assert not np.allclose(betas[reserved], betas[training]), (reserved, training)
            for a, b in zip(people[reserved], people[training]):
                assert not np.allclose(a.appearance.shirt[0], b.appearance.shirt[0]), (reserved, training)
                assert a.appearance.stripe_width != b.appearance.stripe_width


def test_one_pair_keeps_its_people_and_cameras_across_actions(tmp_path):
    cfg = SynthConfig(num_frames=1, width=24, height=32)
    dance = generate_sequence(tmp_path / "dance", "hi4d_pair03_dance", cfg)
    talk = generate_sequence(tmp_path / "talk", "hi4d_pair03_talk", cfg)
    assert (dance / "cameras/rgb_cameras.npz").read_bytes() == (talk / "cameras/rgb_cameras.npz").read_bytes()
    np.testing.assert_array_equal(np.load(dance / "meta.npz")["betas"], np.load(talk / "meta.npz")["betas"])
    assert (dance / "smpl/000011.npz").read_bytes() != (talk / "smpl/000011.npz").read_bytes()
