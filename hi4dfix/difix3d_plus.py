"""Difix3D+'s progressive 3D update, for one frame's Gaussians, as upstream's gsplat example runs it.

Upstream (nv-tlabs/Difix3D, ``examples/gsplat/simple_trainer_difix3d.py``) continues a 3DGS fit
and, at its ``fix_steps``, renders novel views at poses shifted toward the test cameras, fixes them
with DiFix (reference: the nearest training image) and adds them as a new data set; every step then
draws a training view with probability 0.7, else a view of the *latest* fixed set, and weights its
loss 1.5 (training) or 0.3 (novel, ``novel_data_lambda``). The final renders are post-fixed with
DiFix without a reference (Difix3D+'s post-render step, ``src/inference_difix.py``).

Here one frame is fitted in ``RenderConfig.fit_steps`` steps (as the render stage fits it, so the
raw arm's fit has as many steps): the first ``start_share`` of them on the source views alone, then
``rounds`` fixes evenly spaced over the rest (:class:`ProgressiveConfig`, defaults from upstream).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from hi4dfix.render.fit import (
    RenderConfig,
    SourceView,
    camera_tensors,
    composite_on_background,
    fit_optimizer,
    fit_targets,
    init_frame_gaussians,
    render_cameras,
    views_loss,
)
from hi4dfix.render.gaussians import GaussianModel
from hi4dfix.render.poses import frame_vertices
from hi4dfix.render.rasterize import rasterize, resolve_backend
from hi4dfix.scene import Camera, MaterializedScene

Fixer = Callable[[Sequence[np.ndarray], Sequence[np.ndarray] | None], list[np.ndarray]]
POSTFIX_CHOICES = ("single", "reference", "none")


@dataclass(frozen=True)
class ProgressiveConfig:
    """Difix3D+ settings (a version's ``nvs`` block, besides ``mode``); defaults are upstream's.

    rounds: DiFix fixes of novel views; upstream fixes every 2,000 steps from step 30,000 of its
    60,000-step run, 15 fixes followed by training (its 16th, at the last step, trains nothing).
    start_share: share of the fit's steps before the first fix (upstream: it resumes a 30,000-step
    fit and trains to 60,000). pose_shift: how far (scene units; Hi4D: metres) each round moves the
    novel poses toward the held-out cameras (upstream's ``shift_poses(..., distance=0.5)``).
    train_share: probability that a step fits the source views rather than the latest novel views
    (upstream 0.7). train_weight / novel_weight: loss factors of those steps (upstream 1.5, 0.3).
    postfix: ``single`` (the arm's DiFix without a reference view, as upstream's post-render),
    ``reference`` (with the source view as reference) or ``none``. mask_threshold: rendered alpha
    above which a fixed novel pixel is fitted (upstream ``alpha_masks > 0.5``).
    """

    rounds: int = 15
    start_share: float = 0.5
    pose_shift: float = 0.5
    train_share: float = 0.7
    train_weight: float = 1.5
    novel_weight: float = 0.3
    postfix: str = "single"
    mask_threshold: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"nvs.rounds must be >= 1, got {self.rounds}")
        for name in ("start_share", "train_share", "mask_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"nvs.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("pose_shift", "train_weight", "novel_weight"):
            if getattr(self, name) <= 0:
                raise ValueError(f"nvs.{name} must be > 0, got {getattr(self, name)}")
        if self.postfix not in POSTFIX_CHOICES:
            raise ValueError(f"nvs.postfix must be one of {POSTFIX_CHOICES}, got {self.postfix!r}")

    @classmethod
    def from_nvs(cls, nvs: Mapping[str, Any] | None) -> "ProgressiveConfig":
        """From a version's ``nvs`` block (``mode`` and unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(nvs or {}).items() if k in names})

    def fix_steps(self, total_steps: int) -> list[int]:
        """0-based steps before which a round fixes novel views: ``rounds`` of them, the first after
        ``start_share`` of ``total_steps``, evenly spaced over the rest."""
        start = int(round(self.start_share * total_steps))
        return [start + (r * (total_steps - start)) // self.rounds for r in range(self.rounds)]


@dataclass
class FitLog:
    """What a progressive fit did, step by step: ``kinds`` (``train`` or ``novel``), each step's
    loss ``weights`` and weighted ``losses``; ``rounds``: the novel cameras of each fix."""

    kinds: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    rounds: list[list[Camera]] = field(default_factory=list)


# ----------------------------------------------------------------------------- poses (upstream's examples/utils.py)


def c2w(camera: Camera) -> np.ndarray:
    return np.linalg.inv(camera.w2c)


def pose_distance(pose1: np.ndarray, pose2: np.ndarray) -> float:
    """Upstream's ``CameraPoseInterpolator.compute_pose_distance`` (weights 1, 1): the distance of
    the camera-to-world translations plus the rotation angle (radians) between them."""
    q1 = Rotation.from_matrix(pose1[:3, :3]).as_quat()
    q2 = Rotation.from_matrix(pose2[:3, :3]).as_quat()
    if np.dot(q1, q2) < 0:
        q2 = -q2
    angle = np.arccos(np.clip(2 * np.dot(q1, q2) ** 2 - 1, -1.0, 1.0))
    return float(np.linalg.norm(pose1[:3, 3] - pose2[:3, 3]) + angle)


def nearest(poses: Sequence[np.ndarray], pose: np.ndarray) -> int:
    return int(np.argmin([pose_distance(p, pose) for p in poses]))


def slerp_rotation(r1: np.ndarray, r2: np.ndarray, t: float) -> np.ndarray:
    q1, q2 = Rotation.from_matrix(r1).as_quat(), Rotation.from_matrix(r2).as_quat()
    if np.dot(q1, q2) < 0:
        q2 = -q2
    theta = np.arccos(np.clip(np.dot(q1, q2), -1.0, 1.0))
    if abs(theta) < 1e-6:
        q = (1 - t) * q1 + t * q2
    else:
        q = (np.sin((1 - t) * theta) * q1 + np.sin(t * theta) * q2) / np.sin(theta)
    return Rotation.from_quat(q / np.linalg.norm(q)).as_matrix()


def shift_poses(current: Sequence[np.ndarray], targets: Sequence[np.ndarray], distance: float) -> list[np.ndarray]:
    """Upstream's ``shift_poses``: for each target pose, the nearest current pose moved ``distance``
    toward it (translation along the line, rotation slerped by the same share), or the target
    itself when within ``distance`` or when the step would overshoot it."""
    shifted = []
    for target in targets:
        start = current[nearest(current, target)]
        if pose_distance(start, target) <= distance:
            shifted.append(np.array(target, dtype=np.float64))
            continue
        t1, t2 = start[:3, 3], target[:3, 3]
        norm = float(np.linalg.norm(t2 - t1))
        new_t = t1 + (t2 - t1) / norm * distance if norm > 1e-6 else t2
        if np.dot(new_t - t1, t2 - t1) <= 0 or np.linalg.norm(new_t - t2) <= distance:
            new_t = t2
        if norm > 1e-6:
            rotation = slerp_rotation(start[:3, :3], target[:3, :3], min(distance / norm, 1.0))
        else:
            rotation = target[:3, :3]
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rotation, new_t
        shifted.append(pose)
    return shifted


def camera_at(pose_c2w: np.ndarray, like: Camera) -> Camera:
    """A camera at ``pose_c2w`` with the intrinsics and size of ``like`` (the held-out camera it heads for)."""
    return Camera(like.id, like.K, np.linalg.inv(pose_c2w), like.width, like.height)


# ----------------------------------------------------------------------------- the fit


@torch.no_grad()
def render_alpha(model: GaussianModel, camera: Camera, cfg: RenderConfig, device: torch.device) -> np.ndarray:
    viewmat, K = camera_tensors(camera, device)
    background = torch.tensor(cfg.background, dtype=torch.float32, device=device)
    _rgb, alpha = rasterize(
        **model.activated(), viewmat=viewmat, K=K, width=camera.width, height=camera.height,
        background=background, backend=resolve_backend(cfg.backend),
    )  # fmt: skip
    return alpha.cpu().numpy()


def novel_views_loss(
    params: dict[str, torch.Tensor], targets: list, cfg: RenderConfig, background: torch.Tensor, backend: str
) -> torch.Tensor:
    """``views_loss`` of fixed novel views with the pixels outside their masks left out, as upstream
    multiplies render and fixed image by ``alpha_masks > 0.5`` before its losses (gsplat example
    ``simple_trainer_difix3d.py``, lines 655-657): the L1 of the masked colours and ``alpha_weight``
    times the masked alpha L1, each the mean over every pixel (masked-out pixels count zero), so a
    pixel where the render's alpha was 0.5 or less is neither fitted to the fixed image nor pushed
    toward the background."""
    loss = torch.zeros((), device=background.device)
    for viewmat, K, target_rgb, target_mask, camera in targets:
        rgb, alpha = rasterize(
            **params, viewmat=viewmat, K=K, width=camera.width, height=camera.height,
            background=background, backend=backend,
        )  # fmt: skip
        inside = target_mask[..., None]
        loss = loss + ((rgb - target_rgb) * inside).abs().mean() + cfg.alpha_weight * (
            (alpha - target_mask) * target_mask
        ).abs().mean()
    return loss / len(targets)


def progressive_fit(
    model: GaussianModel,
    train_views: list[SourceView],
    target_cameras: Sequence[Camera],
    cfg: RenderConfig,
    fixer: Fixer,
    progressive: ProgressiveConfig,
    device: torch.device,
    rng: np.random.Generator,
) -> FitLog:
    """Fit ``model`` for ``cfg.fit_steps`` steps with Difix3D+'s schedule (one optimizer throughout).

    At each of ``progressive.fix_steps`` the novel poses move ``pose_shift`` toward
    ``target_cameras`` (from the source cameras at the first round), are rendered, fixed by
    ``fixer`` (reference: the source view nearest the novel pose) and replace the novel set.
    A step fits the source views with probability ``train_share`` (always before the first fix),
    else the latest novel views; its loss is weighted ``train_weight`` or ``novel_weight``."""
    backend = resolve_backend(cfg.backend)
    background = torch.tensor(cfg.background, dtype=torch.float32, device=device)
    train_targets = fit_targets(train_views, cfg, device)
    references = [composite_on_background(v.image, v.mask, cfg.background) for v in train_views]
    train_poses = [c2w(v.camera) for v in train_views]
    current = list(train_poses)
    target_poses = [c2w(c) for c in target_cameras]
    fix_at = progressive.fix_steps(cfg.fit_steps)
    novel_targets = None
    log = FitLog()
    model.requires_grad_(True)
    optimizer, scheduler = fit_optimizer(model, cfg, cfg.fit_steps)
    for step in range(cfg.fit_steps):
        for _ in range(fix_at.count(step)):
            model.requires_grad_(False)
            current = shift_poses(current, target_poses, progressive.pose_shift)
            novel = [camera_at(pose, like) for pose, like in zip(current, target_cameras)]
            renders = render_cameras(model, novel, cfg, device)
            refs = [references[nearest(train_poses, pose)] for pose in current]
            fixed = fixer([renders[c.id] for c in novel], refs)
            views = [
                SourceView(c, image, render_alpha(model, c, cfg, device) > progressive.mask_threshold)
                for c, image in zip(novel, fixed)
            ]
            novel_targets = fit_targets(views, cfg, device)
            log.rounds.append(novel)
            model.requires_grad_(True)
        use_novel = novel_targets is not None and rng.random() >= progressive.train_share
        kind, targets, weight = (
            ("novel", novel_targets, progressive.novel_weight) if use_novel
            else ("train", train_targets, progressive.train_weight)
        )  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        objective = novel_views_loss if kind == "novel" else views_loss
        loss = weight * objective(model.activated(), targets, cfg, background, backend)
        loss.backward()
        optimizer.step()
        scheduler.step()
        log.kinds.append(kind)
        log.weights.append(weight)
        log.losses.append(float(loss.detach()))
    model.requires_grad_(False)
    return log


def progressive_frame(
    scene: MaterializedScene,
    frame: int,
    source_cams: Sequence[int],
    target_cams: Sequence[int],
    cfg: RenderConfig,
    fixer: Fixer,
    progressive: ProgressiveConfig,
    device: torch.device,
) -> tuple[dict[int, np.ndarray], FitLog]:
    """Renders at ``target_cams`` after Difix3D+'s progressive updates: ({cam: (H, W, 3) float32}, log).

    The Gaussians start as the render stage's do (``init_frame_gaussians``); the step draws come
    from ``progressive.seed`` and the frame."""
    views = [SourceView(scene.cameras[c], scene.load_image(c, frame), scene.load_mask(c, frame)) for c in source_cams]
    verts = frame_vertices(scene, frame, cfg.pose_source, cfg.pose_error)
    model = init_frame_gaussians(verts, views, cfg, scene.name, frame, device)
    targets = [scene.cameras[c] for c in target_cams]
    rng = np.random.default_rng([progressive.seed, frame, *scene.name.encode()])
    log = progressive_fit(model, views, targets, cfg, fixer, progressive, device, rng)
    return render_cameras(model, targets, cfg, device), log
