"""2D procedural triplets: quick, small fixtures for the DiFix training code's tests.

Not what the base model learns from (that is ``hi4dfix.difix.ood_scenes``: multi-view renders
whose reference is another camera).  Scenes are procedural (gradients, stripes, checkers, sine
textures, random shapes) and contain no people.  The clean target is a crop of a larger canvas; the reference is a crop
shifted by a few pixels (a nearby clean view); the input is the target degraded with
artifacts resembling those of 3D Gaussian Splatting renders: blur, low-resolution
rendering, ghosting (a blended shifted copy), floaters (blurry translucent blobs),
needle-like splats, colour shifts and noise.

Every triplet is a pure function of (seed, index).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hi4dfix.io import write_image, write_json

DEFAULT_PROMPT = "remove degradation"


@dataclass(frozen=True)
class SyntheticConfig:
    """Image size, view shift and degradation strengths (ranges are sampled uniformly)."""

    height: int = 112
    width: int = 160
    max_view_shift: int = 6
    min_shapes: int = 3
    max_shapes: int = 10
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    downsample: tuple[float, float] = (1.2, 2.5)
    ghost_alpha: tuple[float, float] = (0.1, 0.3)
    ghost_shift: int = 6
    max_floaters: int = 4
    max_needles: int = 15
    colour_gain: tuple[float, float] = (0.9, 1.1)
    colour_bias: tuple[float, float] = (-0.05, 0.05)
    noise_std: tuple[float, float] = (0.02, 0.08)
    min_degradations: int = 1

    def __post_init__(self) -> None:
        if self.height < 16 or self.width < 16:
            raise ValueError(f"SyntheticConfig size must be at least 16x16, got {self.height}x{self.width}")
        if self.max_view_shift < 1:
            raise ValueError("SyntheticConfig.max_view_shift must be >= 1")


# ----------------------------------------------------------------------------- scenes


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=3).astype(np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / max(h, w)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    a, b = _random_colour(rng), _random_colour(rng)
    image = a * (1 - ramp[..., None]) + b * ramp[..., None]
    kind = rng.integers(0, 4)
    if kind == 1:  # stripes
        period = rng.uniform(6, 24)
        t = (np.cos(angle + 1.0) * xx + np.sin(angle + 1.0) * yy) / period
        mask = (np.floor(t) % 2)[..., None]
        image = image * (1 - 0.35 * mask) + 0.35 * mask * _random_colour(rng)
    elif kind == 2:  # checker
        cell = rng.integers(6, 20)
        mask = ((xx // cell + yy // cell) % 2)[..., None]
        image = image * (1 - 0.3 * mask) + 0.3 * mask * _random_colour(rng)
    elif kind == 3:  # sine texture
        fx, fy = rng.uniform(0.05, 0.4, size=2)
        tex = 0.5 + 0.5 * np.sin(fx * xx + rng.uniform(0, 6)) * np.sin(fy * yy + rng.uniform(0, 6))
        image = image * (0.75 + 0.25 * tex[..., None])
    return image.astype(np.float32)


def _shape_texture(rng: np.random.Generator, h: int, w: int, colour: np.ndarray) -> np.ndarray:
    """A flat colour, or the colour modulated by fine stripes (high-frequency detail)."""
    if rng.random() < 0.5:
        return np.broadcast_to(colour, (h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(3, 9)
    angle = rng.uniform(0, np.pi)
    wave = 0.5 + 0.5 * np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period)
    other = _random_colour(rng)
    return colour * wave[..., None] + other * (1 - wave[..., None])


def procedural_scene(rng: np.random.Generator, h: int, w: int, min_shapes: int, max_shapes: int) -> np.ndarray:
    """A synthetic (h, w, 3) float32 image in [0, 1]."""
    image = _background(rng, h, w)
    for _ in range(int(rng.integers(min_shapes, max_shapes + 1))):
        mask = np.zeros((h, w), np.uint8)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(max(4, min(h, w) // 12), max(8, min(h, w) // 3)))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.rectangle(mask, (cx - size, cy - size // 2), (cx + size, cy + size // 2), 1, -1)
        elif kind == 1:
            axes = (size, max(2, int(size * rng.uniform(0.3, 1.0))))
            cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            n = int(rng.integers(3, 7))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = rng.uniform(0.5, 1.0, n) * size
            pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).astype(np.int32)
            cv2.fillPoly(mask, [pts], 1)
        texture = _shape_texture(rng, h, w, _random_colour(rng))
        m = mask.astype(bool)
        image[m] = texture[m]
        if rng.random() < 0.4:  # a dark outline gives sharp edges to restore
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(image, contours, -1, tuple(float(c) for c in _random_colour(rng) * 0.3), 1)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- degradations


def _blur(rng, image, cfg):
    sigma = rng.uniform(*cfg.blur_sigma)
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma * rng.uniform(0.6, 1.4))


def _low_resolution(rng, image, cfg):
    h, w = image.shape[:2]
    factor = rng.uniform(*cfg.downsample)
    small = cv2.resize(image, (max(2, int(w / factor)), max(2, int(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _ghosting(rng, image, cfg):
    dx, dy = rng.integers(-cfg.ghost_shift, cfg.ghost_shift + 1, size=2)
    shifted = np.roll(image, (int(dy), int(dx)), axis=(0, 1))
    alpha = rng.uniform(*cfg.ghost_alpha)
    return (1 - alpha) * image + alpha * shifted


def _floaters(rng, image, cfg):
    h, w = image.shape[:2]
    out = image.copy()
    for _ in range(int(rng.integers(1, cfg.max_floaters + 1))):
        mask = np.zeros((h, w), np.float32)
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(3, max(4, w // 6))), int(rng.integers(3, max(4, h // 6))))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=rng.uniform(2, 6))[..., None]
        colour = image[int(rng.integers(0, h)), int(rng.integers(0, w))]
        out = out * (1 - 0.6 * mask) + 0.6 * mask * colour
    return out


def _needles(rng, image, cfg):
    """Elongated, oriented splats coloured from the image (badly-fitted Gaussians)."""
    h, w = image.shape[:2]
    out = image.copy()
    for _ in range(int(rng.integers(3, cfg.max_needles + 1))):
        layer = np.zeros((h, w), np.float32)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        length = int(rng.integers(6, max(8, w // 4)))
        cv2.ellipse(layer, (cx, cy), (length, 1), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        layer = cv2.GaussianBlur(layer, (0, 0), sigmaX=1.0)[..., None]
        colour = image[
            int(np.clip(cy + rng.integers(-8, 9), 0, h - 1)), int(np.clip(cx + rng.integers(-8, 9), 0, w - 1))
        ]
        out = out * (1 - 0.8 * layer) + 0.8 * layer * colour
    return out


def _colour_shift(rng, image, cfg):
    gain = rng.uniform(*cfg.colour_gain, size=3).astype(np.float32)
    bias = rng.uniform(*cfg.colour_bias, size=3).astype(np.float32)
    return image * gain + bias


DEGRADATIONS = (_blur, _low_resolution, _ghosting, _floaters, _needles, _colour_shift)


def degrade(rng: np.random.Generator, image: np.ndarray, cfg: SyntheticConfig) -> np.ndarray:
    """Apply a random subset (at least ``min_degradations``) of the artifacts, then noise."""
    count = int(rng.integers(cfg.min_degradations, len(DEGRADATIONS) + 1))
    chosen = sorted(rng.choice(len(DEGRADATIONS), size=count, replace=False))
    out = image.astype(np.float32)
    for index in chosen:  # fixed order: geometry-like artifacts before colour changes
        out = DEGRADATIONS[index](rng, out, cfg)
    out = out + rng.normal(0.0, rng.uniform(*cfg.noise_std), size=out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def synthetic_triplet(seed: int, index: int, cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(degraded image, clean target, clean reference from a shifted view), each (H, W, 3)."""
    rng = np.random.default_rng([seed, index])
    m = cfg.max_view_shift
    canvas = procedural_scene(rng, cfg.height + 2 * m, cfg.width + 2 * m, cfg.min_shapes, cfg.max_shapes)
    target = canvas[m : m + cfg.height, m : m + cfg.width]
    dy, dx = 0, 0
    while dy == 0 and dx == 0:
        dy, dx = (int(v) for v in rng.integers(-m, m + 1, size=2))
    ref = canvas[m + dy : m + dy + cfg.height, m + dx : m + dx + cfg.width]
    image = degrade(rng, target, cfg)
    return image, np.ascontiguousarray(target), np.ascontiguousarray(ref)


def write_synthetic_triplets(
    out_dir: str | os.PathLike, n_train: int, n_test: int, seed: int, cfg: SyntheticConfig = SyntheticConfig()
) -> Path:
    """PNG triplets plus ``triplets.json`` (absolute paths) under ``out_dir``; returns the JSON path."""
    out_dir = Path(out_dir).resolve()
    data: dict[str, dict] = {"train": {}, "test": {}}
    # Test triplets use indices after the training ones, so the splits never overlap.
    for split, indices in (("train", range(n_train)), ("test", range(n_train, n_train + n_test))):
        for index in indices:
            image, target, ref = synthetic_triplet(seed, index, cfg)
            item = f"{split}_{index:05d}"
            paths = {}
            for key, array in (("image", image), ("target_image", target), ("ref_image", ref)):
                path = out_dir / split / f"{item}_{key}.png"
                write_image(path, array)
                paths[key] = str(path)
            data[split][item] = {**paths, "prompt": DEFAULT_PROMPT}
    json_path = out_dir / "triplets.json"
    write_json(json_path, data)
    return json_path
