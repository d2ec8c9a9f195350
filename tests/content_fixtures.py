"""Copies of a Hi4D sequence that try to smuggle its content past the reserved-scene policy."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from hi4dfix.io import read_samples, write_image, write_npz


def byte_copy(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


def jpeg_reencoded_copy(source: Path, dest: Path, quality: int = 75) -> Path:
    """Every image decoded and written again as JPEG at ``quality``: no file is byte-identical."""
    shutil.copytree(source, dest)
    for path in sorted((dest / "images").rglob("*.jpg")):
        write_image(path, read_samples(path), quality=quality)
    return dest


def resized_copy(source: Path, dest: Path, factor: float = 0.5) -> Path:
    """Images and masks resized by ``factor`` and the intrinsics scaled to match (a consistent sequence)."""
    shutil.copytree(source, dest)
    for path in sorted((dest / "images").rglob("*.jpg")):
        image = read_samples(path)
        size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
        write_image(path, cv2.resize(image, size, interpolation=cv2.INTER_AREA), quality=90)
    for path in sorted((dest / "seg").rglob("*.png")):
        mask = read_samples(path)
        size = (round(mask.shape[1] * factor), round(mask.shape[0] * factor))
        write_image(path, cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST))
    cameras_path = dest / "cameras" / "rgb_cameras.npz"
    cameras = dict(np.load(cameras_path))
    intrinsics = cameras["intrinsics"].copy()
    intrinsics[:, :2, :] *= factor
    cameras["intrinsics"] = intrinsics
    write_npz(cameras_path, **cameras)
    return dest


def mirrored_copy(source: Path, dest: Path) -> Path:
    """Every image and mask mirrored left-right (a copy no pixel or unturned perceptual hash matches)."""
    shutil.copytree(source, dest)
    for pattern in ("images/**/*.jpg", "seg/**/*.png"):
        for path in sorted(dest.glob(pattern)):
            samples = read_samples(path)
            write_image(
                path, np.ascontiguousarray(samples[:, ::-1]), **({"quality": 95} if path.suffix == ".jpg" else {})
            )
    return dest
