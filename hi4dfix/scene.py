"""The materialized scene: undistorted, resized images, masks, cameras and SMPL vertices.

On disk, under ``results/scenes/{scene}/``::

    scene.json                 manifest (name, source sequence, cameras, frames, size, mono_cam)
    cameras.npz                ids (C,), K (C, 3, 3), w2c (C, 4, 4) world-to-camera, width, height
    images/{cam}/{frame:06d}.png   RGB uint8, undistorted
    masks/{cam}/{frame:06d}.png    uint8, 255 where any person is, 0 elsewhere
    smpl/{frame:06d}.npz           verts (P, 6890, 3) float32, joints_3d (P, 24, 3) float32

Every later stage reads scenes through :func:`load_scene`, never by globbing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from hi4dfix.io import read_image


@dataclass(frozen=True)
class Camera:
    """A pinhole camera after undistortion and resize."""

    id: int
    K: np.ndarray  # (3, 3) intrinsics in pixels
    w2c: np.ndarray  # (4, 4) world-to-camera (OpenCV convention: x right, y down, z forward)
    width: int
    height: int

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        R, t = self.w2c[:3, :3], self.w2c[:3, 3]
        return -R.T @ t


@dataclass(frozen=True)
class MaterializedScene:
    root: Path
    name: str
    cameras: dict[int, Camera]
    frames: list[int]
    mono_cam: int
    width: int
    height: int
    sequence_dir: Path | None = None  # the Hi4D sequence folder it was materialized from (resolved)

    @property
    def cam_ids(self) -> list[int]:
        return sorted(self.cameras)

    def image_path(self, cam: int, frame: int) -> Path:
        return self.root / "images" / str(cam) / f"{frame:06d}.png"

    def mask_path(self, cam: int, frame: int) -> Path:
        return self.root / "masks" / str(cam) / f"{frame:06d}.png"

    def smpl_path(self, frame: int) -> Path:
        return self.root / "smpl" / f"{frame:06d}.npz"

    def load_image(self, cam: int, frame: int) -> np.ndarray:
        """(H, W, 3) float32 in [0, 1]."""
        return read_image(self.image_path(cam, frame))

    def load_mask(self, cam: int, frame: int) -> np.ndarray:
        """(H, W) bool, True on people."""
        mask = iio.imread(self.mask_path(cam, frame))
        if mask.ndim == 3:
            mask = mask[..., 0]
        return mask > 127

    def load_verts(self, frame: int) -> np.ndarray:
        """(P, 6890, 3) float32 SMPL vertices in world coordinates."""
        with np.load(self.smpl_path(frame)) as data:
            return data["verts"].astype(np.float32)


def scene_manifest_path(root: str | Path) -> Path:
    return Path(root) / "scene.json"


def load_scene(root: str | Path) -> MaterializedScene:
    """Load a materialized scene from its folder (the one holding ``scene.json``)."""
    root = Path(root)
    manifest_path = scene_manifest_path(root)
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: no scene manifest; materialize the scene first")
    manifest = json.loads(manifest_path.read_text())
    with np.load(root / "cameras.npz") as cams:
        ids, K, w2c = cams["ids"], cams["K"], cams["w2c"]
        width, height = int(cams["width"]), int(cams["height"])
    cameras = {
        int(cid): Camera(int(cid), K[i].astype(np.float64), w2c[i].astype(np.float64), width, height)
        for i, cid in enumerate(ids)
    }
    return MaterializedScene(
        root=root,
        name=manifest["name"],
        cameras=cameras,
        frames=[int(f) for f in manifest["frames"]],
        mono_cam=int(manifest["mono_cam"]),
        width=width,
        height=height,
        sequence_dir=Path(manifest["sequence_dir"]) if manifest.get("sequence_dir") else None,
    )
