"""Imperfect poses: SMPL vertices degraded the way a pose estimator gets them wrong.

``pose_source: estimated`` gives each person a rigid rotation error about their centroid,
a translation error, a smooth surface displacement (a limb or the torso off by a few cm),
and optionally the pose of a neighbouring frame. Every draw is seeded by
(seed, scene name, frame), so a scene renders identically on every machine and run.
World units are metres.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

from hi4dfix.scene import MaterializedScene

PoseSource = Literal["gt", "estimated"]
POSE_SOURCES = ("gt", "estimated")


@dataclass(frozen=True)
class PoseErrorConfig:
    """Size of the simulated pose-estimation error.

    Rotation and translation errors have exactly the given size in a random direction, so
    the error level is what the config says. ``part_mm`` is the largest displacement the
    smooth field gives any vertex of a person. ``temporal_offset`` is counted in steps of the
    scene's frame list (only materialized frames have vertices), clamped at its ends.
    """

    rot_deg: float = 4.0
    trans_mm: float = 40.0
    part_mm: float = 30.0
    temporal_offset: int = 0
    seed: int = 0
    part_fields: int = 6  # Gaussian bumps summed into the displacement field, per person
    part_radius_m: float = 0.25  # bump width: about one body part

    def __post_init__(self) -> None:
        for name in ("rot_deg", "trans_mm", "part_mm"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:  # NaN passes a `< 0` test
                raise ValueError(f"pose_error.{name} must be a finite number >= 0, got {value}")
        if self.part_fields < 1:
            raise ValueError(f"pose_error.part_fields must be >= 1, got {self.part_fields}")
        if self.part_radius_m <= 0:
            raise ValueError(f"pose_error.part_radius_m must be > 0, got {self.part_radius_m}")


def frame_rng(seed: int, scene_name: str, frame: int, stream: str) -> np.random.Generator:
    """A generator fixed by (seed, scene, frame, stream); stable across processes and machines."""
    name_key = zlib.crc32(scene_name.encode("utf-8"))
    stream_key = zlib.crc32(stream.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), name_key, int(frame), stream_key]))


def offset_frame(frame: int, frames: list[int], offset: int) -> int:
    """The frame ``offset`` steps from ``frame`` in ``frames``, clamped to the first/last."""
    if frame not in frames:
        raise ValueError(f"frame {frame} is not among the scene's frames {frames}")
    index = min(max(frames.index(frame) + offset, 0), len(frames) - 1)
    return frames[index]


def random_unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    v = rng.normal(size=(count, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def smooth_displacement(
    verts: np.ndarray, rng: np.random.Generator, peak_m: float, num_fields: int, radius_m: float
) -> np.ndarray:
    """A displacement (V, 3) that varies smoothly over the body, largest norm ``peak_m``.

    Sum of Gaussian bumps centred on random vertices, each pushing in its own random
    direction; nearby vertices move together, as when a limb is estimated off.
    """
    if peak_m == 0.0:
        return np.zeros_like(verts)
    centres = verts[rng.choice(len(verts), size=num_fields, replace=num_fields > len(verts))]
    directions = random_unit_vectors(rng, num_fields)
    sq_dist = ((verts[:, None, :] - centres[None, :, :]) ** 2).sum(-1)  # (V, F)
    field = np.exp(-0.5 * sq_dist / radius_m**2) @ directions
    peak = np.linalg.norm(field, axis=1).max()
    return field * (peak_m / peak) if peak > 0 else field


def perturb_person(verts: np.ndarray, rng: np.random.Generator, cfg: PoseErrorConfig) -> np.ndarray:
    """One person's vertices (V, 3) with part, rotation and translation errors applied."""
    verts = verts.astype(np.float64)
    centroid = verts.mean(axis=0)
    moved = verts + smooth_displacement(verts, rng, cfg.part_mm / 1000.0, cfg.part_fields, cfg.part_radius_m)
    axis = random_unit_vectors(rng, 1)[0]
    rotation = Rotation.from_rotvec(np.deg2rad(cfg.rot_deg) * axis).as_matrix()
    shift = random_unit_vectors(rng, 1)[0] * cfg.trans_mm / 1000.0
    return (moved - centroid) @ rotation.T + centroid + shift


def perturb_vertices(verts: np.ndarray, cfg: PoseErrorConfig, scene_name: str, frame: int) -> np.ndarray:
    """All people (P, V, 3) perturbed independently; deterministic in (seed, scene, frame)."""
    rng = frame_rng(cfg.seed, scene_name, frame, "pose_error")
    return np.stack([perturb_person(person, rng, cfg) for person in verts]).astype(np.float32)


def frame_vertices(scene: MaterializedScene, frame: int, pose_source: str, cfg: PoseErrorConfig) -> np.ndarray:
    """The (P, V, 3) vertices a render of ``frame`` is built from."""
    if pose_source == "gt":
        return scene.load_verts(frame)
    if pose_source == "estimated":
        source_frame = offset_frame(frame, scene.frames, cfg.temporal_offset)
        return perturb_vertices(scene.load_verts(source_frame), cfg, scene.name, frame)
    raise ValueError(f"render pose_source {pose_source!r}: expected one of {POSE_SOURCES}")
