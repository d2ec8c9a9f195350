"""Atomic file writes (an interrupted job never leaves a half-written output behind), images, and
the digests of files and data."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import imageio.v3 as iio
import numpy as np
from PIL import Image


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


def canonical_json(value: Any, *, compact: bool = False, default: Callable[[Any], Any] | None = None) -> str:
    """``value`` as JSON with sorted keys, so that equal data give equal text (and digests).
    ``compact``: no spaces after ``,`` and ``:``; ``default``: how values JSON lacks are written."""
    return json.dumps(value, sort_keys=True, separators=(",", ":") if compact else None, default=default)


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


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


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_16bit_png(path: Path) -> bool:
    """Whether the PNG header says 16 bits per sample (Pillow would reduce an RGB one to 8)."""
    with open(path, "rb") as fh:
        header = fh.read(26)  # signature, IHDR length and type, width, height, bit depth
    return header[:8] == _PNG_SIGNATURE and len(header) == 26 and header[24] == 16


def _decode(path: Path) -> np.ndarray:
    """The stored samples, channels in RGB(A) order: 2-D grey, or (H, W, C)."""
    if _is_16bit_png(path):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # keeps all 16 bits
        if image is None:
            raise ValueError(f"{path}: unreadable image (OpenCV cannot decode this 16-bit PNG)")
        if image.ndim == 3 and image.shape[2] in (3, 4):
            image = image[..., [2, 1, 0, 3][: image.shape[2]]]  # OpenCV's BGR(A) -> RGB(A)
        return image
    try:
        with Image.open(path) as pil:
            if pil.mode.startswith("I;16") or pil.mode in ("I", "F"):
                return np.asarray(pil)  # one channel of 16-bit, 32-bit or float samples
            if pil.mode not in ("RGB", "L"):
                pil = pil.convert("RGB")  # palette, 1-bit, grey+alpha, RGBA, CMYK...: alpha dropped
            return np.asarray(pil)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such image file") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from exc


def read_samples(path: str | os.PathLike) -> np.ndarray:
    """The decoded samples as stored (uint8 or uint16), RGB(A) order: what a pixel hash compares."""
    return _decode(Path(path))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as RGB float32 in [0, 1], shape (H, W, 3).

    Converted by bit depth: 8-bit samples / 255, 16-bit ones (PNG, TIFF) / 65535, 1-bit as 0 or
    1, float samples as stored when within [0, 1]; and by channels: grey is repeated to RGB,
    palette images are expanded, alpha (grey+alpha, RGBA) is dropped. Anything else (32-bit
    integer samples, floats outside [0, 1], other channel counts) is refused naming the file.
    """
    path = Path(path)
    image = _decode(path)
    if image.dtype == np.uint8:
        scaled = image.astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        scaled = image.astype(np.float32) / 65535.0
    elif image.dtype == np.bool_:
        scaled = image.astype(np.float32)
    elif np.issubdtype(image.dtype, np.floating):
        scaled = image.astype(np.float32)
        if not (np.all(np.isfinite(scaled)) and scaled.min() >= 0.0 and scaled.max() <= 1.0):
            raise ValueError(f"{path}: float image with values outside [0, 1]; store it as 8- or 16-bit")
    else:
        raise ValueError(f"{path}: {image.dtype} samples are not supported; store the image as 8- or 16-bit")
    if scaled.ndim == 3 and scaled.shape[2] in (1, 2):
        scaled = scaled[..., 0]  # grey, or grey+alpha
    if scaled.ndim == 2:
        return np.repeat(scaled[..., None], 3, axis=-1)
    if scaled.ndim != 3 or scaled.shape[2] not in (3, 4):
        raise ValueError(f"{path}: image of shape {image.shape} is neither grey, RGB nor RGBA")
    return np.ascontiguousarray(scaled[..., :3])
