"""Out-of-domain multi-view triplets for pre-training the tiny DiFix base model.

A real DiFix is trained on renders of 3D scenes: ``image`` is a degraded render at one
camera, ``target_image`` the ground truth there and ``ref_image`` a clean view from another
camera.  This module makes such triplets from procedural 3D content that contains no people:
a few rigid textured primitives (ellipsoids and boxes) over a flat background, seen by a ring
of cameras.  The degraded render goes through the study's own render path
(:mod:`hi4dfix.render.fit`): Gaussians placed on the primitives' surfaces with perturbed
poses (:class:`~hi4dfix.render.poses.PoseErrorConfig`, each object moved as a rigid whole
plus a smooth surface displacement), fitted to the source camera only and rendered at the
others.  So the artifacts are those of the study's renders (misalignment, view-dependent
colour errors, blur, floaters), on content the study never shows.

The reference is the ground truth at the source camera, at the same time: another viewpoint,
never a near-copy of the target.  Each triplet also names the content's silhouettes at the target
and the source camera (``target_mask``, ``ref_mask``), as the study's triplets name the person
masks: a tuning run with ``loss_region: person`` (the control arm trains on these triplets) then
weighs the rendered subject, objects here, people there.  Every triplet is a pure function of
(seed, scene index).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hi4dfix.camera import look_at_w2c, pixel_rays
from hi4dfix.io import write_image, write_json
from hi4dfix.render.fit import (
    RenderConfig,
    SourceView,
    composite_on_background,
    fit_frame,
    render_cameras,
    resolve_device,
)
from hi4dfix.render.poses import perturb_person
from hi4dfix.scene import Camera
from hi4dfix.synth.render import intersect_ellipsoid

PROMPT = "remove degradation"
_UP = np.array([0.0, 1.0, 0.0])
_LIGHT = np.array([0.35, 0.85, 0.40]) / np.linalg.norm([0.35, 0.85, 0.40])
SHAPES = ("ellipsoid", "box")
TEST_INDEX_OFFSET = 1_000_000  # scene indices of the test split
TEXTURES = ("flat", "stripes", "checks", "waves", "gradient")


@dataclass(frozen=True)
class OODSceneConfig:
    """Size of the images, the camera rig, the content and the render's degradation.

    ``render`` is the study's render profile (fit to the source camera from perturbed poses);
    each scene scales its pose error by a factor drawn from ``pose_error_scale`` so that the
    base sees a range of degradation strengths.  ``black_background`` is the share of scenes
    over a black background (the study's renders are composited over black); the others get a
    random flat colour.
    """

    height: int = 160
    width: int = 128
    num_cameras: int = 8
    min_objects: int = 2
    max_objects: int = 5
    ring_radius: tuple[float, float] = (3.0, 4.0)
    focal_scale: float = 0.95  # focal length in units of the image height, as the synthetic Hi4D rig
    black_background: float = 0.5
    pose_error_scale: tuple[float, float] = (0.5, 1.5)
    render: RenderConfig = field(
        default_factory=lambda: RenderConfig(backend="torch", fit_steps=60, num_gaussians=1500, device="cpu")
    )

    def __post_init__(self) -> None:
        if self.height < 16 or self.width < 16:
            raise ValueError(f"OODSceneConfig size must be at least 16x16, got {self.height}x{self.width}")
        if self.num_cameras < 2:
            raise ValueError(f"OODSceneConfig.num_cameras must be >= 2 (a source and a target), got {self.num_cameras}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"OODSceneConfig needs 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}"
            )
        if not 0.0 <= self.black_background <= 1.0:
            raise ValueError(f"OODSceneConfig.black_background must be in [0, 1], got {self.black_background}")


# ----------------------------------------------------------------------------- content


@dataclass(frozen=True)
class Primitive:
    """A rigid textured ellipsoid or box: ``radii`` are its semi-axes / half-extents (metres)."""

    shape: str
    centre: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3) object frame -> world
    radii: np.ndarray  # (3,)
    texture: str
    colours: np.ndarray  # (2, 3) albedos the texture mixes
    period: float  # texture period in metres
    axis: np.ndarray  # (3,) unit direction of stripes / gradient in the object frame


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def random_primitives(rng: np.random.Generator, cfg: OODSceneConfig) -> list[Primitive]:
    """A few objects around the rig's centre, about as large in the image as two people."""
    count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    objects = []
    for _ in range(count):
        axis = rng.normal(size=3)
        objects.append(
            Primitive(
                shape=SHAPES[int(rng.integers(len(SHAPES)))],
                centre=np.array([rng.uniform(-0.6, 0.6), rng.uniform(0.3, 1.6), rng.uniform(-0.6, 0.6)]),
                rotation=random_rotation(rng),
                radii=rng.uniform(0.12, 0.45, size=3),
                texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
                colours=rng.uniform(0.05, 0.95, size=(2, 3)),
                period=float(rng.uniform(0.04, 0.2)),
                axis=axis / np.linalg.norm(axis),
            )
        )
    return objects


def albedo(obj: Primitive, local: np.ndarray) -> np.ndarray:
    """Solid texture of ``obj`` at object-frame points (N, 3): it sticks to the object as it moves."""
    a, b = obj.colours
    if obj.texture == "flat":
        mix = np.zeros(len(local))
    elif obj.texture == "stripes":
        mix = np.floor(local @ obj.axis / obj.period) % 2
    elif obj.texture == "checks":
        mix = np.floor(local / obj.period).sum(axis=1) % 2
    elif obj.texture == "waves":
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * local[:, 0] / obj.period) * np.sin(2 * np.pi * local[:, 1] / obj.period)
    else:  # gradient along the axis over the object's extent
        mix = np.clip(0.5 + 0.5 * (local @ obj.axis) / float(obj.radii.max()), 0.0, 1.0)
    return a * (1 - mix[:, None]) + b * mix[:, None]


def intersect_box(origin: np.ndarray, dirs: np.ndarray, obj: Primitive) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the first hit of an oriented box (inf on a miss) and the object-frame normal."""
    o = obj.rotation.T @ (origin - obj.centre)
    d = dirs @ obj.rotation
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1, t2 = (-obj.radii - o) * inv, (obj.radii - o) * inv
    t_near = np.nanmax(np.minimum(t1, t2), axis=1)
    t_far = np.nanmin(np.maximum(t1, t2), axis=1)
    hit = (t_near <= t_far) & (t_far > 1e-9)
    t = np.where(hit, np.where(t_near > 1e-9, t_near, t_far), np.inf)
    normal = np.zeros_like(d)
    face = np.argmax(np.where(np.isfinite(t1), np.minimum(t1, t2), -np.inf), axis=1)
    normal[np.arange(len(d)), face] = -np.sign(d[np.arange(len(d)), face])
    return t, normal


def render_primitives(
    objects: Sequence[Primitive], camera: Camera, background: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ray casting: (H, W, 3) float32 image over ``background`` and (H, W) bool mask."""
    origin, dirs = pixel_rays(camera.K, camera.w2c, None, camera.width, camera.height)
    depth = np.full(len(dirs), np.inf)
    colour = np.zeros((len(dirs), 3))
    for obj in objects:
        if obj.shape == "ellipsoid":
            t = intersect_ellipsoid(origin, dirs, obj.centre, obj.rotation, obj.radii)
        else:
            t, box_normals = intersect_box(origin, dirs, obj)
        closer = np.flatnonzero(t < depth)
        if closer.size == 0:
            continue
        depth[closer] = t[closer]
        local = (origin + t[closer, None] * dirs[closer] - obj.centre) @ obj.rotation
        normal_local = local / obj.radii**2 if obj.shape == "ellipsoid" else box_normals[closer]
        normal = normal_local @ obj.rotation.T
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        shade = 0.45 + 0.6 * np.clip(normal @ _LIGHT, 0.0, None)
        colour[closer] = albedo(obj, local) * shade[:, None]
    mask = np.isfinite(depth).reshape(camera.height, camera.width)
    image = np.clip(colour, 0.0, 1.0).reshape(camera.height, camera.width, 3).astype(np.float32)
    return composite_on_background(image, mask, background), mask


def surface_points(obj: Primitive, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` world points on the object's surface (ellipsoid: scaled sphere directions;
    box: faces chosen by area)."""
    if obj.shape == "ellipsoid":
        directions = rng.normal(size=(count, 3))
        local = directions / np.linalg.norm(directions, axis=1, keepdims=True) * obj.radii
    else:
        r = obj.radii
        areas = np.array([r[1] * r[2], r[0] * r[2], r[0] * r[1]])
        axis = rng.choice(3, size=count, p=areas / areas.sum())
        local = rng.uniform(-1.0, 1.0, size=(count, 3)) * r
        local[np.arange(count), axis] = rng.choice([-1.0, 1.0], size=count) * r[axis]
    return local @ obj.rotation.T + obj.centre


def surface_area(obj: Primitive) -> float:
    r = obj.radii
    if obj.shape == "box":
        return float(8 * (r[0] * r[1] + r[0] * r[2] + r[1] * r[2]))
    p = 1.6075  # Knud Thomsen's approximation (within ~1%)
    a, b, c = r**p
    return float(4 * np.pi * ((a * b + a * c + b * c) / 3) ** (1 / p))


def ring_cameras(rng: np.random.Generator, cfg: OODSceneConfig) -> list[Camera]:
    """Pinhole cameras on an irregular ring, all looking at the content."""
    start = rng.uniform(0, 2 * np.pi)
    cameras = []
    for i in range(cfg.num_cameras):
        angle = start + 2 * np.pi * i / cfg.num_cameras + rng.uniform(-0.1, 0.1)
        radius = rng.uniform(*cfg.ring_radius)
        eye = np.array([radius * np.sin(angle), rng.uniform(0.8, 1.8), radius * np.cos(angle)])
        target = np.array([rng.uniform(-0.15, 0.15), rng.uniform(0.8, 1.0), rng.uniform(-0.15, 0.15)])
        focal = cfg.focal_scale * cfg.height * rng.uniform(0.9, 1.1)
        K = np.array([[focal, 0.0, (cfg.width - 1) / 2], [0.0, focal, (cfg.height - 1) / 2], [0.0, 0.0, 1.0]])
        cameras.append(Camera(id=i, K=K, w2c=look_at_w2c(eye, target, _UP), width=cfg.width, height=cfg.height))
    return cameras


# ----------------------------------------------------------------------------- one scene


@dataclass(frozen=True)
class OODTriplet:
    """One held-out camera of a scene: the degraded render, its ground truth and the reference, and the
    content's (H, W) bool silhouettes at the target and the source camera."""

    camera: int
    image: np.ndarray
    target_image: np.ndarray
    ref_image: np.ndarray
    target_mask: np.ndarray
    ref_mask: np.ndarray


def scene_triplets(seed: int, index: int, cfg: OODSceneConfig) -> list[OODTriplet]:
    """The triplets of scene ``index``: camera 0 is the source, every other camera a target."""
    rng = np.random.default_rng([seed, index])
    objects = random_primitives(rng, cfg)
    cameras = ring_cameras(rng, cfg)
    background = np.zeros(3) if rng.random() < cfg.black_background else rng.uniform(0.0, 1.0, size=3)
    truth = [render_primitives(objects, camera, background) for camera in cameras]

    # The study's render path: Gaussians on perturbed surfaces, fitted to the source view only.
    scale = rng.uniform(*cfg.pose_error_scale)
    pose_error = dataclasses.replace(
        cfg.render.pose_error,
        rot_deg=cfg.render.pose_error.rot_deg * scale,
        trans_mm=cfg.render.pose_error.trans_mm * scale,
        part_mm=cfg.render.pose_error.part_mm * scale,
    )
    areas = np.array([surface_area(obj) for obj in objects])
    counts = np.maximum(8, np.round(areas / areas.sum() * 4 * cfg.render.num_gaussians)).astype(int)
    points = [perturb_person(surface_points(obj, n, rng), rng, pose_error) for obj, n in zip(objects, counts)]
    render_cfg = dataclasses.replace(cfg.render, background=tuple(float(c) for c in background))
    source = SourceView(cameras[0], truth[0][0], truth[0][1])
    device = resolve_device(cfg.render.device, "the out-of-domain render device")  # the pretraining: cpu
    model, _losses = fit_frame(np.concatenate(points)[None], [source], render_cfg, f"ood{seed}", index, device)
    renders = render_cameras(model, cameras[1:], render_cfg, device)
    return [
        OODTriplet(
            camera=cam.id,
            image=renders[cam.id],
            target_image=truth[cam.id][0],
            ref_image=truth[0][0],
            target_mask=truth[cam.id][1],
            ref_mask=truth[0][1],
        )
        for cam in cameras[1:]
    ]


# ----------------------------------------------------------------------------- a dataset on disk


def _scene_job(args: tuple[int, int, OODSceneConfig]) -> list[OODTriplet]:
    torch.set_num_threads(1)  # one scene per worker process
    return scene_triplets(*args)


def _scenes(
    seed: int, indices: Sequence[int], cfg: OODSceneConfig, workers: int
) -> Iterator[tuple[int, list[OODTriplet]]]:
    jobs = [(seed, index, cfg) for index in indices]
    if workers <= 1:
        yield from zip(indices, map(_scene_job, jobs))
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from zip(indices, pool.map(_scene_job, jobs))


def write_ood_triplets(
    out_dir: str | os.PathLike,
    n_train_scenes: int,
    n_test_scenes: int,
    seed: int,
    cfg: OODSceneConfig = OODSceneConfig(),
    workers: int = 1,
) -> Path:
    """PNG triplets of ``n_train_scenes`` + ``n_test_scenes`` scenes plus ``triplets.json``
    (absolute paths, Difix's schema) under ``out_dir``; returns the JSON path.  Test scenes are
    drawn from their own index range, so the splits never share a scene and the test split
    stays the same whatever the number of training scenes."""
    from hi4dfix.progress import progress

    out_dir = Path(out_dir).resolve()
    splits = {"train": range(n_train_scenes), "test": range(TEST_INDEX_OFFSET, TEST_INDEX_OFFSET + n_test_scenes)}
    data: dict[str, dict] = {"train": {}, "test": {}}
    for split, indices in splits.items():
        for index, triplets in progress(
            _scenes(seed, list(indices), cfg, workers), f"OOD {split} scenes", total=len(indices)
        ):
            for triplet in triplets:
                item = f"scene{index:05d}/{triplet.camera}"
                paths = {}
                for key in ("image", "target_image", "ref_image", "target_mask", "ref_mask"):
                    path = out_dir / split / f"scene{index:05d}" / f"{triplet.camera}_{key}.png"
                    pixels = getattr(triplet, key)
                    write_image(path, pixels.astype(np.uint8) * 255 if pixels.dtype == bool else pixels)
                    paths[key] = str(path)
                data[split][item] = {**paths, "prompt": PROMPT}
    json_path = out_dir / "triplets.json"
    write_json(json_path, data)
    return json_path
