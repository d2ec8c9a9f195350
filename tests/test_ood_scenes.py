"""Out-of-domain multi-view triplets for the base model: geometry, determinism, what each view is."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hi4dfix.camera import look_at_w2c
from hi4dfix.difix.data import TripletDataset, load_mask, load_training_triplets
from hi4dfix.difix.ood_scenes import (
    OODSceneConfig,
    Primitive,
    intersect_box,
    render_primitives,
    ring_cameras,
    scene_triplets,
    surface_points,
    write_ood_triplets,
)
from hi4dfix.difix.train import train
from hi4dfix.difix.train_config import TrainConfig
from hi4dfix.metrics import psnr
from hi4dfix.render.fit import RenderConfig
from hi4dfix.scene import Camera

torch.set_num_threads(1)
SMALL = OODSceneConfig(
    height=48,
    width=40,
    num_cameras=4,
    render=RenderConfig(backend="torch", fit_steps=4, num_gaussians=200, device="cpu"),
)


def box(**kwargs) -> Primitive:
    values = dict(
        shape="box",
        centre=np.zeros(3),
        rotation=np.eye(3),
        radii=np.array([0.5, 0.3, 0.2]),
        texture="flat",
        colours=np.array([[0.8, 0.2, 0.1], [0.8, 0.2, 0.1]]),
        period=0.1,
        axis=np.array([1.0, 0.0, 0.0]),
    )
    values.update(kwargs)
    return Primitive(**values)


def test_box_intersection_distance_and_normal():
    dirs = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    t, normal = intersect_box(np.array([0.0, 0.0, -5.0]), dirs, box())
    assert t[0] == pytest.approx(4.8)  # the near face at z = -0.2
    np.testing.assert_allclose(normal[0], [0.0, 0.0, -1.0])
    assert np.isinf(t[1:]).all()  # rays that pass beside the box


def test_surface_points_lie_on_the_surface():
    rng = np.random.default_rng(0)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    for shape in ("box", "ellipsoid"):
        obj = box(shape=shape, rotation=rotation, centre=np.array([0.3, 1.0, -0.2]))
        local = (surface_points(obj, 500, rng) - obj.centre) @ obj.rotation / obj.radii
        on_surface = np.abs(local).max(axis=1) if shape == "box" else np.linalg.norm(local, axis=1)
        np.testing.assert_allclose(on_surface, 1.0, atol=1e-9)


def test_ray_cast_silhouette_matches_the_projection():
    """A box seen head-on covers exactly the pixels inside its projected face (pinhole camera)."""
    focal, size = 40.0, 64
    K = np.array([[focal, 0.0, (size - 1) / 2], [0.0, focal, (size - 1) / 2], [0.0, 0.0, 1.0]])
    camera = Camera(
        id=0,
        K=K,
        w2c=look_at_w2c(np.array([0.0, 0.0, -4.0]), np.zeros(3), np.array([0.0, 1.0, 0.0])),
        width=size,
        height=size,
    )
    image, mask = render_primitives([box()], camera, np.zeros(3))
    # the near face (z = -0.2) is 3.8 m away: half-widths 0.5 and 0.3 m project to focal * r / 3.8 pixels
    half_u, half_v = focal * 0.5 / 3.8, focal * 0.3 / 3.8
    u, v = np.meshgrid(np.arange(size) - (size - 1) / 2, np.arange(size) - (size - 1) / 2)
    expected = (np.abs(u) < half_u) & (np.abs(v) < half_v)
    assert (mask != expected).sum() <= 2 * (2 * half_u + 2 * half_v)  # boundary pixels only
    assert np.all(image[~mask] == 0.0) and image[mask].max() > 0.1


def test_scene_triplets_are_deterministic_and_multi_view():
    first, again = scene_triplets(3, 5, SMALL), scene_triplets(3, 5, SMALL)
    assert [t.camera for t in first] == [1, 2, 3]  # camera 0 is the source, the others are targets
    for a, b in zip(first, again):
        for key in ("image", "target_image", "ref_image"):
            assert np.array_equal(getattr(a, key), getattr(b, key))
    other = scene_triplets(3, 6, SMALL)
    assert not np.array_equal(other[0].target_image, first[0].target_image)
    for triplet in first:
        assert triplet.image.shape == triplet.target_image.shape == triplet.ref_image.shape == (48, 40, 3)
        # the reference is the source camera's ground truth: one view for the scene, never the target
        assert np.array_equal(triplet.ref_image, first[0].ref_image)
        assert not np.array_equal(triplet.ref_image, triplet.target_image)
        # the image is a degraded render of the target view, not a copy of it
        assert 10.0 < psnr(triplet.image, triplet.target_image) < 40.0


def test_reference_is_another_viewpoint_not_a_near_copy():
    """The reference sees the content from another camera: shifting it cannot make it the target."""
    cfg = dataclasses.replace(SMALL, num_cameras=8, height=64, width=48)
    triplets = scene_triplets(0, 0, cfg)
    for triplet in triplets:
        best = max(
            psnr(np.roll(triplet.ref_image, (dy, dx), axis=(0, 1)), triplet.target_image)
            for dy in range(-6, 7)
            for dx in range(-6, 7)
        )
        assert best < psnr(triplet.image, triplet.target_image) + 10.0
    cameras = ring_cameras(np.random.default_rng(0), cfg)
    centres = np.array([camera.center for camera in cameras])
    distances = np.linalg.norm(centres[1:] - centres[0], axis=1)
    assert distances.min() > 1.0  # metres between the source camera and any target camera


def test_written_dataset_is_difix_json_with_disjoint_splits(tmp_path):
    path = write_ood_triplets(tmp_path / "ood", n_train_scenes=2, n_test_scenes=1, seed=0, cfg=SMALL)
    train, test = load_training_triplets(path, "train"), load_training_triplets(path, "test")
    assert len(train) == 2 * 3 and len(test) == 1 * 3
    train_scenes = {t.id.split("/")[0] for t in train}
    test_scenes = {t.id.split("/")[0] for t in test}
    assert len(train_scenes) == 2 and not train_scenes & test_scenes
    # the test split does not depend on how many training scenes there are
    again = write_ood_triplets(tmp_path / "more", n_train_scenes=3, n_test_scenes=1, seed=0, cfg=SMALL)
    assert {t.id for t in load_training_triplets(again, "test")} == {t.id for t in test}
    # the content's silhouettes, as the study's person masks: what loss_region: person weighs (control arm)
    scene, camera = train[0].id.split("/")
    (expected,) = [t for t in scene_triplets(0, int(scene.removeprefix("scene")), SMALL) if t.camera == int(camera)]
    for key in ("target_mask", "ref_mask"):
        written = load_mask(getattr(train[0], key), expected.target_image.shape[:2])[0].numpy().astype(bool)
        assert np.array_equal(written, getattr(expected, key)) and 0 < written.sum() < written.size
    masked = TripletDataset(train, (48, 40), mask_dilation=2)[0]  # a person-region tuning run can load them
    assert masked["masks"].shape[-2:] == masked["targets"].shape[-2:] and 0 < masked["masks"].sum()


def test_a_person_region_run_trains_on_them(tmp_path):
    """The control arm trains on these triplets with the version's tuning block, loss_region included."""
    path = write_ood_triplets(tmp_path / "ood", n_train_scenes=1, n_test_scenes=1, seed=0, cfg=SMALL)
    output = train(
        TrainConfig(
            triplets=str(path), output=str(tmp_path / "control.pkl"), output_dir=str(tmp_path / "control"),
            steps=1, resolution="32x48", val_every=0, ckpt_every=0, loss_region="person", loss_mask_dilation=2,
        )
    )  # fmt: skip
    assert output.is_file()
