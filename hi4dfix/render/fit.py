"""Per-frame fit: Gaussians on (imperfect) SMPL vertices, fitted to the source camera(s) only.

The renders at the other cameras then carry the artifacts DiFix is meant to remove:
pose error, single-view ambiguity and sparse Gaussians.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hi4dfix.render.gaussians import GaussianModel, init_gaussians, sample_point_colors, subsample_indices
from hi4dfix.render.poses import POSE_SOURCES, PoseErrorConfig, frame_rng
from hi4dfix.render.rasterize import BACKENDS, rasterize, resolve_backend
from hi4dfix.scene import Camera


@dataclass(frozen=True)
class RenderConfig:
    """How degraded renders are made. Defaults fit 7 scenes x 3 frames in minutes on 2 CPU cores."""

    backend: str = "auto"  # auto | torch | gsplat
    pose_source: str = "estimated"  # estimated | gt
    source_cams: tuple[int, ...] | None = None  # cameras fitted to; None = the scene's mono_cam
    fit_steps: int = 60
    num_gaussians: int = 2000
    lr_means: float = 1e-3  # metres per step, roughly
    lr_scales: float = 0.01
    lr_quats: float = 0.01
    lr_opacities: float = 0.05
    lr_colors: float = 0.03
    lr_final_factor: float = 0.1  # exponential decay of every learning rate over the fit
    alpha_weight: float = 0.5  # weight of L1(rendered alpha, person mask) next to the RGB L1
    init_scale_factor: float = 0.6  # splat radius / mean distance to 3 nearest vertices
    init_opacity: float = 0.8
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # flat colour behind the people
    pose_error: PoseErrorConfig = field(default_factory=PoseErrorConfig)
    seed: int = 0  # Gaussian subsampling; pose errors use pose_error.seed
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"render.backend {self.backend!r}: expected one of {BACKENDS}")
        if self.pose_source not in POSE_SOURCES:
            raise ValueError(f"render.pose_source {self.pose_source!r}: expected one of {POSE_SOURCES}")
        if self.fit_steps < 0:
            raise ValueError(f"render.fit_steps must be >= 0, got {self.fit_steps}")
        if self.num_gaussians < 1:
            raise ValueError(f"render.num_gaussians must be >= 1, got {self.num_gaussians}")
        if len(self.background) != 3 or not all(0.0 <= float(c) <= 1.0 for c in self.background):
            raise ValueError(f"render.background must be 3 values in [0, 1], got {self.background}")
        if self.source_cams is not None and len(self.source_cams) == 0:
            raise ValueError("render.source_cams must name at least one camera, or be null for mono_cam")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RenderConfig":
        """Build from a YAML/JSON mapping; unknown keys are errors naming the key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"render config: unknown keys {unknown}; known keys are {sorted(known)}")
        values = dict(data)
        if "pose_error" in values and isinstance(values["pose_error"], dict):
            pe_known = {f.name for f in dataclasses.fields(PoseErrorConfig)}
            pe_unknown = sorted(set(values["pose_error"]) - pe_known)
            if pe_unknown:
                raise ValueError(f"render.pose_error: unknown keys {pe_unknown}; known keys are {sorted(pe_known)}")
            values["pose_error"] = PoseErrorConfig(**values["pose_error"])
        if values.get("source_cams") is not None:
            values["source_cams"] = tuple(int(c) for c in values["source_cams"])
        if "background" in values:
            values["background"] = tuple(float(c) for c in values["background"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["background"] = list(self.background)
        data["source_cams"] = None if self.source_cams is None else list(self.source_cams)
        return data


@dataclass(frozen=True)
class SourceView:
    """A camera the Gaussians are fitted to, with its image and person mask."""

    camera: Camera
    image: np.ndarray  # (H, W, 3) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool


def composite_on_background(image: np.ndarray, mask: np.ndarray, background) -> np.ndarray:
    """People over a flat background: ``image`` where ``mask``, ``background`` elsewhere.

    image (H, W, 3) float in [0, 1]; mask (H, W) bool (or float weights in [0, 1]).
    Fit targets and the ground truth that renders are scored against are both made this way.
    """
    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, -1)
    weight = np.asarray(mask, dtype=np.float32)[..., None]
    return (image.astype(np.float32) * weight + bg * (1.0 - weight)).astype(np.float32)


def resolve_device(device: str, setting: str = "render.device") -> torch.device:
    """``auto``: CUDA where present, else the CPU; anything else checked, errors naming ``setting``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"{setting} {device!r}: {err}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{setting} {device!r}: CUDA is not available here")
    return resolved


def camera_tensors(camera: Camera, device: torch.device) -> tuple[Tensor, Tensor]:
    """(viewmat, K) as float32 tensors on ``device``."""
    viewmat = torch.as_tensor(camera.w2c, dtype=torch.float32, device=device)
    K = torch.as_tensor(camera.K, dtype=torch.float32, device=device)
    return viewmat, K


def init_frame_gaussians(
    verts: np.ndarray, views: list[SourceView], cfg: RenderConfig, scene_name: str, frame: int, device: torch.device
) -> GaussianModel:
    """Gaussians on a deterministic subsample of all people's vertices, coloured from the views."""
    points = verts.reshape(-1, 3).astype(np.float64)
    rng = frame_rng(cfg.seed, scene_name, frame, "gaussian_init")
    points = points[subsample_indices(len(points), cfg.num_gaussians, rng)]
    targets = [(v.camera, composite_on_background(v.image, v.mask, cfg.background), v.mask) for v in views]
    colors = sample_point_colors(points, targets)
    return init_gaussians(points, colors, cfg.init_scale_factor, cfg.init_opacity, device)


FitTarget = tuple  # (viewmat, K, target rgb, target mask, camera): one view, on the device


def fit_targets(views: list[SourceView], cfg: RenderConfig, device: torch.device) -> list[FitTarget]:
    """The views as fitting targets: people composited over the background, masks as floats."""
    targets = []
    for view in views:
        rgb = composite_on_background(view.image, view.mask, cfg.background)
        targets.append(
            (
                *camera_tensors(view.camera, device),
                torch.as_tensor(rgb, device=device),
                torch.as_tensor(view.mask, dtype=torch.float32, device=device),
                view.camera,
            )
        )
    return targets


def fit_optimizer(
    model: GaussianModel, cfg: RenderConfig, steps: int
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.ExponentialLR]:
    """Adam on every parameter, each learning rate decaying by ``lr_final_factor`` over ``steps``."""
    lrs = {
        "means": cfg.lr_means,
        "log_scales": cfg.lr_scales,
        "quats": cfg.lr_quats,
        "opacity_logits": cfg.lr_opacities,
        "color_logits": cfg.lr_colors,
    }
    optimizer = torch.optim.Adam([{"params": [p], "lr": lrs[name]} for name, p in model.parameters().items()])
    gamma = cfg.lr_final_factor ** (1.0 / max(steps, 1))
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


def views_loss(
    params: dict[str, torch.Tensor], targets: list[FitTarget], cfg: RenderConfig, background: torch.Tensor, backend: str
) -> torch.Tensor:
    """Mean over ``targets`` of L1(rgb) + ``alpha_weight`` * L1(alpha, person mask)."""
    loss = torch.zeros((), device=background.device)
    for viewmat, K, target_rgb, target_mask, camera in targets:
        rgb, alpha = rasterize(
            **params, viewmat=viewmat, K=K, width=camera.width, height=camera.height,
            background=background, backend=backend,
        )  # fmt: skip
        loss = loss + (rgb - target_rgb).abs().mean() + cfg.alpha_weight * (alpha - target_mask).abs().mean()
    return loss / len(targets)


def fit_gaussians(
    model: GaussianModel, views: list[SourceView], cfg: RenderConfig, device: torch.device
) -> list[float]:
    """Adam on every parameter against the composited source views; returns the loss per step."""
    backend = resolve_backend(cfg.backend)
    background = torch.tensor(cfg.background, dtype=torch.float32, device=device)
    targets = fit_targets(views, cfg, device)
    model.requires_grad_(True)
    optimizer, scheduler = fit_optimizer(model, cfg, cfg.fit_steps)
    losses = []
    for _ in range(cfg.fit_steps):
        optimizer.zero_grad(set_to_none=True)
        loss = views_loss(model.activated(), targets, cfg, background, backend)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
    model.requires_grad_(False)
    return losses


@torch.no_grad()
def render_cameras(
    model: GaussianModel, cameras: list[Camera], cfg: RenderConfig, device: torch.device
) -> dict[int, np.ndarray]:
    """Render the people over the fixed background at each camera: {cam id: (H, W, 3) float32}."""
    backend = resolve_backend(cfg.backend)
    background = torch.tensor(cfg.background, dtype=torch.float32, device=device)
    params = model.activated()
    renders = {}
    for camera in cameras:
        viewmat, K = camera_tensors(camera, device)
        rgb, _alpha = rasterize(
            **params, viewmat=viewmat, K=K, width=camera.width, height=camera.height,
            background=background, backend=backend,
        )  # fmt: skip
        renders[camera.id] = rgb.clamp(0.0, 1.0).cpu().numpy()
    return renders


def fit_frame(
    verts: np.ndarray, views: list[SourceView], cfg: RenderConfig, scene_name: str, frame: int, device: torch.device
) -> tuple[GaussianModel, list[float]]:
    """Initialise on ``verts`` (P, V, 3) and fit to ``views``; returns the model and its losses."""
    if not views:
        raise ValueError("fit_frame needs at least one source view")
    model = init_frame_gaussians(verts, views, cfg, scene_name, frame, device)
    return model, fit_gaussians(model, views, cfg, device)


__all__ = [
    "RenderConfig",
    "SourceView",
    "composite_on_background",
    "fit_frame",
    "fit_gaussians",
    "init_frame_gaussians",
    "render_cameras",
    "resolve_device",
]
