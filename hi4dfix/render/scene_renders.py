"""Renders of a whole materialized scene on disk, from per-frame fits or from an external trainer.

Layout of a render folder::

    {cam}/{frame:06d}.png          the render (people over the flat background)
    targets/{cam}/{frame:06d}.png  ground truth composited over the same background
    manifest.json                  written last: one entry per render, config and summary

Later stages read a render folder only through :func:`read_render_manifest` and
:func:`target_image_path`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from hi4dfix.io import read_image, write_image, write_json
from hi4dfix.metrics import psnr
from hi4dfix.progress import progress
from hi4dfix.render.fit import (
    RenderConfig,
    SourceView,
    composite_on_background,
    fit_frame,
    render_cameras,
    resolve_device,
)
from hi4dfix.render.poses import frame_vertices
from hi4dfix.render.rasterize import resolve_backend
from hi4dfix.scene import MaterializedScene

MANIFEST_NAME = "manifest.json"
TARGETS_DIR = "targets"
RENDER_SOURCES = ("fit", "external")


def render_image_relpath(cam: int, frame: int) -> str:
    return f"{cam}/{frame:06d}.png"


def target_image_path(render_dir: str | Path, cam: int, frame: int) -> Path:
    """The composited ground truth next to the renders (same background as the renders)."""
    return Path(render_dir) / TARGETS_DIR / str(cam) / f"{frame:06d}.png"


def manifest_source_cams(manifest: dict[str, Any]) -> list[int]:
    """The cameras the renders were fitted to (marked ``is_source``), sorted."""
    return sorted({item["cam"] for item in manifest["images"] if item["is_source"]})


def read_render_manifest(render_dir: str | Path) -> dict[str, Any]:
    """The manifest of a finished render folder; a clear error when it is missing or malformed."""
    path = Path(render_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no render manifest; the render job did not finish")
    manifest = json.loads(path.read_text())
    images = manifest.get("images")
    if not isinstance(images, list) or not images:
        raise ValueError(f"{path}: manifest lists no images")
    for key in ("cam", "frame", "path", "is_source"):
        missing = [i for i, item in enumerate(images) if key not in item]
        if missing:
            raise ValueError(f"{path}: images {missing[:5]} lack the key {key!r}")
    return manifest


def resolve_frames(scene: MaterializedScene, frames: Sequence[int] | None) -> list[int]:
    if frames is None:
        return list(scene.frames)
    unknown = sorted(set(frames) - set(scene.frames))
    if unknown:
        raise ValueError(f"{scene.root}: frames {unknown} are not among the scene's frames {scene.frames}")
    return [int(f) for f in frames]


def resolve_source_cams(scene: MaterializedScene, source_cams: Sequence[int] | None) -> list[int]:
    cams = [scene.mono_cam] if source_cams is None else [int(c) for c in source_cams]
    unknown = sorted(set(cams) - set(scene.cam_ids))
    if unknown:
        raise ValueError(f"render source_cams {unknown} are not cameras of scene {scene.name} {scene.cam_ids}")
    return cams


def quantize(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8 exactly as :func:`hi4dfix.io.write_image` stores it."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def composited_target(scene: MaterializedScene, cam: int, frame: int, background) -> np.ndarray:
    return composite_on_background(scene.load_image(cam, frame), scene.load_mask(cam, frame), background)


def write_manifest(
    out_dir: Path,
    scene: MaterializedScene,
    source: str,
    source_cams: list[int],
    frames: list[int],
    background,
    config: dict[str, Any],
    images: list[dict[str, Any]],
) -> dict[str, Any]:
    """Summarise and write the manifest; call it after every image is on disk."""
    heldout = [item["psnr"] for item in images if not item["is_source"]]
    sources = [item["psnr"] for item in images if item["is_source"]]
    manifest = {
        "scene": scene.name,
        "source": source,
        "width": scene.width,
        "height": scene.height,
        "frames": frames,
        "cams": scene.cam_ids,
        "source_cams": source_cams,
        "background": [float(c) for c in background],
        "targets_dir": TARGETS_DIR,
        "config": config,
        "images": images,
        "summary": {
            "num_images": len(images),
            "num_heldout": len(heldout),
            "mean_psnr_heldout": float(np.mean(heldout)) if heldout else None,
            "mean_psnr_source": float(np.mean(sources)) if sources else None,
        },
    }
    write_json(out_dir / MANIFEST_NAME, manifest)
    return manifest


def write_render_and_target(
    out_dir: Path, scene: MaterializedScene, cam: int, frame: int, render: np.ndarray, background, is_source: bool
) -> dict[str, Any]:
    """Write one render and its composited ground truth; the manifest entry for it."""
    render_u8 = quantize(render)
    target = composited_target(scene, cam, frame, background)
    target_u8 = quantize(target)
    relpath = render_image_relpath(cam, frame)
    write_image(out_dir / relpath, render_u8)
    write_image(target_image_path(out_dir, cam, frame), target_u8)
    score = psnr(render_u8.astype(np.float64) / 255.0, target_u8.astype(np.float64) / 255.0)
    return {"cam": cam, "frame": frame, "path": relpath, "psnr": score, "is_source": is_source}


def render_scene(
    scene: MaterializedScene, out_dir: str | Path, cfg: RenderConfig, frames: Sequence[int] | None = None
) -> dict[str, Any]:
    """Fit every frame's Gaussians to the source camera(s) and render all cameras to ``out_dir``."""
    out_dir = Path(out_dir)
    frames = resolve_frames(scene, frames)
    source_cams = resolve_source_cams(scene, cfg.source_cams)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # a rerun is unfinished until its manifest is back
    device = resolve_device(cfg.device)
    backend = resolve_backend(cfg.backend)
    cameras = [scene.cameras[c] for c in scene.cam_ids]
    images = []
    for frame in progress(frames, f"fit+render {scene.name}", unit="frame"):
        views = [
            SourceView(scene.cameras[c], scene.load_image(c, frame), scene.load_mask(c, frame)) for c in source_cams
        ]
        verts = frame_vertices(scene, frame, cfg.pose_source, cfg.pose_error)
        model, _losses = fit_frame(verts, views, cfg, scene.name, frame, device)
        renders = render_cameras(model, cameras, cfg, device)
        for cam in scene.cam_ids:
            images.append(
                write_render_and_target(out_dir, scene, cam, frame, renders[cam], cfg.background, cam in source_cams)
            )
    config = {**cfg.to_dict(), "resolved_backend": backend, "resolved_device": str(device), "torch": torch.__version__}
    return write_manifest(out_dir, scene, "fit", source_cams, frames, cfg.background, config, images)


def ingest_external(
    scene: MaterializedScene,
    pattern: str,
    out_dir: str | Path,
    frames: Sequence[int] | None = None,
    source_cams: Sequence[int] | None = None,
    background: Sequence[float] = (0.0, 0.0, 0.0),
) -> dict[str, Any]:
    """Adopt renders made by your own trainer, e.g. ``/renders/{scene}/{cam}/{frame:06d}.png``.

    Every camera and frame must be there at the scene's size; otherwise the error lists
    each missing or wrongly sized image. Images are re-encoded as RGB PNGs under ``out_dir``
    and scored against the ground truth composited over ``background``.
    """
    out_dir = Path(out_dir)
    frames = resolve_frames(scene, frames)
    source_cams = resolve_source_cams(scene, source_cams)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    # Checked here, read again when written: holding every image would grow with the frames.
    found: dict[tuple[int, int], Path] = {}
    missing, wrong_size, unreadable = [], [], []
    for frame in frames:
        for cam in scene.cam_ids:
            try:
                path = Path(pattern.format(scene=scene.name, cam=cam, frame=frame))
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(
                    f"render external_pattern {pattern!r}: {err!r}; use only the keys scene, cam and frame"
                ) from None
            if not path.is_file():
                missing.append(str(path))
                continue
            try:
                image = read_image(path)
            except Exception as err:  # a truncated or non-image file
                unreadable.append(f"{path} ({err})")
                continue
            if image.shape[:2] != (scene.height, scene.width):
                wrong_size.append(f"{path} is {image.shape[1]}x{image.shape[0]}, expected {scene.width}x{scene.height}")
                continue
            found[(cam, frame)] = path
    if missing or wrong_size or unreadable:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing:\n  " + "\n  ".join(missing))
        if wrong_size:
            parts.append(f"{len(wrong_size)} wrongly sized:\n  " + "\n  ".join(wrong_size))
        if unreadable:
            parts.append(f"{len(unreadable)} unreadable:\n  " + "\n  ".join(unreadable))
        raise ValueError(f"external renders for scene {scene.name} ({pattern}):\n" + "\n".join(parts))

    images = [
        write_render_and_target(
            out_dir, scene, cam, frame, read_image(found[(cam, frame)]), background, cam in source_cams
        )
        for frame in frames
        for cam in scene.cam_ids
    ]
    config = {"pattern": pattern, "background": [float(c) for c in background]}
    return write_manifest(out_dir, scene, "external", source_cams, frames, background, config, images)


def split_render_profile(profile: dict[str, Any]) -> tuple[str, str | None, RenderConfig]:
    """A config ``render_profiles`` entry as (source, external_pattern, RenderConfig of the other keys)."""
    options = dict(profile)
    source = options.pop("source", "fit")
    pattern = options.pop("external_pattern", None)
    if source not in RENDER_SOURCES:
        raise ValueError(f"render profile source {source!r}: expected one of {RENDER_SOURCES}")
    return source, pattern, RenderConfig.from_dict(options)


def render_from_profile(
    scene: MaterializedScene, out_dir: str | Path, profile: dict[str, Any], frames: Sequence[int] | None = None
) -> dict[str, Any]:
    """Dispatch a config ``render_profiles`` entry: ``source: fit`` or ``source: external``.

    ``external_pattern`` is used by ``external`` only; every other key is a
    :class:`RenderConfig` field (``source_cams`` and ``background`` also apply to ``external``).
    """
    source, pattern, cfg = split_render_profile(profile)
    if source == "fit":
        return render_scene(scene, out_dir, cfg, frames)
    if not pattern:
        raise ValueError(
            "render profile: source 'external' needs external_pattern, e.g. /renders/{scene}/{cam}/{frame:06d}.png"
        )
    return ingest_external(scene, pattern, out_dir, frames, cfg.source_cams, cfg.background)
