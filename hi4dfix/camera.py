"""Pinhole camera math shared by the synthetic renderer, the reader and materialize.

Conventions: OpenCV cameras (x right, y down, z forward), ``w2c`` maps world points to
camera coordinates, pixel (u, v) = (0, 0) is the *centre* of the top-left pixel, and lens
distortion uses OpenCV's (k1, k2, p1, p2[, k3, ...]) model.
"""

from __future__ import annotations

import cv2
import numpy as np

# OpenCV accepts these distortion vector lengths.
VALID_DIST_LENGTHS = (4, 5, 8, 12, 14)


def to_homogeneous_w2c(extrinsics: np.ndarray) -> np.ndarray:
    """(3, 4) or (4, 4) world-to-camera -> (4, 4)."""
    extrinsics = np.asarray(extrinsics, dtype=np.float64)
    if extrinsics.shape not in ((3, 4), (4, 4)):
        raise ValueError(f"extrinsics must be 3x4 or 4x4, got shape {extrinsics.shape}")
    w2c = np.eye(4)
    w2c[:3, :] = extrinsics[:3, :]
    return w2c


def rotation_error(R: np.ndarray) -> float:
    """How far ``R`` is from a proper rotation: max |R^T R - I| plus |det R - 1|."""
    R = np.asarray(R, dtype=np.float64)
    return float(np.abs(R.T @ R - np.eye(3)).max() + abs(np.linalg.det(R) - 1.0))


def look_at_w2c(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(4, 4) world-to-camera of an OpenCV camera at ``eye`` looking at ``target``.

    ``up`` is the world's up direction; image y (down) is aligned with ``-up``.
    """
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    norm = np.linalg.norm(right)
    if norm < 1e-8:
        raise ValueError("look_at_w2c: viewing direction is parallel to up")
    right /= norm
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ eye
    return w2c


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) rigid transform to (..., 3) points."""
    return points @ T[:3, :3].T + T[:3, 3]


def project_points(
    points_world: np.ndarray,
    K: np.ndarray,
    w2c: np.ndarray,
    dist_coeffs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) world points; returns (N, 2) pixel coordinates and (N,) depths.

    Points behind the camera get NaN pixels (distortion models are meaningless there).
    """
    points_cam = transform_points(to_homogeneous_w2c(w2c), np.asarray(points_world, dtype=np.float64))
    depth = points_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = points_cam[:, :2] / depth[:, None]
    if dist_coeffs is not None and np.any(np.asarray(dist_coeffs) != 0):
        xy = distort_normalized(xy, dist_coeffs)
    K = np.asarray(K, dtype=np.float64)
    pixels = xy @ K[:2, :2].T + K[:2, 2]
    pixels[depth <= 0] = np.nan
    return pixels, depth


def distort_normalized(xy: np.ndarray, dist_coeffs: np.ndarray) -> np.ndarray:
    """Apply OpenCV's radial-tangential model (k1, k2, p1, p2, k3) to normalized coordinates."""
    d = np.zeros(5)
    coeffs = np.asarray(dist_coeffs, dtype=np.float64).ravel()
    if coeffs.size > 5 and np.any(coeffs[5:] != 0):
        raise ValueError("distort_normalized supports only the 5-term (k1, k2, p1, p2, k3) model")
    d[: min(5, coeffs.size)] = coeffs[:5]
    k1, k2, p1, p2, k3 = d
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], axis=1)


def pixel_grid(width: int, height: int) -> np.ndarray:
    """(H*W, 2) pixel-centre coordinates in row-major order."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    return np.stack([u.ravel(), v.ravel()], axis=1)


def undistort_pixels(pixels: np.ndarray, K: np.ndarray, dist_coeffs: np.ndarray | None) -> np.ndarray:
    """(N, 2) distorted pixels -> (N, 2) undistorted normalized coordinates (x/z, y/z)."""
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 2)
    dist = None if dist_coeffs is None else np.asarray(dist_coeffs, dtype=np.float64)
    # More iterations than OpenCV's default 5 so the inverse is exact to ~1e-10 for mild distortion.
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-12)
    normalized = cv2.undistortPoints(pixels, np.asarray(K, dtype=np.float64), dist, None, None, None, criteria)
    return normalized.reshape(-1, 2)


def pixel_rays(
    K: np.ndarray, w2c: np.ndarray, dist_coeffs: np.ndarray | None, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through every pixel centre of a (possibly distorted) image.

    Returns the camera centre (3,) and unit directions (H*W, 3) in row-major pixel order.
    """
    xy = undistort_pixels(pixel_grid(width, height), K, dist_coeffs)
    dirs_cam = np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1)
    w2c = to_homogeneous_w2c(w2c)
    R, t = w2c[:3, :3], w2c[:3, 3]
    dirs_world = dirs_cam @ R  # R^T applied to row vectors
    dirs_world /= np.linalg.norm(dirs_world, axis=1, keepdims=True)
    return -R.T @ t, dirs_world


def scale_intrinsics(K: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Intrinsics of an image resized by (scale_x, scale_y), pixel-centre aligned like cv2.resize."""
    K = np.asarray(K, dtype=np.float64).copy()
    K[0, 0] *= scale_x
    K[0, 1] *= scale_x
    K[1, 1] *= scale_y
    K[0, 2] = (K[0, 2] + 0.5) * scale_x - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * scale_y - 0.5
    return K


def undistort_maps(
    K: np.ndarray, dist_coeffs: np.ndarray | None, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps producing an undistorted image with the same K and size."""
    K = np.asarray(K, dtype=np.float64)
    dist = None if dist_coeffs is None else np.asarray(dist_coeffs, dtype=np.float64)
    return cv2.initUndistortRectifyMap(K, dist, None, K, (width, height), cv2.CV_32FC1)
