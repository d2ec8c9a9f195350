"""A tuning run's folder, by what its weights depend on, and what a resumption may continue.

A run's *fingerprint* holds the training data's content (the triplets file's bytes and the bytes
of every image it names), the base model's identity (a local pkl or folder by content, a Hub id
with the cached revision), the settings that decide the weights (``RESUME_FINGERPRINT``) and the
number of processes. Two runs with one fingerprint compute the same model, so only they may share
checkpoints: ``hi4dfix.difix.train`` with ``run_per_fingerprint`` trains in
``output_dir/<key[:12]>/``, and a run whose data or settings differ from every earlier one starts
fresh in a folder of its own, leaving the earlier folders (and their final models) where they are.
A run folder's ``checkpoints/model_{step}.pkl`` are what a restarted run resumes from.

File digests are SHA-256 of the bytes, cached by (path, size, mtime) in a JSON file so that a
restarted job does not read gigabytes of images again.
"""

from __future__ import annotations

import csv
import filecmp
import hashlib
import json
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from hi4dfix.difix.checkpoint_base import RANDOM_TINY_SPEC
from hi4dfix.difix.train_config import TrainConfig
from hi4dfix.io import atomic_path, canonical_json, sha256_file, write_json

LOG = logging.getLogger("hi4dfix.difix.train")  # the trainer's log: these lines are part of its story
CHECKPOINT_NAME = re.compile(r"^model_(\d+)\.pkl$")
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
            digest = sha256_file(path)
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
    from hi4dfix.difix.data import load_training_triplets

    digest = hashlib.sha256(hashes.file(triplets, "triplets file").encode())
    seen: set[Path] = set()
    for split in ("train", "test"):
        for triplet in load_training_triplets(triplets, split, require_ref=False):
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


def model_source_digest(spec: str | None, hub_cache_dir: str | None, hashes: ContentHashes, what: str) -> str | None:
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
        return hashlib.sha256(canonical_json(self.as_dict()).encode()).hexdigest()


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


def run_of_model(model: str | os.PathLike, work_root: str | os.PathLike) -> PastRun | None:
    """The run under ``work_root`` whose ``model.pkl`` is ``model``: the hard link the tuning job
    makes, else (where it had to copy) a file of the same bytes; None when no run folder holds it."""
    target = Path(model)
    if not target.is_file():
        return None
    finished = [run for run in reversed(past_runs(work_root)) if run.model is not None]
    for run in finished:
        if run.model.samefile(target):
            return run
    size = target.stat().st_size
    for run in finished:
        if run.model.stat().st_size == size and filecmp.cmp(run.model, target, shallow=False):
            return run
    return None


def effective_batch(record: dict[str, Any]) -> tuple[int, int, int] | None:
    """(samples per step, processes, per-process batch) of a run record (``run.json``); None when
    it lacks either number."""
    processes, batch = record.get("num_processes"), record.get("settings", {}).get("batch_size")
    if not isinstance(processes, int) or not isinstance(batch, int):
        return None
    return processes * batch, processes, batch


def write_run_record(folder: Path, fingerprint: RunFingerprint) -> None:
    write_json(folder / RUN_RECORD_NAME, {"key": fingerprint.key, **fingerprint.as_dict()})


# ----------------------------------------------------------------------------- checkpoints


def find_latest_checkpoint(ckpt_dir: Path) -> tuple[int, Path] | None:
    found = []
    if ckpt_dir.is_dir():
        for path in ckpt_dir.iterdir():
            match = CHECKPOINT_NAME.match(path.name)
            if match:
                found.append((int(match[1]), path))
    return max(found) if found else None


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    if keep <= 0:
        return
    found = sorted((int(m[1]), p) for p in ckpt_dir.iterdir() if (m := CHECKPOINT_NAME.match(p.name)))
    for _, path in found[:-keep]:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(ckpt_dir: Path) -> None:
    """Temporary files of a write that a kill interrupted (hi4dfix.io.atomic_path naming)."""
    if ckpt_dir.is_dir():
        for path in ckpt_dir.glob(".model_*.tmp.pkl"):
            path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- resumption


def resume_fingerprint(cfg: TrainConfig, fp: RunFingerprint, world: int) -> dict[str, Any]:
    """What a checkpoint records and a resumption must match: the resolved settings, the data's
    and base's content, the processes."""
    return {
        **cfg.fingerprint(),
        "data": fp.data,
        "base": fp.base,
        "base_model_id": fp.base_model_id,
        "world_size": world,
    }


def changed_setting(cfg: TrainConfig, key: str, saved: Any, now: Any) -> str:
    """One difference between a checkpoint's ``resume_fingerprint`` and this run's, in words, the
    setting named as the user sets it (``TrainConfig.setting_name``)."""
    if key == "data":
        return f"the content of {cfg.setting_name('triplets')} and its images ({str(saved)[:12]} -> {str(now)[:12]})"
    if key in ("base", "base_model_id"):
        return f"{cfg.setting_name(key)} ({saved} -> {now})"
    if key == "world_size":
        return f"the processes (GPUs granted: {cfg.setting_name('num_processes')}) {saved} -> {now}"
    return f"{cfg.setting_name(key)} {saved!r} -> {now!r}"


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class CsvLog:
    """Append-only CSV; on resume, rows after the resumed step are dropped first."""

    def __init__(self, path: Path, fields: list[str], resume_step: int, enabled: bool) -> None:
        self.path, self.fields, self.enabled = path, fields, enabled
        if not enabled:
            return
        kept = []
        if path.is_file() and resume_step > 0:
            with path.open(newline="") as fh:
                kept = [row for row in csv.DictReader(fh) if int(row["step"]) <= resume_step]
        with atomic_path(path) as tmp:
            with tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=fields)
                writer.writeheader()
                writer.writerows(kept)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields).writerow(row)


# ----------------------------------------------------------------------------- run folders


def run_fingerprint(cfg: TrainConfig, num_processes: int, hashes: ContentHashes) -> RunFingerprint:
    """What this run's weights depend on; reading a file that is not there or not readable is an
    error naming it and the setting it comes from."""
    try:
        return RunFingerprint(
            data=triplets_digest(cfg.triplets, hashes),
            base=model_source_digest(cfg.base, cfg.hub_cache_dir, hashes, f"base model ({cfg.setting_name('base')})"),
            base_model_id=model_source_digest(cfg.base_model_id, cfg.hub_cache_dir, hashes, "SD-Turbo source"),
            settings=cfg.fingerprint(),
            num_processes=num_processes,
        )
    finally:
        hashes.save()


def choose_run_folder(cfg: TrainConfig, num_processes: int) -> tuple[Path, RunFingerprint]:
    """The folder this run trains in, and its fingerprint.

    With ``run_per_fingerprint``: ``output_dir/<key[:12]>``, logging whether the run continues
    an earlier one or starts fresh, and what changed since the latest earlier run.
    """
    work_root = Path(cfg.output_dir)
    fingerprint = run_fingerprint(cfg, num_processes, ContentHashes(work_root / HASH_CACHE_NAME))
    if not cfg.run_per_fingerprint:
        return work_root, fingerprint
    folder = work_root / fingerprint.key[:KEY_LENGTH]
    if (folder / RUN_RECORD_NAME).is_file():
        LOG.info("run folder %s: the training data, base and settings of an earlier run", folder)
        return folder, fingerprint
    earlier = past_runs(work_root)
    if earlier:
        said = changes(earlier[-1].record, fingerprint.as_dict())
        LOG.info("starting fresh in %s: since the run in %s, %s changed", folder, earlier[-1].folder, "; ".join(said))
    else:
        LOG.info("starting fresh in %s (no earlier run in %s)", folder, work_root)
    if (work_root / "checkpoints").is_dir():
        LOG.info("%s/checkpoints: an earlier layout without a fingerprint, not resumed", work_root)
    write_run_record(folder, fingerprint)
    return folder, fingerprint


def link_or_copy(source: Path, target: Path, copy: bool = False) -> None:
    """``target`` with ``source``'s content, atomically: a hard link (no second copy of a
    multi-GB model) where the file system allows, else (or with ``copy``) a copy."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        if copy:
            shutil.copyfile(source, tmp)
        else:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
