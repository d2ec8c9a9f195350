"""Content fingerprints of scenes, and the reserved-scene policy by content.

A materialized scene's ``fingerprint.json`` holds, per camera and frame, a SHA-256 of the decoded
pixels of its image and mask (what a DiFix sample is made of, however the files are encoded or
named) and two perceptual hashes, plus a top-level ``content_sha256`` over all per-image hashes in
(camera, frame) order: one identifier of the scene's content, for provenance.

The policy check compares a DiFix scene's fingerprint with each reserved scene's:

* **pixel-identical**: an image whose pixel hash is a reserved image's (a byte copy under another
  name, or the same frames re-exported losslessly);
* **near-copy**: an image within :data:`NEAR_COPY_BITS` bits of a reserved image on *both*
  perceptual hashes (a JPEG re-encode, a resize, mild colour changes). ``frame_phash`` is
  imagehash's DCT hash (64 bits) of the whole frame downsampled to a long side of
  :data:`DOWNSAMPLE_LONG_SIDE`; ``person_phash`` the same over the people's bounding box (from
  the mask), enlarged by :data:`PERSON_MARGIN` on each side so that a resized mask's one-pixel
  shifts do not matter. The second hash keeps two captures with the same cameras and room
  apart (Hi4D films every pair in one studio with fixed cameras, so whole frames of two
  different scenes can look alike); the first keeps apart crops that happen to look alike.
  Images without people or of one colour carry no content to compare and are skipped for
  near-copies.

How :data:`NEAR_COPY_BITS` was chosen (measured with the copies of tests/content_fixtures.py;
tests/test_fingerprint.py checks that every copy is caught and that different scenes stay more
than 14 bits apart): on the seven synthetic scenes of the default study at 120x160, a JPEG
re-encode (quality 75) of a scene's sources moves its images by at most 4 bits (the larger of the
two hashes), a 0.5x resize by at
most 10; at the small study's 48x64 a resize moves most images by 4-12 bits. Different scenes,
of the same action or not, stay 16 or more bits apart; scikit-image's sample photographs (a
fixture of real-photo content) 26 or more, their JPEG and 0.5x copies within 6. 12 bits catches
every copy at 120x160 and most images of a tiny one (one caught image refuses the scene) and
keeps 4 bits below the closest different scenes.

Mirrored and rotated copies: each image's hashes are also taken of its seven :data:`TURNS` (flips,
quarter turns, transposes), and a DiFix image is compared with every turn of every reserved image: an
exactly turned photograph is 0 bits from its original's turn; a mirrored copy of a synthetic scene's
sources (JPEG again, then undistorted by materialize with the unmirrored cameras) 0-10 bits. Among the
default study's nine synthetic scenes (three frames at 120x160) the closest two different scenes come to
14 bits once one of them is mirrored left-right (16 unturned): the threshold stays 12, 2 bits below them.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import cv2
import imagehash
import numpy as np
from PIL import Image

from hi4dfix.io import read_samples, write_json

FINGERPRINT_FILE = "fingerprint.json"
FINGERPRINT_VERSION = 2  # 2: perceptual hashes of the flipped and rotated image too
DOWNSAMPLE_LONG_SIDE = 64  # pixels: frames are hashed at this size, so a resized copy hashes alike
HASH_SIZE = 8  # imagehash.phash: an 8x8 block of DCT coefficients, 64 bits
PERSON_MARGIN = 0.15  # of the people's box, added on each side
NEAR_COPY_BITS = 12  # Hamming distance at or below which two images are near-copies (module docstring)
# The cheap geometric copies a near-copy may be: the seven non-identity symmetries of the square
# (a mirrored or rotated frame hashes unlike its original, so each is hashed on its own).
TURNS = {
    "mirrored left-right": lambda a: a[:, ::-1],
    "mirrored top-bottom": lambda a: a[::-1],
    "rotated 90 degrees": lambda a: np.rot90(a, 1),
    "rotated 180 degrees": lambda a: np.rot90(a, 2),
    "rotated 270 degrees": lambda a: np.rot90(a, 3),
    "transposed": lambda a: np.swapaxes(a, 0, 1),
    "anti-transposed": lambda a: np.rot90(a, 2).swapaxes(0, 1),
}


class ContentPolicyError(ValueError):
    """A DiFix scene's frames are (near-)copies of a reserved scene's."""


def pixel_sha256(samples: np.ndarray) -> str:
    """SHA-256 of decoded pixels, their shape and dtype: equal for equal pixels however encoded."""
    samples = np.ascontiguousarray(samples)
    digest = hashlib.sha256(f"{samples.dtype.str}{samples.shape}".encode())
    digest.update(samples.tobytes())
    return digest.hexdigest()


def _as_uint8_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        scale = 255.0 if image.dtype.kind == "f" else 255.0 / np.iinfo(image.dtype).max
        image = np.clip(image.astype(np.float64) * scale + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def _downsample(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    scale = DOWNSAMPLE_LONG_SIDE / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _phashes(image: np.ndarray) -> list[str]:
    """The hash of the image, then of each of its :data:`TURNS` (each turned before downsampling: a resize
    grid that does not fit the image evenly would shift a turned copy's samples)."""
    turned = [image, *(np.ascontiguousarray(turn(image)) for turn in TURNS.values())]
    return [str(imagehash.phash(Image.fromarray(_downsample(part)), hash_size=HASH_SIZE)) for part in turned]


def perceptual_hashes(image: np.ndarray, mask: np.ndarray | None) -> tuple[list[str] | None, list[str] | None]:
    """(frame hashes, person hashes): each the hex hash of the image (or of the people's box) and of its
    :data:`TURNS`, in that order; None where the image or its people are blank."""
    rgb = _as_uint8_rgb(image)
    if rgb.min() == rgb.max():
        return None, None
    frame = _phashes(rgb)
    if mask is None:
        return frame, None
    mask = np.asarray(mask)
    person = (mask[..., 0] if mask.ndim == 3 else mask) > 0
    rows, cols = np.flatnonzero(person.any(axis=1)), np.flatnonzero(person.any(axis=0))
    if rows.size == 0:
        return frame, None
    # the box of the people with a margin, background kept: a resized mask moves the box's edges
    # by a pixel, which a tight box of a small image would feel
    pad_r, pad_c = PERSON_MARGIN * (rows[-1] - rows[0] + 1), PERSON_MARGIN * (cols[-1] - cols[0] + 1)
    top, bottom = max(0, int(rows[0] - pad_r)), min(rgb.shape[0], int(rows[-1] + 1 + pad_r))
    left, right = max(0, int(cols[0] - pad_c)), min(rgb.shape[1], int(cols[-1] + 1 + pad_c))
    crop = rgb[top:bottom, left:right]
    return frame, (_phashes(crop) if crop.min() != crop.max() else None)


def image_entry(cam: int, frame: int, path: str, image: np.ndarray, mask: np.ndarray | None) -> dict:
    """One fingerprint entry for the decoded ``image`` (and ``mask``) of (cam, frame)."""
    frame_hashes, person_hashes = perceptual_hashes(image, mask)
    return {
        "cam": int(cam),
        "frame": int(frame),
        "image": path,
        "image_sha256": pixel_sha256(image),
        "mask_sha256": None if mask is None else pixel_sha256(mask),
        "frame_phash": frame_hashes and frame_hashes[0],
        "person_phash": person_hashes and person_hashes[0],
        # the same hashes of the image's TURNS, in that order (a mirrored or rotated copy matches one)
        "frame_phash_turns": frame_hashes and frame_hashes[1:],
        "person_phash_turns": person_hashes and person_hashes[1:],
    }


def content_sha256(entries: Iterable[Mapping]) -> str:
    """One hash over every per-image hash, in (camera, frame) order."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: (e["cam"], e["frame"])):
        digest.update(f"{entry['cam']} {entry['frame']} {entry['image_sha256']} {entry['mask_sha256']}\n".encode())
    return digest.hexdigest()


def make_fingerprint(scene: str, entries: list[dict]) -> dict:
    entries = sorted(entries, key=lambda e: (e["cam"], e["frame"]))
    return {
        "version": FINGERPRINT_VERSION,
        "scene": scene,
        "content_sha256": content_sha256(entries),
        "phash": {
            "kind": "imagehash.phash",
            "hash_size": HASH_SIZE,
            "downsample_long_side": DOWNSAMPLE_LONG_SIDE,
            "turns": list(TURNS),
        },
        "images": entries,
    }


def write_fingerprint(scene_dir: str | os.PathLike, fingerprint: Mapping) -> Path:
    path = Path(scene_dir) / FINGERPRINT_FILE
    write_json(path, fingerprint)
    return path


def fingerprint_scene_dir(scene_dir: str | os.PathLike) -> dict:
    """The fingerprint of a materialized scene from its files (for scenes written before fingerprints)."""
    from hi4dfix.scene import load_scene

    scene = load_scene(scene_dir)
    entries = [
        image_entry(
            cam,
            frame,
            str(scene.image_path(cam, frame).relative_to(scene.root)),
            read_samples(scene.image_path(cam, frame)),
            read_samples(scene.mask_path(cam, frame)),
        )
        for cam in scene.cam_ids
        for frame in scene.frames
    ]
    return make_fingerprint(scene.name, entries)


def load_fingerprint(scene_dir: str | os.PathLike) -> dict:
    """``fingerprint.json`` of a materialized scene, or one computed from its files when absent."""
    path = Path(scene_dir) / FINGERPRINT_FILE
    if not path.is_file():
        return fingerprint_scene_dir(scene_dir)
    try:
        fingerprint = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable fingerprint ({exc}); materialize the scene again") from None
    if fingerprint.get("version") != FINGERPRINT_VERSION:
        return fingerprint_scene_dir(scene_dir)
    return fingerprint


# ---- comparing fingerprints --------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """An image of ``scene`` that is (nearly) an image of ``other``, or of it mirrored or rotated (``turn``)."""

    scene: str
    image: str
    other: str
    other_image: str
    kind: str  # "pixel-identical" | "near-copy"
    bits: int  # larger Hamming distance of the two perceptual hashes (0 when pixel-identical)
    turn: str = ""  # one of TURNS: the other image as it was turned to match ("" when not turned)

    def __str__(self) -> str:
        how = "pixel-identical to" if self.kind == "pixel-identical" else f"a near-copy ({self.bits} bits) of"
        return f"{self.scene}/{self.image} is {how} {self.other}/{self.other_image}" + (
            f" {self.turn}" if self.turn else ""
        )


def _bits(hexes: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(valid, bits): a (N, 64) bool matrix of the hashes; rows of missing hashes are invalid."""
    valid = np.array([h is not None for h in hexes], dtype=bool)
    bits = np.zeros((len(hexes), HASH_SIZE * HASH_SIZE), dtype=bool)
    for i, h in enumerate(hexes):
        if h is not None:
            bits[i] = np.unpackbits(np.frombuffer(bytes.fromhex(h), dtype=np.uint8))[: bits.shape[1]].astype(bool)
    return valid, bits


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) Hamming distances between rows of two bool bit matrices."""
    a, b = a.astype(np.int32), b.astype(np.int32)
    return a.sum(1)[:, None] + b.sum(1)[None, :] - 2 * a @ b.T


def _turned(entry: Mapping, key: str, turn: int) -> str | None:
    """``entry``'s hash ``key`` of its image turned by ``turn`` (0: as it is, i: the i-th of TURNS)."""
    if turn == 0:
        return entry.get(key)
    turns = entry.get(f"{key}_turns")
    return turns[turn - 1] if turns else None


def _distances(mine: list[Mapping], theirs: list[Mapping], keys: tuple[str, ...]) -> np.ndarray:
    """(T, N, M): for each turn of ``theirs`` (as it is, then TURNS), the largest of the hashes' distances."""
    turns = []
    for turn in range(1 + len(TURNS)):
        distances = []
        for key in keys:
            valid_a, bits_a = _bits([e.get(key) for e in mine])
            valid_b, bits_b = _bits([_turned(e, key, turn) for e in theirs])
            d = _hamming(bits_a, bits_b)
            d[~valid_a, :] = 1 << 16
            d[:, ~valid_b] = 1 << 16
            distances.append(d)
        turns.append(np.max(distances, axis=0))
    return np.stack(turns)


def compare_fingerprints(
    fingerprint: Mapping,
    other: Mapping,
    max_bits: int = NEAR_COPY_BITS,
    limit: int | None = None,
    frame_only: bool = False,
) -> list[Match]:
    """Images of ``fingerprint`` pixel-identical to, or near-copies of, images of ``other`` as they are, mirrored
    or rotated (:data:`TURNS`). A near-copy is within ``max_bits`` on both hashes, or on the whole-frame hash
    alone with ``frame_only`` (images without people masks, such as the control arm's triplets)."""
    mine, theirs = fingerprint["images"], other["images"]
    matches: list[Match] = []
    by_pixels = {entry["image_sha256"]: entry for entry in theirs if entry.get("frame_phash") is not None}
    exact = set()
    for i, entry in enumerate(mine):
        twin = by_pixels.get(entry["image_sha256"])
        if twin is not None and entry.get("frame_phash") is not None:
            exact.add(i)
            matches.append(
                Match(fingerprint["scene"], entry["image"], other["scene"], twin["image"], "pixel-identical", 0)
            )
    if mine and theirs:
        worst = _distances(mine, theirs, ("frame_phash",) if frame_only else ("frame_phash", "person_phash"))
        names = ("", *TURNS)
        for i in range(len(mine)):
            if i in exact:
                continue
            turn, j = np.unravel_index(int(np.argmin(worst[:, i])), worst[:, i].shape)
            if worst[turn, i, j] <= max_bits:
                matches.append(
                    Match(
                        fingerprint["scene"],
                        mine[i]["image"],
                        other["scene"],
                        theirs[j]["image"],
                        "near-copy",
                        int(worst[turn, i, j]),
                        names[turn],
                    )
                )
    return matches if limit is None else matches[:limit]


def check_reserved_content(
    version: str, scenes: Mapping[str, Mapping], reserved: Mapping[str, Mapping], max_bits: int = NEAR_COPY_BITS
) -> None:
    """Raise :class:`ContentPolicyError` when a DiFix scene's images are (near-)copies of a reserved scene's.

    ``scenes`` and ``reserved`` map scene names to fingerprints.
    """
    problems = []
    for name, fingerprint in scenes.items():
        for reserved_name, reserved_print in reserved.items():
            matches = compare_fingerprints(fingerprint, reserved_print, max_bits)
            if not matches:
                continue
            exact = sum(m.kind == "pixel-identical" for m in matches)
            problems.append(
                f"DiFix scene {name} holds the content of reserved scene {reserved_name}: "
                f"{len(matches)} of its {len(fingerprint['images'])} images are copies "
                f"({exact} pixel-identical, {len(matches) - exact} near-copies within {max_bits} bits), "
                f"e.g. {matches[0]}"
            )
    if problems:
        raise ContentPolicyError(
            f"version {version}: " + "; ".join(problems) + ". Reserved scenes are for downstream 3DGS evaluation only "
            "and never become DiFix training or evaluation samples, whatever they are called; no triplets were written"
        )


def check_internal_eval_content(
    version: str, train: Mapping[str, Mapping], evaluation: Mapping[str, Mapping], max_bits: int = NEAR_COPY_BITS
) -> None:
    """Raise :class:`ContentPolicyError` when an internal-evaluation (``difix_eval``) scene's images are
    (near-)copies of a training scene's: settings are chosen on the internal evaluation, which must measure
    on scenes the model did not train on. ``train`` and ``evaluation`` map scene names to fingerprints."""
    problems = []
    for name, fingerprint in evaluation.items():
        for train_name, train_print in train.items():
            matches = compare_fingerprints(fingerprint, train_print, max_bits)
            if matches:
                problems.append(
                    f"internal-evaluation scene {name} holds the content of training scene {train_name}: "
                    f"{len(matches)} of its {len(fingerprint['images'])} images are copies, e.g. {matches[0]}"
                )
    if problems:
        raise ContentPolicyError(
            f"version {version}: " + "; ".join(problems) + ". The internal evaluation (difix_eval), where settings "
            "are chosen, would measure DiFix on its own training data; no triplets were written"
        )


def fingerprint_images(name: str, paths: Iterable[str], workers: int = 1) -> dict:
    """A fingerprint of loose images (no cameras, frames or masks): entry ``i`` is the i-th path, as camera 0,
    frame ``i``."""
    paths = list(paths)

    def entry(index_path: tuple[int, str]) -> dict:
        index, path = index_path
        try:
            samples = read_samples(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{name}: cannot read image {path} ({exc})") from None
        return image_entry(0, index, path, samples, None)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return make_fingerprint(name, list(pool.map(entry, enumerate(paths))))


def check_control_content(
    triplets: str, images: Iterable[str], reserved: Mapping[str, Mapping], max_bits: int = NEAR_COPY_BITS
) -> dict:
    """Raise :class:`ContentPolicyError` when an image of the control arm's triplets (``images``, from the
    file ``triplets``) is a (near-)copy of a reserved scene's frame, compared on the whole frame (the control's
    images carry no people masks); returns the control images' fingerprint."""
    fingerprint = fingerprint_images(f"difix.control triplets {triplets}", images)
    problems = []
    for reserved_name, reserved_print in reserved.items():
        matches = compare_fingerprints(fingerprint, reserved_print, max_bits, frame_only=True)
        if matches:
            problems.append(f"{len(matches)} images are copies of reserved scene {reserved_name}'s, e.g. {matches[0]}")
    if problems:
        raise ContentPolicyError(
            f"difix.control.triplets {triplets}: " + "; ".join(problems) + ". The control arm trains on "
            "out-of-domain data, never on the study's scenes (reserved scenes are for downstream 3DGS "
            "evaluation only); no control model was trained"
        )
    return fingerprint


# ---- source trees (check-data) ------------------------------------------------------------------


def fingerprint_sequence(sequence_dir: str | os.PathLike, workers: int = 1) -> dict:
    """A fingerprint of a Hi4D sequence's source images and 'all' masks (decoded, not materialized)."""
    from hi4dfix.hi4d.reader import read_sequence

    sequence = read_sequence(sequence_dir)
    root = Path(sequence.root)

    def entry(cam_frame: tuple[int, int]) -> dict:
        cam, frame = cam_frame
        path = sequence.image_path(cam, frame)
        mask = sequence.mask_path(cam, frame)
        return image_entry(
            cam, frame, str(path.relative_to(root)), read_samples(path), read_samples(mask) if mask.is_file() else None
        )

    views = [(cam, frame) for cam in sequence.cam_ids for frame in sequence.frames]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        entries = list(pool.map(entry, views))
    return make_fingerprint(str(root), entries)
