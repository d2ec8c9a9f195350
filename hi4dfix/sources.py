"""Source files of a materialized scene, tracked by content without listing them as Snakemake inputs.

A materialize job records, in ``results/scenes/{scene}/sources.json``, every source file it read
(the images and 'all' masks of the selected frames at every camera, and their SMPL files) with
its size, modification time and SHA-256, and a *token*: the value of the job's ``source_state``
param. At DAG build, :func:`source_state` stats the recorded files (no reading) and returns

* the recorded token when every file has its recorded size and time, or when the files whose
  stat changed still have their recorded SHA-256 (a ``touch`` or a copy with the same bytes);
* a new token naming the changed content otherwise, so Snakemake's params trigger reruns that
  scene's materialize and, through its output, everything downstream of it, and nothing else;
* ``"new"`` for a scene not materialized yet (or materialized before sources were recorded).

Why not inputs: Snakemake checks every input file of every job at DAG build; a Hi4D scene of
110 frames has 1,760 images and masks, which cost ~300 ms a scene as inputs against ~23 ms a scene
for these stats (BENCHMARKS.md, "Source files tracked by content"). Why not a stat digest as
the param: a synthetic sequence does not exist yet when the first DAG is built, so its digest would
change between the first and second run and
rerun every scene once. The recorded token is what keeps the param stable.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

from hi4dfix.io import sha256_file, write_json

SOURCES_FILE = "sources.json"
NEW = "new"


def _stat(path: Path) -> list[int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def record_sources(
    scene_dir: str | os.PathLike, sequence_dir: str | os.PathLike, files: Iterable[Path], token: str
) -> None:
    """Write ``sources.json``: each file (relative to ``sequence_dir``) with size, time and SHA-256."""
    sequence_dir = Path(sequence_dir)
    entries = {}
    for path in sorted(set(map(Path, files))):
        size, mtime_ns = _stat(path) or (None, None)
        entries[path.relative_to(sequence_dir).as_posix()] = {
            "size": size,
            "mtime_ns": mtime_ns,
            "sha256": sha256_file(path),
        }
    write_json(Path(scene_dir) / SOURCES_FILE, {"token": token, "files": entries})


def source_state(scene_dir: str | os.PathLike, sequence_dir: str | os.PathLike) -> str:
    """The materialize job's ``source_state`` param (module docstring): cheap, stats only, unless
    a file's stat changed."""
    record_path = Path(scene_dir) / SOURCES_FILE
    try:
        record = json.loads(record_path.read_text())
        token, files = record["token"], record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return NEW
    prefix = f"{os.fspath(sequence_dir)}{os.sep}"
    changed = []
    for rel, entry in files.items():
        path = prefix + rel  # str, not Path: this loop runs for every recorded file at each DAG build
        try:
            info = os.stat(path)
            if info.st_size == entry["size"] and info.st_mtime_ns == entry["mtime_ns"]:
                continue
        except OSError:
            pass
        try:
            sha = sha256_file(path)
        except OSError:
            sha = "missing"
        if sha != entry["sha256"]:
            changed.append(f"{rel} {sha}")
    if not changed:
        return token
    return "changed " + hashlib.sha256("\n".join(changed).encode()).hexdigest()[:16] + f" ({changed[0].split()[0]}...)"
