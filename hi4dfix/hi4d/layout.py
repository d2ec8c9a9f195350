"""Where things live in a released Hi4D sequence folder, and how scene names map to folders.

One sequence (``DATASET/pairXX/actionXX``)::

    meta.npz                                   start, end, num_persons, genders, betas, contact_ids, mono_cam
    cameras/rgb_cameras.npz                    ids, intrinsics (8,3,3), extrinsics (8,3,4), dist_coeffs (8,5)
    images/{cam}/{frame:06d}.jpg
    seg/img_seg_mask/{cam}/{0,1,all}/{frame:06d}.png
    smpl/{frame:06d}.npz                       betas, body_pose, global_orient, transl, joints_3d, verts, contact
    frames/mesh-f{frame:05d}.obj               optional textured scans

The reader and the synthetic generator both go through :class:`Hi4DLayout`, so they agree.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

HI4D_CAMERA_IDS: tuple[int, ...] = (4, 16, 28, 40, 52, 64, 76, 88)
MASK_ALL = "all"

META_KEYS = ("start", "end", "num_persons", "genders", "betas", "contact_ids", "mono_cam")
CAMERA_KEYS = ("ids", "intrinsics", "extrinsics", "dist_coeffs")
# The dataset's documentation spells the intrinsics key this way; accept it as an alias.
INTRINSICS_ALIASES = ("intrinsics", "intirnsics")
SMPL_KEYS = ("betas", "body_pose", "global_orient", "transl", "joints_3d", "verts", "contact")
# Expected per-person trailing shapes of the SMPL arrays (leading axis: persons).
SMPL_SHAPES: dict[str, tuple[int, ...]] = {
    "betas": (10,),
    "body_pose": (69,),
    "global_orient": (3,),
    "transl": (3,),
    "joints_3d": (24, 3),
    "verts": (6890, 3),
    "contact": (6890,),
}

_FRAME_FILE = re.compile(r"^(\d+)$")
_SCENE_NAME = re.compile(r"^hi4d_pair(\d+)_([a-z]+)$")
# Hi4D's own folder names: ``pairNN`` holding ``actionNN`` (e.g. ``pair15/fight15``).
_PAIR_DIR = re.compile(r"^pair(\d+)$", re.IGNORECASE)
_ACTION_DIR = re.compile(r"^([a-z]+)\d+$", re.IGNORECASE)


@dataclass(frozen=True)
class Hi4DLayout:
    """Paths inside one Hi4D sequence folder."""

    root: Path

    @property
    def meta_path(self) -> Path:
        return self.root / "meta.npz"

    @property
    def cameras_path(self) -> Path:
        return self.root / "cameras" / "rgb_cameras.npz"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def smpl_dir(self) -> Path:
        return self.root / "smpl"

    def image_dir(self, cam: int) -> Path:
        return self.images_dir / str(cam)

    def image_path(self, cam: int, frame: int) -> Path:
        return self.image_dir(cam) / f"{frame:06d}.jpg"

    def mask_path(self, cam: int, frame: int, person: int | str = MASK_ALL) -> Path:
        """``person`` is a person index (0, 1, ...) or ``"all"`` for the union."""
        return self.root / "seg" / "img_seg_mask" / str(cam) / str(person) / f"{frame:06d}.png"

    def smpl_path(self, frame: int) -> Path:
        return self.smpl_dir / f"{frame:06d}.npz"

    def scan_path(self, frame: int) -> Path:
        return self.root / "frames" / f"mesh-f{frame:05d}.obj"


def frame_number(path: Path) -> int | None:
    """Frame number of a file named ``{frame:06d}.ext``; None for anything else."""
    match = _FRAME_FILE.match(path.stem)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class SceneName:
    """A scene name ``hi4d_pairNN_action`` split into its parts."""

    pair: int
    action: str

    @property
    def name(self) -> str:
        return f"hi4d_pair{self.pair:02d}_{self.action}"


def parse_scene_name(name: str) -> SceneName:
    """``"hi4d_pair00_dance"`` -> ``SceneName(pair=0, action="dance")``.

    Only the canonical spelling is accepted (the pair number with two digits, as
    :attr:`SceneName.name` writes it): ``hi4d_pair015_fight`` would otherwise be a second name
    of ``hi4d_pair15_fight``'s data.
    """
    match = _SCENE_NAME.match(name)
    if match is None:
        raise ValueError(
            f"scene name {name!r} is not of the form 'hi4d_pairNN_action' "
            "(NN digits, action lowercase letters, e.g. 'hi4d_pair00_dance')"
        )
    scene = SceneName(pair=int(match.group(1)), action=match.group(2))
    if scene.name != name:
        raise ValueError(
            f"scene name {name!r} is not canonical: write it {scene.name!r} "
            "(the pair number with two digits, as Hi4D's pairNN folders do)"
        )
    return scene


def default_sequence_dir(name: str) -> str:
    """Default folder of a scene inside the Hi4D root: ``hi4d_pair00_dance`` -> ``pair00/dance00``.

    Hi4D numbers an action folder with its pair number; real trees deviate sometimes, so the
    workflow lets each scene override this.
    """
    scene = parse_scene_name(name)
    return f"pair{scene.pair:02d}/{scene.action}{scene.pair:02d}"


def normalise_sequence_dir(folder: str, root: str = ".") -> str:
    """A sequence folder as the relative POSIX path under ``root`` that it denotes.

    Spellings of one folder compare equal afterwards: ``pair15/fight15/``, ``./pair15//fight15``
    and ``pair15/x/../fight15`` all give ``pair15/fight15``; ``..`` is resolved against ``root``, so
    with root ``data/hi4d`` the folder ``../hi4d/pair15/fight15`` is ``pair15/fight15`` too. Pure
    text: symbolic links are not followed. Raises ValueError for an absolute path or one that
    denotes ``root`` itself.
    """
    text = str(folder).strip()
    if not text:
        raise ValueError("a sequence folder must not be empty")
    if PurePosixPath(text).is_absolute():
        raise ValueError(f"sequence folder {folder!r} is absolute; give it relative to data.root")
    base = posixpath.normpath(str(root))
    relative = posixpath.relpath(posixpath.normpath(posixpath.join(base, text)), base)
    if relative == ".":
        raise ValueError(f"sequence folder {folder!r} is data.root itself, not a sequence inside it")
    return relative


def resolve_sequence_dir(folder: str, root: str = ".") -> str:
    """The folder that ``folder`` (normalised, under ``root``) is once symbolic links are followed: relative to
    ``root`` (itself resolved) when it stays inside, else absolute. Reads the file system (the links); a folder
    that does not exist yet resolves as far as its existing parts go."""
    real_root = os.path.realpath(str(root))
    real = os.path.realpath(os.path.join(real_root, folder))
    inside = os.path.commonpath([real_root, real]) == real_root and real != real_root
    return Path(os.path.relpath(real, real_root)).as_posix() if inside else Path(real).as_posix()


def identity_from_sequence_dir(folder: str) -> SceneName | None:
    """The (pair, action) a folder following Hi4D's ``pairNN/actionNN`` pattern holds, else None.

    Only the last two parts count: ``pair15_1/pair15/fight15`` -> pair 15, action ``fight``.
    """
    parts = PurePosixPath(posixpath.normpath(str(folder))).parts
    if len(parts) < 2:
        return None
    pair, action = _PAIR_DIR.match(parts[-2]), _ACTION_DIR.match(parts[-1])
    if pair is None or action is None:
        return None
    return SceneName(pair=int(pair.group(1)), action=action.group(1).lower())
