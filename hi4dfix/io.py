"""Atomic file writes: an interrupted job never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import imageio.v3 as iio
import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The temporary file keeps the target's suffix so that writers choosing a format by
    extension (imageio, numpy, pandas) behave as they would for the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# np.savez stamps each archive member with the current time; a fixed stamp keeps bytes stable.
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write an uncompressed .npz that ``np.load`` reads, with identical bytes for identical arrays."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, mode="w", compression=zipfile.ZIP_STORED) as archive:
            for key, value in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asarray(value), allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_ZIP_TIME)
                info.external_attr = 0o644 << 16
                archive.writestr(info, buffer.getvalue())


def write_image(path: str | os.PathLike, image: np.ndarray, **kwargs: Any) -> None:
    """Write an image; float arrays in [0, 1] are converted to uint8."""
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=Path(path).suffix, **kwargs)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB image as float32 in [0, 1] (H, W, 3)."""
    image = iio.imread(path)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return image[..., :3].astype(np.float32) / 255.0
