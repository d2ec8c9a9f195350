"""Read (and check) one Hi4D sequence folder in its released layout.

:func:`validate_sequence` collects every problem it finds; :func:`read_sequence` raises
:class:`Hi4DFormatError` listing them. Reading holds only metadata, cameras and the frame
list; images, masks and SMPL parameters load lazily, one frame at a time.
"""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import imageio.v3 as iio
import numpy as np
from PIL import Image

from hi4dfix.camera import VALID_DIST_LENGTHS, rotation_error, to_homogeneous_w2c
from hi4dfix.hi4d.layout import (
    CAMERA_KEYS,
    INTRINSICS_ALIASES,
    MASK_ALL,
    META_KEYS,
    SMPL_KEYS,
    SMPL_SHAPES,
    Hi4DLayout,
    frame_number,
)
from hi4dfix.progress import progress

Severity = Literal["error", "warning"]
_MAX_LISTED = 5  # frames named in one message before summarising


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a sequence, tied to the file or folder it concerns."""

    path: Path
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


class Hi4DFormatError(ValueError):
    """A sequence folder does not follow the Hi4D layout."""

    def __init__(self, root: Path, problems: list[Problem]):
        self.root = root
        self.problems = problems
        listed = "\n  ".join(str(p) for p in problems)
        super().__init__(f"{root}: not a valid Hi4D sequence ({len(problems)} problem(s)):\n  {listed}")


@dataclass(frozen=True)
class ReadConfig:
    check_files: bool = True  # open every image/mask header and check every SMPL file's keys and shapes
    decode_images: bool = False  # fully decode every image and mask (slow; catches truncated files)
    workers: int = 1  # threads opening / decoding image and mask files
    rotation_tol: float = 1e-3  # max deviation of an extrinsic rotation from orthonormal


@dataclass(frozen=True)
class Hi4DMeta:
    start: int
    end: int
    num_persons: int
    genders: tuple[str, ...]
    betas: np.ndarray
    contact_ids: tuple[int, ...]
    mono_cam: int


@dataclass(frozen=True)
class Hi4DCamera:
    """A calibrated camera of the released (distorted) images."""

    id: int
    K: np.ndarray  # (3, 3)
    extrinsics: np.ndarray  # (3, 4) world-to-camera
    dist_coeffs: np.ndarray  # OpenCV (k1, k2, p1, p2, k3[, ...])
    width: int
    height: int

    @property
    def w2c(self) -> np.ndarray:
        return to_homogeneous_w2c(self.extrinsics)


@dataclass(frozen=True)
class SmplFrame:
    """SMPL parameters of all persons in one frame (leading axis: person)."""

    betas: np.ndarray  # (P, 10)
    body_pose: np.ndarray  # (P, 69)
    global_orient: np.ndarray  # (P, 3)
    transl: np.ndarray  # (P, 3)
    joints_3d: np.ndarray  # (P, 24, 3)
    verts: np.ndarray  # (P, 6890, 3)
    contact: np.ndarray  # (P, 6890)


@dataclass(frozen=True)
class Hi4DSequence:
    root: Path
    meta: Hi4DMeta
    cameras: dict[int, Hi4DCamera]
    frames: tuple[int, ...]

    @property
    def layout(self) -> Hi4DLayout:
        return Hi4DLayout(self.root)

    @property
    def cam_ids(self) -> list[int]:
        return sorted(self.cameras)

    @property
    def num_persons(self) -> int:
        return self.meta.num_persons

    def image_path(self, cam: int, frame: int) -> Path:
        return self.layout.image_path(cam, frame)

    def mask_path(self, cam: int, frame: int, person: int | str = MASK_ALL) -> Path:
        return self.layout.mask_path(cam, frame, person)

    def smpl_path(self, frame: int) -> Path:
        return self.layout.smpl_path(frame)

    def scan_path(self, frame: int) -> Path | None:
        """The optional raw scan of a frame, or None where the sequence has none."""
        path = self.layout.scan_path(frame)
        return path if path.is_file() else None

    def load_image(self, cam: int, frame: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB image as released (distorted)."""
        self._check_known(cam, frame)
        path = self.image_path(cam, frame)
        image = _imread(path)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        return image[..., :3].astype(np.uint8)

    def load_mask(self, cam: int, frame: int, person: int | str = MASK_ALL) -> np.ndarray:
        """(H, W) bool segmentation mask of one person (0, 1, ...) or of all (``"all"``)."""
        self._check_known(cam, frame)
        if person != MASK_ALL and person not in range(self.num_persons):
            raise ValueError(f"person must be 0..{self.num_persons - 1} or {MASK_ALL!r}, got {person!r}")
        mask = _imread(self.mask_path(cam, frame, person))
        if mask.ndim == 3:
            mask = mask[..., 0]
        # Masks are stored 0/255 in Hi4D; accept 0/1 too.
        return mask >= 128 if mask.max() > 1 else mask > 0

    def load_smpl(self, frame: int) -> SmplFrame:
        if frame not in self.frames:
            raise KeyError(f"{self.root}: frame {frame} is not part of this sequence")
        path = self.smpl_path(frame)
        try:
            with np.load(path) as data:
                arrays = {key: np.asarray(data[key]) for key in SMPL_KEYS if key in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise Hi4DFormatError(self.root, [Problem(path, f"unreadable SMPL file ({exc})")]) from exc
        problems = _smpl_shape_problems(path, {k: a.shape for k, a in arrays.items()}, self.num_persons)
        if problems:
            raise Hi4DFormatError(self.root, problems)
        return SmplFrame(**arrays)

    def _check_known(self, cam: int, frame: int) -> None:
        if cam not in self.cameras:
            raise KeyError(f"{self.root}: camera {cam} is not one of {self.cam_ids}")
        if frame not in self.frames:
            raise KeyError(f"{self.root}: frame {frame} is not part of this sequence")


def validate_sequence(path: str | os.PathLike, cfg: ReadConfig = ReadConfig()) -> list[Problem]:
    """Every problem (errors and warnings) with the sequence at ``path``; empty when all is well."""
    return _inspect(Path(path), cfg).problems


def read_sequence(path: str | os.PathLike, cfg: ReadConfig = ReadConfig()) -> Hi4DSequence:
    """Read a sequence's metadata, cameras and frame list; raise :class:`Hi4DFormatError` on errors."""
    root = Path(path)
    found = _inspect(root, cfg)
    errors = [p for p in found.problems if p.severity == "error"]
    if errors:
        raise Hi4DFormatError(root, errors)
    assert found.meta is not None
    cameras = {
        cid: Hi4DCamera(cid, K, ext, dist, *found.sizes[cid])
        for cid, (K, ext, dist) in found.calibration.items()
    }
    return Hi4DSequence(root=root, meta=found.meta, cameras=cameras, frames=tuple(found.frames))


# --------------------------------------------------------------------------- inspection


@dataclass
class _Inspection:
    problems: list[Problem] = field(default_factory=list)
    meta: Hi4DMeta | None = None
    calibration: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    calibrated: set[int] = field(default_factory=set)  # every camera id the calibration file lists, valid or not
    frames: list[int] = field(default_factory=list)
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)  # cam -> (width, height)

    def error(self, path: Path, message: str) -> None:
        self.problems.append(Problem(path, message, "error"))

    def warn(self, path: Path, message: str) -> None:
        self.problems.append(Problem(path, message, "warning"))


def _inspect(root: Path, cfg: ReadConfig) -> _Inspection:
    found = _Inspection()
    if not root.is_dir():
        found.error(root, "sequence folder does not exist")
        return found
    layout = Hi4DLayout(root)
    found.meta = _read_meta(layout.meta_path, found)
    _read_cameras(layout.cameras_path, found, cfg.rotation_tol)
    if found.meta is not None and found.calibration and found.meta.mono_cam not in found.calibration:
        found.error(
            layout.meta_path, f"mono_cam {found.meta.mono_cam} is not one of the camera ids {sorted(found.calibration)}"
        )
    frames_by_cam = _list_frames(layout, sorted(found.calibration), found)
    found.frames = _common_frames(layout, frames_by_cam, found)
    if found.meta is not None and found.frames:
        outside = [f for f in found.frames if not found.meta.start <= f <= found.meta.end]
        if outside:
            found.warn(
                layout.meta_path,
                f"{len(outside)} image frame(s) outside start..end = {found.meta.start}..{found.meta.end}: "
                f"{_some(outside)}",
            )
    num_persons = found.meta.num_persons if found.meta is not None else None
    _check_images_and_masks(layout, frames_by_cam, num_persons, found, cfg)
    _check_smpl(layout, found.frames, num_persons, found, cfg)
    return found


def _some(items: list) -> str:
    shown = ", ".join(str(i) for i in items[:_MAX_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _MAX_LISTED else "")


def _load_npz(path: Path, found: _Inspection, allow_pickle: bool = False) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        found.error(path, "file is missing")
        return None
    try:
        with np.load(path, allow_pickle=allow_pickle) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        found.error(path, f"not a readable .npz file ({exc})")
        return None


def _as_int(value: np.ndarray) -> int | None:
    array = np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.number):
        return None
    return int(array.reshape(()))


def _read_meta(path: Path, found: _Inspection) -> Hi4DMeta | None:
    # Hi4D stores genders / contact_ids as object arrays in some sequences, hence pickle.
    data = _load_npz(path, found, allow_pickle=True)
    if data is None:
        return None
    missing = [key for key in META_KEYS if key not in data]
    if missing:
        found.error(path, f"missing key(s) {missing}; has {sorted(data)}")
        return None
    ints = {key: _as_int(data[key]) for key in ("start", "end", "num_persons", "mono_cam")}
    bad = [key for key, value in ints.items() if value is None]
    if bad:
        found.error(path, f"key(s) {bad} must hold a single integer")
        return None
    if ints["num_persons"] < 1:
        found.error(path, f"num_persons must be >= 1, got {ints['num_persons']}")
        return None
    if ints["start"] > ints["end"]:
        found.error(path, f"start {ints['start']} is after end {ints['end']}")
    try:
        contact_ids = tuple(int(c) for c in np.asarray(data["contact_ids"]).ravel())
    except (TypeError, ValueError):
        found.error(path, "contact_ids must be a list of frame numbers")
        contact_ids = ()
    genders = tuple(g.decode() if isinstance(g, bytes) else str(g) for g in np.asarray(data["genders"]).ravel())
    if len(genders) != ints["num_persons"]:
        found.warn(path, f"{len(genders)} gender(s) for {ints['num_persons']} person(s)")
    return Hi4DMeta(
        start=ints["start"],
        end=ints["end"],
        num_persons=ints["num_persons"],
        genders=genders,
        betas=np.asarray(data["betas"], dtype=np.float32),
        contact_ids=contact_ids,
        mono_cam=ints["mono_cam"],
    )


def _read_cameras(path: Path, found: _Inspection, rotation_tol: float) -> None:
    data = _load_npz(path, found)
    if data is None:
        return
    intr_key = next((k for k in INTRINSICS_ALIASES if k in data), None)
    missing = [k for k in CAMERA_KEYS if k not in data and not (k == "intrinsics" and intr_key)]
    if missing:
        found.error(path, f"missing key(s) {missing}; has {sorted(data)}")
        return
    ids = np.asarray(data["ids"]).ravel()
    K, ext, dist = (np.asarray(data[k], dtype=np.float64) for k in (intr_key, "extrinsics", "dist_coeffs"))
    n = ids.size
    if not np.issubdtype(ids.dtype, np.integer) or len(set(ids.tolist())) != n:
        found.error(path, f"ids must be distinct integers, got {ids.tolist()}")
        return
    found.calibrated = {int(cid) for cid in ids.tolist()}
    shape_errors = []
    if K.shape != (n, 3, 3):
        shape_errors.append(f"{intr_key} has shape {K.shape}, expected ({n}, 3, 3)")
    if ext.shape not in ((n, 3, 4), (n, 4, 4)):
        shape_errors.append(f"extrinsics has shape {ext.shape}, expected ({n}, 3, 4)")
    if dist.ndim != 2 or dist.shape[0] != n or dist.shape[1] not in VALID_DIST_LENGTHS:
        shape_errors.append(f"dist_coeffs has shape {dist.shape}, expected ({n}, 5)")
    if shape_errors:
        found.error(path, "; ".join(shape_errors))
        return
    for i, cid in enumerate(ids.tolist()):
        ok = True
        if not np.all(np.isfinite(K[i])) or K[i, 0, 0] <= 0 or K[i, 1, 1] <= 0 or not np.allclose(K[i, 2], [0, 0, 1]):
            found.error(
                path, f"camera {cid}: intrinsics are not a pinhole matrix [[fx,s,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0"
            )
            ok = False
        err = rotation_error(ext[i, :3, :3]) if np.all(np.isfinite(ext[i])) else np.inf
        if err > rotation_tol:
            found.error(
                path,
                f"camera {cid}: extrinsic rotation is not orthonormal with det +1 (error {err:.3g} > {rotation_tol:g})",
            )
            ok = False
        if not np.all(np.isfinite(dist[i])):
            # undistortion maps of NaN coefficients send every pixel outside the image: all black
            found.error(path, f"camera {cid}: dist_coeffs are not all finite ({dist[i].tolist()})")
            ok = False
        if ok:
            found.calibration[int(cid)] = (K[i], ext[i, :3, :4].copy(), dist[i])


def _list_frames(layout: Hi4DLayout, cam_ids: list[int], found: _Inspection) -> dict[int, list[int]]:
    frames_by_cam: dict[int, list[int]] = {}
    if layout.images_dir.is_dir():
        listed = {str(c) for c in (found.calibrated or cam_ids)}  # an invalid calibration is reported on its own
        extra = sorted(p.name for p in layout.images_dir.iterdir() if p.is_dir() and p.name not in listed)
        if extra and cam_ids:
            # an error, not a warning: images of a camera the study cannot place would silently drop a view
            found.error(
                layout.images_dir,
                f"camera folder(s) {extra} have images but no calibration in cameras/{layout.cameras_path.name}: "
                "add the camera's calibration or remove its image folder",
            )
    elif cam_ids:
        found.error(layout.images_dir, "images folder is missing")
        return frames_by_cam
    for cam in cam_ids:
        folder = layout.image_dir(cam)
        if not folder.is_dir():
            found.error(folder, f"camera {cam} has no image folder")
            continue
        frames = sorted(f for p in folder.glob("*.jpg") if (f := frame_number(p)) is not None)
        if not frames:
            found.error(folder, "camera folder has no frames (no {frame:06d}.jpg files)")
            continue
        frames_by_cam[cam] = frames
    return frames_by_cam


def _common_frames(layout: Hi4DLayout, frames_by_cam: dict[int, list[int]], found: _Inspection) -> list[int]:
    if not frames_by_cam:
        return []
    union = sorted(set().union(*frames_by_cam.values()))
    for cam, frames in frames_by_cam.items():
        lacking = sorted(set(union) - set(frames))
        if lacking:
            found.error(
                layout.image_dir(cam),
                f"frame set differs from other cameras: lacks {_some([f'{f:06d}.jpg' for f in lacking])}",
            )
    return union


def _open_image(path: Path, decode: bool) -> tuple[tuple[int, int] | None, str | None]:
    """((width, height), None) of an image file, or (None, what is wrong with it)."""
    try:
        with Image.open(path) as image:
            if decode:
                image.load()  # decodes every pixel: a truncated file fails here, not at the header
            return image.size, None
    except FileNotFoundError:
        return None, "file is missing"
    except (OSError, ValueError, SyntaxError) as exc:
        return None, f"unreadable image ({exc})"


def _open_images(
    paths: list[Path], decode: bool, workers: int, desc: str
) -> list[tuple[tuple[int, int] | None, str | None]]:
    """:func:`_open_image` of every path, in order; ``workers`` threads (Pillow's decoders
    release the GIL, so decoding scales with threads)."""
    if workers <= 1 or len(paths) < 2:
        return [_open_image(path, decode) for path in progress(paths, desc)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(progress(pool.map(lambda path: _open_image(path, decode), paths), desc, total=len(paths)))


def _check_images_and_masks(
    layout: Hi4DLayout,
    frames_by_cam: dict[int, list[int]],
    num_persons: int | None,
    found: _Inspection,
    cfg: ReadConfig,
) -> None:
    mask_kinds: list[int | str] = [MASK_ALL] + (list(range(num_persons)) if num_persons else [])
    # Which files to open, camera by camera: the first image fixes the camera's size even when
    # not checking every file; masks are opened only when checking files.
    images = {
        cam: [layout.image_path(cam, f) for f in (frames if cfg.check_files else frames[:1])]
        for cam, frames in frames_by_cam.items()
    }
    masks = {
        cam: [layout.mask_path(cam, f, kind) for f in frames for kind in mask_kinds]
        for cam, frames in frames_by_cam.items()
    }
    to_open = [path for cam in frames_by_cam for path in images[cam] + (masks[cam] if cfg.check_files else [])]
    verb = "decode" if cfg.decode_images else "open"
    opened = dict(zip(to_open, _open_images(to_open, cfg.decode_images, cfg.workers, f"{verb} {layout.root}")))
    for cam in frames_by_cam:
        for path in images[cam]:
            size, problem = opened[path]
            if size is None:
                found.error(path, problem)
                continue
            expected = found.sizes.setdefault(cam, size)
            if size != expected:
                found.error(
                    path, f"image size {size[0]}x{size[1]} differs from camera {cam}'s {expected[0]}x{expected[1]}"
                )
        for path in masks[cam]:
            if not cfg.check_files:
                if not path.is_file():
                    found.error(path, "mask is missing")
                continue
            size, problem = opened[path]
            if size is None:
                found.error(path, problem)
            elif cam in found.sizes and size != found.sizes[cam]:
                found.error(
                    path,
                    f"mask size {size[0]}x{size[1]} differs from image size "
                    f"{found.sizes[cam][0]}x{found.sizes[cam][1]}",
                )
    for cam in frames_by_cam:
        if cam not in found.sizes:
            found.calibration.pop(cam, None)


def _npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Array shapes in an .npz, read from the .npy headers without loading the data."""
    shapes: dict[str, tuple[int, ...]] = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            key = member[:-4] if member.endswith(".npy") else member
            with archive.open(member) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, _ = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, _, _ = np.lib.format.read_array_header_2_0(fh)
            shapes[key] = tuple(shape)
    return shapes


def _smpl_shape_problems(path: Path, shapes: dict[str, tuple[int, ...]], num_persons: int | None) -> list[Problem]:
    missing = [key for key in SMPL_KEYS if key not in shapes]
    if missing:
        return [Problem(path, f"missing key(s) {missing}; has {sorted(shapes)}")]
    wrong = []
    for key, trailing in SMPL_SHAPES.items():
        shape = shapes[key]
        if shape[1:] != trailing or (num_persons is not None and shape[:1] != (num_persons,)):
            persons = num_persons if num_persons is not None else "P"
            wrong.append(f"{key} has shape {shape}, expected ({persons}, {', '.join(map(str, trailing))})")
    return [Problem(path, "; ".join(wrong))] if wrong else []


def _check_smpl(
    layout: Hi4DLayout, frames: list[int], num_persons: int | None, found: _Inspection, cfg: ReadConfig
) -> None:
    if frames and not layout.smpl_dir.is_dir():
        found.error(layout.smpl_dir, "smpl folder is missing")
        return
    for frame in frames:
        path = layout.smpl_path(frame)
        if not path.is_file():
            found.error(path, "SMPL file for this frame is missing")
            continue
        if not cfg.check_files:
            continue
        try:
            shapes = _npz_shapes(path)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            found.error(path, f"not a readable .npz file ({exc})")
            continue
        shape_problems = _smpl_shape_problems(path, shapes, num_persons)
        found.problems.extend(shape_problems)
        if not shape_problems:
            _check_finite_verts(path, frame, found)


def _check_finite_verts(path: Path, frame: int, found: _Inspection) -> None:
    """NaN or infinite vertices (a failed fit) would poison every render and metric of the frame."""
    try:
        with np.load(path) as archive:
            verts = archive["verts"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        found.error(path, f"verts unreadable ({exc})")
        return
    bad = ~np.isfinite(verts)
    if bad.any():
        person = int(np.argwhere(bad)[0][0])
        count = int(bad.sum())
        found.error(path, f"frame {frame}: verts hold {count} NaN or infinite value(s) (first of person {person})")


def _imread(path: Path) -> np.ndarray:
    try:
        return iio.imread(path, plugin="pillow")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: file is missing") from exc
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from exc
