"""Provenance of a version's numbers: ``results/{version}/provenance.json``.

What made the numbers of a version, written once its NVS arms are evaluated (rule ``provenance``):

* ``code``: the git commit of the hi4dfix checkout that ran and whether its tree was dirty;
* ``config``: the resolved version config (the version block with the render profiles and the
  study-wide settings it uses; of the data block, its own scenes only, so adding scenes to the study
  leaves the record alone) and the sha256 of its canonical JSON;
* ``packages``: Python's version and those of :data:`PACKAGES` (``not installed`` when absent);
* ``weights``: sha256 of the base DiFix (a file, or every file of a folder; a Hub id is named only)
  and of the tuned ``model.pkl``;
* ``scenes``: each scene's content fingerprint, the key ``content_sha256`` of
  ``results/scenes/{scene}/fingerprint.json`` (written by the materialize rule);
* ``predictions``: per arm, the sha256 of every file it wrote per reserved scene (the per-view CSV
  and the saved images under ``nvs/{arm}/{scene}/``) and one digest over them.

:func:`check_provenance` hashes again what is on disk and lists every file that no longer matches
(``hi4dfix provenance check results/v0``). Paths are recorded as the workflow gave them, relative
to its working directory; the check resolves them against ``root`` (default: the current folder).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from hi4dfix.io import canonical_json, sha256_file, write_json

PROVENANCE_NAME = "provenance.json"
FORMAT = 1
PACKAGES = ("torch", "diffusers", "snakemake", "gsplat", "lpips")
NOT_INSTALLED = "not installed"
FINGERPRINT_KEY = "content_sha256"


class ProvenanceError(ValueError):
    """Provenance that cannot be written or read."""


def digest_of(hashes: Mapping[str, str]) -> str:
    """One sha256 over ``{name: sha256}`` (sorted names): changes when any file, name or count does."""
    return hashlib.sha256("".join(f"{k}\0{hashes[k]}\n" for k in sorted(hashes)).encode()).hexdigest()


def config_sha256(config: Any) -> str:
    """sha256 of the canonical JSON of ``config`` (sorted keys, tuples as lists)."""
    return hashlib.sha256(canonical_json(config, compact=True, default=list).encode()).hexdigest()


def code_state(repo: str | os.PathLike | None = None) -> dict[str, Any]:
    """The git commit of ``repo`` (default: the checkout hi4dfix is imported from) and whether its
    tree has changes (tracked or untracked files git does not ignore)."""
    repo = Path(repo) if repo is not None else Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, timeout=60
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "note": f"{repo} is not a git checkout (or git is missing)"}
    return {"commit": commit, "dirty": dirty}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = NOT_INSTALLED
    return versions


def files_under(folder: Path) -> list[Path]:
    """Every file under ``folder`` (recursively), sorted; none when it does not exist."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def weights_entry(spec: str) -> dict[str, Any]:
    """sha256 of a weights file, or of every file of a weights folder; a Hub id is only named."""
    path = Path(spec)
    if path.is_file():
        return {"spec": spec, "sha256": sha256_file(path)}
    if path.is_dir():
        files = {str(p): sha256_file(p) for p in files_under(path)}
        return {"spec": spec, "sha256": digest_of({str(Path(k).relative_to(path)): v for k, v in files.items()}),
                "files": files}  # fmt: skip
    return {"spec": spec, "sha256": None, "note": "not a local file or folder (a Hub id): not hashed"}


def scene_fingerprint(path: str | os.PathLike) -> str:
    """``content_sha256`` of a materialized scene's ``fingerprint.json``."""
    path = Path(path)
    if not path.is_file():
        raise ProvenanceError(
            f"{path} does not exist: provenance needs the scene's content fingerprint, which the materialize "
            "rule writes there (re-materialize the scene with a hi4dfix that writes fingerprint.json)"
        )
    try:
        value = json.loads(path.read_text())[FINGERPRINT_KEY]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ProvenanceError(f"{path}: expected a JSON object with the key {FINGERPRINT_KEY!r} ({exc!r})") from None
    if not isinstance(value, str) or not value:
        raise ProvenanceError(f"{path}: {FINGERPRINT_KEY} must be a non-empty string, got {value!r}")
    return value


def arm_prediction_files(arm_csv: str | os.PathLike) -> list[Path]:
    """What an NVS arm wrote for one scene: its CSV and every file in the folder beside it
    (``hi4dfix.evaluate.arm_output_dir``: saved outputs, Difix3D+'s progressive renders)."""
    arm_csv = Path(arm_csv)
    return [arm_csv, *files_under(arm_csv.with_suffix(""))]


def predictions_entry(arm_csvs: Mapping[str, Iterable[str | os.PathLike]]) -> dict[str, Any]:
    """Per arm: ``{"sha256": digest, "files": {path: sha256}}`` over its scenes' prediction files."""
    entry = {}
    for arm, csvs in arm_csvs.items():
        files = {str(p): sha256_file(p) for csv in csvs for p in arm_prediction_files(csv)}
        entry[arm] = {"sha256": digest_of(files), "scenes_csv": [str(c) for c in csvs], "files": files}
    return entry


def build_provenance(
    resolved_config: Mapping[str, Any],
    base_spec: str,
    tuned_model: str | os.PathLike,
    scene_fingerprints: Mapping[str, str | os.PathLike],
    arm_csvs: Mapping[str, Sequence[str | os.PathLike]],
    repo: str | os.PathLike | None = None,
    extra_weights: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The provenance record (see the module doc). ``scene_fingerprints``: scene -> its fingerprint.json;
    ``extra_weights``: each extra arm's weights (difix.extra_arms), hashed like the base's."""
    extra = {arm: weights_entry(spec) for arm, spec in (extra_weights or {}).items()}
    return {
        "format": FORMAT,
        "code": code_state(repo),
        "config": {"sha256": config_sha256(resolved_config), "resolved": resolved_config},
        "packages": package_versions(),
        "weights": {"base": weights_entry(base_spec), "tuned": weights_entry(str(tuned_model)), **extra},
        "scenes": {
            scene: {"fingerprint": str(path), FINGERPRINT_KEY: scene_fingerprint(path)}
            for scene, path in sorted(scene_fingerprints.items())
        },
        "predictions": predictions_entry(arm_csvs),
    }


def write_provenance(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    write_json(path, record)  # atomic: a killed job leaves the old file or none


def read_provenance(version_dir_or_file: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    path = Path(version_dir_or_file)
    if path.is_dir():
        path = path / PROVENANCE_NAME
    if not path.is_file():
        raise ProvenanceError(f"{path} does not exist (the workflow writes it with the version's deltas.csv)")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ProvenanceError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ProvenanceError(f"{path}: not a hi4dfix provenance record of format {FORMAT}")
    return path, record


def check_provenance(version_dir_or_file: str | os.PathLike, root: str | os.PathLike = ".") -> list[str]:
    """Hash again every file the record names; one line per mismatch (empty: all match).

    Finds changed, missing and new prediction files (a file in an arm's folder that the record does
    not list), changed weights and changed scene fingerprints. Code, packages and config describe
    the run, not files on disk: they are not checked."""
    _path, record = read_provenance(version_dir_or_file)
    root = Path(root)
    problems: list[str] = []

    def check_file(path: str, expected: str, what: str) -> None:
        where = root / path
        if not where.is_file():
            problems.append(f"{what}: {path} is missing")
        elif sha256_file(where) != expected:
            problems.append(f"{what}: {path} changed (sha256 {sha256_file(where)[:12]}, recorded {expected[:12]})")

    for name, entry in record.get("weights", {}).items():
        if entry.get("files"):
            for path, sha in entry["files"].items():
                check_file(path, sha, f"{name} weights")
            spec = root / entry["spec"]
            new = sorted({str(p.relative_to(root)) for p in files_under(spec)} - set(entry["files"]))
            problems += [f"{name} weights: {p} is new" for p in new]
        elif entry.get("sha256"):
            check_file(entry["spec"], entry["sha256"], f"{name} weights")
    for scene, entry in record.get("scenes", {}).items():
        try:
            now = scene_fingerprint(root / entry["fingerprint"])
        except ProvenanceError as exc:
            problems.append(f"scene {scene}: {exc}")
            continue
        if now != entry[FINGERPRINT_KEY]:
            problems.append(f"scene {scene}: content fingerprint {now[:12]}, recorded {entry[FINGERPRINT_KEY][:12]}")
    for arm, entry in record.get("predictions", {}).items():
        for path, sha in entry["files"].items():
            check_file(path, sha, f"arm {arm}")
        on_disk = {str(p.relative_to(root)) for csv in entry["scenes_csv"] for p in arm_prediction_files(root / csv)}
        problems += [f"arm {arm}: {p} is new" for p in sorted(on_disk - set(entry["files"]))]
    return problems


def tag_table(table, provenance_path: str | os.PathLike):
    """``table`` with the columns ``provenance`` (the record's path) and ``provenance_sha256`` (its
    hash at the time): the record of what made the table's numbers."""
    table = table.copy()
    table["provenance"] = str(provenance_path)
    table["provenance_sha256"] = sha256_file(provenance_path)
    return table


def summary_rows(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs for a short human summary (the version card)."""
    code = record.get("code", {})
    commit = code.get("commit") or "unknown"
    rows = [
        ("code", f"{commit[:12]}{' (dirty tree)' if code.get('dirty') else ''}"),
        ("config sha256", record["config"]["sha256"]),
        ("packages", ", ".join(f"{k} {v}" for k, v in record.get("packages", {}).items())),
    ]
    for name, entry in record.get("weights", {}).items():
        rows.append((f"{name} weights", f"{entry['spec']}: {entry.get('sha256') or entry.get('note', '')}"))
    for scene, entry in record.get("scenes", {}).items():
        rows.append((f"scene {scene}", entry[FINGERPRINT_KEY]))
    for arm, entry in record.get("predictions", {}).items():
        rows.append((f"predictions {arm}", f"{entry['sha256']} ({len(entry['files'])} files)"))
    return rows
