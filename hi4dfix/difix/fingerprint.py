"""What a tuning run's weights depend on, as one digest, and the run folders keyed by it.

A run's *fingerprint* holds the training data's content (the triplets file's bytes and the bytes
of every image it names), the base model's identity (a local pkl or folder by content, a Hub id
with the cached revision), the settings that decide the weights and the number of processes.
Two runs with one fingerprint compute the same model, so only they may share checkpoints:
``hi4dfix.difix.train`` with ``run_per_fingerprint`` trains in ``output_dir/<key[:12]>/``, and a
run whose data or settings differ from every earlier one starts fresh in a folder of its own,
leaving the earlier folders (and their final models) where they are.

File digests are SHA-256 of the bytes, cached by (path, size, mtime) in a JSON file so that a
restarted job does not read gigabytes of images again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from hi4dfix.difix.checkpoint import RANDOM_TINY_SPEC
from hi4dfix.io import write_json

HASH_CACHE_NAME = ".content_hashes.json"
RUN_RECORD_NAME = "run.json"
RUN_MODEL_NAME = "model.pkl"
KEY_LENGTH = 12


class ContentHashes:
    """SHA-256 digests of files and folders, remembered by (path, size, mtime) in ``cache_file``."""

    def __init__(self, cache_file: str | os.PathLike | None = None):
        self.cache_file = Path(cache_file) if cache_file is not None else None
        self._known: dict[str, list] = {}
        if self.cache_file is not None and self.cache_file.is_file():
            try:
                self._known = json.loads(self.cache_file.read_text())
            except (json.JSONDecodeError, OSError):
                self._known = {}  # a damaged cache is only slower
        self._changed = False

    def file(self, path: str | os.PathLike, what: str = "file") -> str:
        path = Path(path).resolve()
        try:
            stat = path.stat()
            key = str(path)
            known = self._known.get(key)
            if known is not None and known[:2] == [stat.st_size, stat.st_mtime_ns]:
                return known[2]
            with path.open("rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            raise OSError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc
        self._known[key] = [stat.st_size, stat.st_mtime_ns, digest]
        self._changed = True
        return digest

    def folder(self, path: str | os.PathLike, what: str = "folder") -> str:
        """One digest of every file under ``path``: relative names and contents."""
        root = Path(path)
        digest = hashlib.sha256()
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(root).as_posix()}\0{self.file(file, what)}\n".encode())
        return digest.hexdigest()

    def save(self) -> None:
        if self.cache_file is not None and self._changed:
            write_json(self.cache_file, self._known)
            self._changed = False


def triplets_digest(triplets: str | os.PathLike, hashes: ContentHashes) -> str:
    """The training data's content: the triplets file's bytes and those of every image it names
    (both splits; the test split decides the validation log)."""
    from hi4dfix.difix.data import read_triplets

    digest = hashlib.sha256(hashes.file(triplets, "triplets file").encode())
    seen: set[Path] = set()
    for split in ("train", "test"):
        for triplet in read_triplets(triplets, split, require_ref=False):
            for image in (triplet.image, triplet.target_image, triplet.ref_image):
                if image is not None and image not in seen:
                    seen.add(image)
                    digest.update(f"{hashes.file(image, 'triplet image')}\n".encode())
    return digest.hexdigest()


def hub_revision(repo_id: str, hub_cache_dir: str | None) -> str | None:
    """The commit the Hugging Face cache resolves ``main`` of ``repo_id`` to (None: not cached)."""
    from huggingface_hub import constants

    cache = Path(hub_cache_dir) if hub_cache_dir else Path(constants.HF_HUB_CACHE)
    ref = cache / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    return ref.read_text().strip() if ref.is_file() else None


def model_identity(spec: str | None, hub_cache_dir: str | None, hashes: ContentHashes, what: str) -> str | None:
    """A model source as content: a file or folder by its digest, a Hub id with its cached revision."""
    if spec is None or spec == RANDOM_TINY_SPEC:
        return spec
    path = Path(spec)
    if path.is_file() or path.suffix == ".pkl":
        return f"file sha256:{hashes.file(path, what)}"
    if path.is_dir():
        return f"folder sha256:{hashes.folder(path, what)}"
    return f"hub {spec}@{hub_revision(spec, hub_cache_dir) or 'uncached'}"


@dataclass(frozen=True)
class RunFingerprint:
    """What a run's weights depend on (see the module docstring)."""

    data: str
    base: str
    base_model_id: str | None
    settings: dict[str, Any]
    num_processes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "base": self.base,
            "base_model_id": self.base_model_id,
            "settings": self.settings,
            "num_processes": self.num_processes,
        }

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints (``as_dict``), in words, one item per difference."""
    said = []
    if before.get("data") != after.get("data"):
        said.append(
            f"the training data (triplets and the images they name: {str(before.get('data'))[:KEY_LENGTH]} -> "
            f"{str(after.get('data'))[:KEY_LENGTH]})"
        )
    for key, name in (("base", "the base model"), ("base_model_id", "the SD-Turbo source")):
        if before.get(key) != after.get(key):
            said.append(f"{name} ({before.get(key)} -> {after.get(key)})")
    old, new = before.get("settings", {}), after.get("settings", {})
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            said.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    if before.get("num_processes") != after.get("num_processes"):
        said.append(f"num_processes {before.get('num_processes')} -> {after.get('num_processes')}")
    return said


@dataclass(frozen=True)
class PastRun:
    """A run folder under a work root: its fingerprint record and final model (None: unfinished)."""

    folder: Path
    record: dict[str, Any]
    model: Path | None
    started: float


def past_runs(work_root: str | os.PathLike) -> list[PastRun]:
    """Run folders under ``work_root``, oldest first (by the time their record was written)."""
    runs = []
    root = Path(work_root)
    if not root.is_dir():
        return runs
    for record_path in root.glob(f"*/{RUN_RECORD_NAME}"):
        try:
            record = json.loads(record_path.read_text())
        except (json.JSONDecodeError, OSError):
            continue
        model = record_path.parent / RUN_MODEL_NAME
        runs.append(
            PastRun(record_path.parent, record, model if model.is_file() else None, record_path.stat().st_mtime)
        )
    return sorted(runs, key=lambda run: run.started)


def last_good_model(work_root: str | os.PathLike, besides: Path | None = None) -> PastRun | None:
    """The most recently finished run under ``work_root`` (other than ``besides``)."""
    finished = [run for run in past_runs(work_root) if run.model is not None and run.folder != besides]
    return max(finished, key=lambda run: run.model.stat().st_mtime) if finished else None


def write_run_record(folder: Path, fingerprint: RunFingerprint) -> None:
    write_json(folder / RUN_RECORD_NAME, {"key": fingerprint.key, **fingerprint.as_dict()})
