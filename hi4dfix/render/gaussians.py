"""Gaussians for one frame: initialisation on SMPL vertices and their optimisable parameterisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from hi4dfix.scene import Camera


@dataclass
class GaussianModel:
    """Unconstrained parameters; :meth:`activated` maps them to what the rasterizer takes."""

    means: Tensor  # (N, 3) world metres
    log_scales: Tensor  # (N, 3)
    quats: Tensor  # (N, 4) wxyz, normalised by the rasterizer
    opacity_logits: Tensor  # (N,)
    color_logits: Tensor  # (N, 3)

    def parameters(self) -> dict[str, Tensor]:
        return {
            "means": self.means,
            "log_scales": self.log_scales,
            "quats": self.quats,
            "opacity_logits": self.opacity_logits,
            "color_logits": self.color_logits,
        }

    def activated(self) -> dict[str, Tensor]:
        """Keyword arguments for :func:`hi4dfix.render.rasterize`."""
        return {
            "means": self.means,
            "quats": self.quats,
            "scales": torch.exp(self.log_scales),
            "opacities": torch.sigmoid(self.opacity_logits),
            "colors": torch.sigmoid(self.color_logits),
        }

    def requires_grad_(self, flag: bool = True) -> "GaussianModel":
        for tensor in self.parameters().values():
            tensor.requires_grad_(flag)
        return self

    def __len__(self) -> int:
        return int(self.means.shape[0])


def subsample_indices(num_points: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted, distinct indices of ``min(num_samples, num_points)`` points, drawn by ``rng``."""
    if num_samples <= 0:
        raise ValueError(f"num_gaussians must be positive, got {num_samples}")
    if num_samples >= num_points:
        return np.arange(num_points)
    return np.sort(rng.choice(num_points, size=num_samples, replace=False))


def neighbour_spacing(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance of each point to its ``k`` nearest neighbours, (N,)."""
    if len(points) < 2:
        return np.full(len(points), 0.01)
    k = min(k, len(points) - 1)
    dist, _ = cKDTree(points).query(points, k=k + 1)  # column 0 is the point itself
    spacing = dist[:, 1:].mean(axis=1)
    median = float(np.median(spacing))
    # isolated or duplicated vertices should not make giant or vanishing splats
    return np.clip(spacing, 0.25 * median, 4.0 * median)


def sample_point_colors(points: np.ndarray, views: list[tuple[Camera, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Colour each 3D point by the pixels it projects to inside the person masks of ``views``.

    views: (camera, image (H, W, 3), mask (H, W) bool). Occlusion is ignored (the fit fixes it);
    points that land on no person pixel in any view get the mean person colour.
    """
    total = np.zeros((len(points), 3), dtype=np.float64)
    hits = np.zeros(len(points), dtype=np.int64)
    person_colors = []
    for cam, image, mask in views:
        cam_pts = points @ cam.w2c[:3, :3].T + cam.w2c[:3, 3]
        z = cam_pts[:, 2]
        in_front = z > 1e-6
        uv = cam_pts @ cam.K.T
        u = np.floor(uv[:, 0] / np.where(in_front, z, 1.0)).astype(np.int64)
        v = np.floor(uv[:, 1] / np.where(in_front, z, 1.0)).astype(np.int64)
        inside = in_front & (u >= 0) & (u < image.shape[1]) & (v >= 0) & (v < image.shape[0])
        on_person = np.zeros(len(points), dtype=bool)
        on_person[inside] = mask[v[inside], u[inside]]
        total[on_person] += image[v[on_person], u[on_person]]
        hits += on_person
        if mask.any():
            person_colors.append(image[mask].mean(axis=0))
    fallback = np.mean(person_colors, axis=0) if person_colors else np.full(3, 0.5)
    colors = np.where(hits[:, None] > 0, total / np.maximum(hits, 1)[:, None], fallback)
    return colors.astype(np.float32)


def init_gaussians(
    points: np.ndarray,
    colors: np.ndarray,
    scale_factor: float,
    opacity: float,
    device: torch.device | str = "cpu",
) -> GaussianModel:
    """Isotropic Gaussians on ``points`` (N, 3) with ``colors`` (N, 3) in [0, 1].

    Each radius is ``scale_factor`` times the point's mean distance to its 3 nearest
    neighbours, so the splats just tile the body surface.
    """
    if not 0.0 < opacity < 1.0:
        raise ValueError(f"init_opacity must lie in (0, 1), got {opacity}")
    if scale_factor <= 0.0:
        raise ValueError(f"init_scale_factor must be positive, got {scale_factor}")
    n = len(points)
    spacing = neighbour_spacing(points) * scale_factor
    clipped = np.clip(colors, 0.02, 0.98)

    def tensor(x: np.ndarray) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)

    return GaussianModel(
        means=tensor(points),
        log_scales=tensor(np.repeat(np.log(spacing)[:, None], 3, axis=1)),
        quats=tensor(np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))),
        opacity_logits=tensor(np.full(n, np.log(opacity / (1.0 - opacity)))),
        color_logits=tensor(np.log(clipped / (1.0 - clipped))),
    )
