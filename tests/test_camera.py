import cv2
import numpy as np
import pytest

from hi4dfix.camera import (
    distort_normalized,
    look_at_w2c,
    pixel_rays,
    project_points,
    rotation_error,
    scale_intrinsics,
    undistort_maps,
    undistort_pixels,
)

K = np.array([[80.0, 0.0, 29.3], [0.0, 80.5, 40.2], [0.0, 0.0, 1.0]])
DIST = np.array([-0.1, 0.04, 8e-4, -5e-4, 0.0])


def test_look_at_puts_target_on_the_optical_axis_with_up_pointing_up_in_the_image():
    w2c = look_at_w2c(eye=[3.0, 1.5, 1.0], target=[0.0, 0.9, 0.0], up=[0.0, 1.0, 0.0])
    assert rotation_error(w2c[:3, :3]) < 1e-12
    target_cam = w2c[:3, :3] @ [0.0, 0.9, 0.0] + w2c[:3, 3]
    assert np.allclose(target_cam[:2], 0.0, atol=1e-12) and target_cam[2] > 0
    above = w2c[:3, :3] @ [0.0, 1.9, 0.0] + w2c[:3, 3]
    assert above[1] < 0  # image y points down


def test_distortion_matches_opencv_and_undistortion_inverts_it():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-0.4, 0.4, (200, 2)), np.ones((200, 1))], axis=1)
    pixels, depth = project_points(points, K, np.eye(4), DIST)
    expected, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), K, DIST)
    assert np.allclose(pixels, expected.reshape(-1, 2), atol=1e-9)
    assert np.allclose(depth, 1.0)
    assert np.allclose(undistort_pixels(pixels, K, DIST), points[:, :2], atol=1e-9)


def test_points_behind_the_camera_do_not_project():
    pixels, depth = project_points(np.array([[0.1, 0.2, -1.0]]), K, np.eye(4))
    assert depth[0] < 0 and np.isnan(pixels).all()


def test_pixel_rays_hit_the_points_that_project_to_those_pixels():
    w2c = look_at_w2c([2.0, 1.0, -3.0], [0.0, 0.5, 0.0], [0.0, 1.0, 0.0])
    origin, dirs = pixel_rays(K, w2c, DIST, 60, 80)
    assert dirs.shape == (60 * 80, 3) and np.allclose(np.linalg.norm(dirs, axis=1), 1.0)
    index = np.array([0, 59, 41 * 60 + 7, 80 * 60 - 1])  # row-major pixel order
    pixels, _ = project_points(origin + 2.5 * dirs[index], K, w2c, DIST)
    assert np.allclose(pixels, np.stack([index % 60, index // 60], axis=1), atol=1e-6)


def test_undistort_maps_sample_where_the_distorted_camera_saw_the_same_ray():
    map_x, map_y = undistort_maps(K, DIST, 60, 80)
    v, u = np.mgrid[0:80:7, 0:60:7]
    normalized = np.stack([(u.ravel() - K[0, 2]) / K[0, 0], (v.ravel() - K[1, 2]) / K[1, 1]], axis=1)
    distorted = distort_normalized(normalized, DIST) @ K[:2, :2].T + K[:2, 2]
    sampled = np.stack([map_x[v, u].ravel(), map_y[v, u].ravel()], axis=1)
    assert np.abs(sampled - distorted).max() < 1e-2  # float32 maps


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_scaled_intrinsics_follow_cv2_resize_pixel_centres(scale):
    # A smooth blob centred on the principal point stays centred on the scaled one.
    v, u = np.mgrid[0:80, 0:60].astype(np.float64)
    blob = np.exp(-((u - 20.3) ** 2 + (v - 30.6) ** 2) / (2 * 4.0**2)).astype(np.float32)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(blob, (round(60 * scale), round(80 * scale)), interpolation=interpolation)
    v, u = np.mgrid[0 : resized.shape[0], 0 : resized.shape[1]]
    centre = np.array([(u * resized).sum(), (v * resized).sum()]) / resized.sum()
    K2 = scale_intrinsics(np.array([[1.0, 0, 20.3], [0, 1.0, 30.6], [0, 0, 1]]), scale, scale)
    assert np.allclose(centre, K2[:2, 2], atol=0.02)
    assert np.allclose(np.diag(K2)[:2], scale)
