"""Gaussian rendering of Hi4D scenes: rasterization, imperfect poses, per-frame fits, scene renders."""

from hi4dfix.render.fit import RenderConfig, SourceView, composite_on_background, fit_frame, render_cameras
from hi4dfix.render.gaussians import GaussianModel
from hi4dfix.render.poses import PoseErrorConfig, frame_vertices, perturb_vertices
from hi4dfix.render.rasterize import rasterize, resolve_backend
from hi4dfix.render.scene_renders import (
    ingest_external,
    read_render_manifest,
    render_from_profile,
    render_scene,
    target_image_path,
)
from hi4dfix.render.torch_backend import TorchRasterConfig

__all__ = [
    "GaussianModel",
    "PoseErrorConfig",
    "RenderConfig",
    "SourceView",
    "TorchRasterConfig",
    "composite_on_background",
    "fit_frame",
    "frame_vertices",
    "ingest_external",
    "perturb_vertices",
    "rasterize",
    "read_render_manifest",
    "render_cameras",
    "render_from_profile",
    "render_scene",
    "resolve_backend",
    "target_image_path",
]
