"""Turn a Hi4D sequence (real or synthetic, via the same reader) into a materialized scene.

Writes the format documented in :mod:`hi4dfix.scene`: undistorted, resized images and
'all'-person masks per camera and frame, pinhole cameras after undistortion and resize, SMPL
vertices and joints per frame, ``scene.json``, and ``fingerprint.json`` (the content record of
:mod:`hi4dfix.fingerprint`); the folder is renamed into place only when all are written.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from hi4dfix.camera import scale_intrinsics, undistort_maps
from hi4dfix.fingerprint import image_entry, make_fingerprint, write_fingerprint
from hi4dfix.hi4d.reader import Hi4DCamera, Hi4DSequence
from hi4dfix.io import write_image, write_json, write_npz
from hi4dfix.progress import progress
from hi4dfix.scene import MaterializedScene, load_scene, scene_manifest_path
from hi4dfix.sources import NEW as NEW_SOURCES
from hi4dfix.sources import record_sources

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaterializeConfig:
    # Output size: give width and/or height, or scale, or long_side; nothing keeps the source size.
    width: int | None = None
    height: int | None = None
    scale: float | None = None
    long_side: int | None = None
    frame_stride: int = 1  # keep every n-th frame
    max_frames: int | None = None  # None keeps all selected frames
    first_frame_offset: int = 0  # index into the sequence's frame list where selection starts

    def __post_init__(self) -> None:
        size_modes = [
            m
            for m, on in (
                ("width/height", self.width or self.height),
                ("scale", self.scale),
                ("long_side", self.long_side),
            )
            if on is not None
        ]
        problems = []
        if len(size_modes) > 1:
            problems.append(f"set only one of width/height, scale, long_side (got {', '.join(size_modes)})")
        for name in ("width", "height", "long_side", "max_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1, got {value}")
        if self.scale is not None and self.scale <= 0:
            problems.append(f"scale must be > 0, got {self.scale}")
        if self.frame_stride < 1:
            problems.append(f"frame_stride must be >= 1, got {self.frame_stride}")
        if self.first_frame_offset < 0:
            problems.append(f"first_frame_offset must be >= 0, got {self.first_frame_offset}")
        if problems:
            raise ValueError("MaterializeConfig: " + "; ".join(problems))

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the materialized images for a source of ``width`` x ``height``."""
        if self.width is not None and self.height is not None:
            return self.width, self.height
        if self.width is not None:
            return self.width, max(1, round(height * self.width / width))
        if self.height is not None:
            return max(1, round(width * self.height / height)), self.height
        scale = (
            self.scale if self.scale is not None else (self.long_side / max(width, height) if self.long_side else 1.0)
        )
        return max(1, round(width * scale)), max(1, round(height * scale))

    def select_frames(self, frames: list[int] | tuple[int, ...]) -> list[int]:
        chosen = list(frames)[self.first_frame_offset :: self.frame_stride]
        return chosen if self.max_frames is None else chosen[: self.max_frames]


def materialize_scene(
    sequence: Hi4DSequence,
    out_dir: str | os.PathLike,
    name: str,
    cfg: MaterializeConfig = MaterializeConfig(),
    source_token: str = NEW_SOURCES,
) -> MaterializedScene:
    """Write the materialized scene ``name`` of ``sequence`` into ``out_dir`` and load it back.

    ``sources.json`` records the source files read, under ``source_token`` (hi4dfix.sources).

    The scene is written into a temporary sibling folder and renamed to ``out_dir`` at the end,
    so a failure leaves no partial ``out_dir``, and an existing ``out_dir`` is replaced only
    once the new scene is complete.
    """
    out_dir = Path(out_dir)
    frames = cfg.select_frames(sequence.frames)
    if not frames:
        raise ValueError(
            f"{sequence.root}: MaterializeConfig selects no frames (first_frame_offset={cfg.first_frame_offset}, "
            f"frame_stride={cfg.frame_stride}, max_frames={cfg.max_frames}) from {len(sequence.frames)} frame(s)"
        )
    sizes = {cid: cfg.output_size(cam.width, cam.height) for cid, cam in sequence.cameras.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(
            f"{sequence.root}: cameras would materialize at different sizes {sizes}; "
            "set MaterializeConfig.width and height"
        )
    width, height = next(iter(sizes.values()))
    # mkdir (not mkdtemp, which makes it private to the user) keeps the umask's permissions
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:12]}")
    tmp.mkdir(parents=True)
    try:
        _write_scene(sequence, tmp, name, cfg, frames, width, height)
        read = [sequence.smpl_path(frame) for frame in frames] + [
            path
            for frame in frames
            for cid in sequence.cam_ids
            for path in (sequence.image_path(cid, frame), sequence.mask_path(cid, frame))
        ]
        record_sources(tmp, sequence.root, read, source_token)
        _replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return load_scene(out_dir)


def _replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` onto ``target``; an existing ``target`` is moved aside first, then deleted."""
    if not (target.exists() or target.is_symlink()):
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
    os.replace(target, old)
    os.replace(new, target)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    else:
        old.unlink()


def _write_scene(
    sequence: Hi4DSequence, out_dir: Path, name: str, cfg: MaterializeConfig, frames: list[int], width: int, height: int
) -> None:
    manifest = scene_manifest_path(out_dir)
    cam_ids = sequence.cam_ids
    Ks, w2cs, prints = [], [], []
    for cid in progress(cam_ids, f"materialize {name}", unit="camera"):
        K = _materialize_camera(sequence, sequence.cameras[cid], out_dir, frames, width, height, prints)
        Ks.append(K)
        w2cs.append(sequence.cameras[cid].w2c)
        log.info("%s: camera %d done (%d frames)", name, cid, len(frames))
    write_npz(
        out_dir / "cameras.npz",
        ids=np.array(cam_ids, dtype=np.int64),
        K=np.stack(Ks),
        w2c=np.stack(w2cs),
        width=np.array(width),
        height=np.array(height),
    )
    for frame in frames:
        smpl = sequence.load_smpl(frame)
        write_npz(
            out_dir / "smpl" / f"{frame:06d}.npz",
            verts=smpl.verts.astype(np.float32),
            joints_3d=smpl.joints_3d.astype(np.float32),
        )
    first = sequence.cameras[cam_ids[0]]
    write_json(
        manifest,
        {
            "name": name,
            "sequence_dir": str(sequence.root.resolve()),
            "cam_ids": cam_ids,
            "frames": frames,
            "width": width,
            "height": height,
            "mono_cam": sequence.meta.mono_cam,
            "num_persons": sequence.meta.num_persons,
            "genders": list(sequence.meta.genders),
            "contact_frames": [f for f in frames if f in set(sequence.meta.contact_ids)],
            "source_width": first.width,
            "source_height": first.height,
            "undistorted": True,
            "materialize": asdict(cfg),
        },
    )
    # the content record the reserved-scene policy compares (hi4dfix.fingerprint)
    write_fingerprint(out_dir, make_fingerprint(name, prints))


def _materialize_camera(
    sequence: Hi4DSequence,
    camera: Hi4DCamera,
    out_dir: Path,
    frames: list[int],
    width: int,
    height: int,
    prints: list[dict],
) -> np.ndarray:
    """Undistort and resize one camera's images and masks, appending their fingerprint entries to
    ``prints``; return the camera's new intrinsics."""
    src_size = (camera.width, camera.height)
    # Undistort at source resolution keeping K, then resize: one map per camera serves all frames.
    maps = undistort_maps(camera.K, camera.dist_coeffs, *src_size) if np.any(camera.dist_coeffs != 0) else None
    resize = (width, height) != src_size
    downscale = width < camera.width or height < camera.height
    for frame in frames:
        image = sequence.load_image(camera.id, frame)
        mask = sequence.load_mask(camera.id, frame).astype(np.uint8) * 255
        if image.shape[:2] != (camera.height, camera.width):
            raise ValueError(
                f"{sequence.image_path(camera.id, frame)}: size {image.shape[1]}x{image.shape[0]} differs from "
                f"camera {camera.id}'s {camera.width}x{camera.height}"
            )
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{sequence.mask_path(camera.id, frame)}: mask size differs from the image's")
        if maps is not None:
            image = cv2.remap(image, *maps, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            mask = cv2.remap(mask, *maps, interpolation=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
        if resize:
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if downscale else cv2.INTER_LINEAR)
            mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
        image_path = Path("images") / str(camera.id) / f"{frame:06d}.png"
        write_image(out_dir / image_path, image)
        write_image(out_dir / "masks" / str(camera.id) / f"{frame:06d}.png", mask)
        # PNG is lossless: these arrays are the decoded pixels of the files just written
        prints.append(image_entry(camera.id, frame, image_path.as_posix(), image, mask))
    return scale_intrinsics(camera.K, width / camera.width, height / camera.height)
