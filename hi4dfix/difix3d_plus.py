"""The progressive 3D update of Difix3D+, for one frame's Gaussians.

While fitting the frame's Gaussians to the source view(s), at scheduled rounds render views at
cameras interpolated from the source toward the held-out cameras, fix them with DiFix (reference:
the source view at the same frame), add them as extra observations and continue fitting. After the
last round, the held-out cameras are rendered (and post-fixed by the caller).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.spatial.transform import Rotation, Slerp

from hi4dfix.render.fit import (
    RenderConfig,
    SourceView,
    camera_tensors,
    composite_on_background,
    fit_gaussians,
    init_frame_gaussians,
    render_cameras,
)
from hi4dfix.render.gaussians import GaussianModel
from hi4dfix.render.poses import frame_vertices
from hi4dfix.render.rasterize import rasterize, resolve_backend
from hi4dfix.scene import Camera, MaterializedScene
from hi4dfix.triplets import nearest_source_cam

Fixer = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class ProgressiveConfig:
    rounds: int = 2  # DiFix updates; round k moves the novel cameras k/rounds of the way to the targets
    mask_threshold: float = 0.5  # rendered alpha above which a fixed pixel counts as person

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"nvs difix3d+ rounds must be >= 1, got {self.rounds}")


def interpolate_camera(start: Camera, end: Camera, t: float, camera_id: int = -1) -> Camera:
    """A camera ``t`` of the way from ``start`` to ``end``: slerp of rotation, lerp of centre and K."""
    rotations = Rotation.from_matrix(np.stack([start.w2c[:3, :3], end.w2c[:3, :3]]))
    rotation = Slerp([0.0, 1.0], rotations)([t]).as_matrix()[0]
    center = (1.0 - t) * start.center + t * end.center
    w2c = np.eye(4)
    w2c[:3, :3] = rotation
    w2c[:3, 3] = -rotation @ center
    K = (1.0 - t) * start.K + t * end.K
    return Camera(camera_id, K, w2c, start.width, start.height)


@torch.no_grad()
def render_alpha(model: GaussianModel, camera: Camera, cfg: RenderConfig, device: torch.device) -> np.ndarray:
    viewmat, K = camera_tensors(camera, device)
    background = torch.tensor(cfg.background, dtype=torch.float32, device=device)
    _rgb, alpha = rasterize(
        **model.activated(), viewmat=viewmat, K=K, width=camera.width, height=camera.height,
        background=background, backend=resolve_backend(cfg.backend),
    )  # fmt: skip
    return alpha.cpu().numpy()


def progressive_frame(
    scene: MaterializedScene,
    frame: int,
    source_cams: Sequence[int],
    target_cams: Sequence[int],
    cfg: RenderConfig,
    fixer: Fixer,
    progressive: ProgressiveConfig,
    device: torch.device,
) -> dict[int, np.ndarray]:
    """Renders at ``target_cams`` after progressive DiFix updates: {cam: (H, W, 3) float32}."""
    views = [SourceView(scene.cameras[c], scene.load_image(c, frame), scene.load_mask(c, frame)) for c in source_cams]
    by_cam = dict(zip(source_cams, views))
    start_of = {c: by_cam[nearest_source_cam(scene, source_cams, c)] for c in target_cams}
    references = {
        id(view): composite_on_background(view.image, view.mask, cfg.background) for view in by_cam.values()
    }
    verts = frame_vertices(scene, frame, cfg.pose_source, cfg.pose_error)
    model = init_frame_gaussians(verts, views, cfg, scene.name, frame, device)
    round_cfg = dataclasses.replace(cfg, fit_steps=max(1, cfg.fit_steps // (progressive.rounds + 1)))
    fit_gaussians(model, views, round_cfg, device)
    for round_index in range(1, progressive.rounds + 1):
        t = round_index / progressive.rounds
        novel = [interpolate_camera(start_of[c].camera, scene.cameras[c], t, camera_id=c) for c in target_cams]
        renders = render_cameras(model, novel, cfg, device)
        fixed = fixer([renders[c.id] for c in novel], [references[id(start_of[c])] for c in target_cams])
        for camera, image in zip(novel, fixed):
            mask = render_alpha(model, camera, cfg, device) > progressive.mask_threshold
            views.append(SourceView(camera, image, mask))
        fit_gaussians(model, views, round_cfg, device)
    return render_cameras(model, [scene.cameras[c] for c in target_cams], cfg, device)
