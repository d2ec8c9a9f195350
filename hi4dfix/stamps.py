"""Stamps: what made one output, written by the job that made it (``OUTPUT.stamp.json``).

A stamp is taken *when the number or model is made*, so a record gathered later
(:mod:`hi4dfix.provenance`) never re-derives code state: an output made with a local change keeps
``dirty: true`` and its diff hash after the change is reverted and other outputs are remade. A stamp holds

* ``code``: the commit of the checkout hi4dfix is imported from, ``dirty``, and ``diff_sha256`` (the
  binary diff of tracked files against HEAD plus every untracked, not ignored, file under ``hi4dfix/``
  and ``workflow/``): two stamps with one commit and one diff hash ran the same code;
* ``settings_sha256`` (and ``settings``): the resolved settings the job used (its rule's params);
* ``inputs``: sha256 of every input file (a folder: one digest over its files);
* ``output``: the stamped output's path and sha256, so a later edit of the output is seen;
* ``packages``: Python's version and those of :data:`PACKAGES` in the job's environment (a tuned
  model's numbers move with its training stack's rounding: two fresh setups gave tuned arms 0.12 dB
  apart with one commit, BENCHMARKS.md), so two outputs' software can be told apart.

:func:`write_stamp` is the one way jobs write them (the scripts, and ``python -m hi4dfix.stamps`` for
shell rules).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from hi4dfix.io import canonical_json, sha256_file, write_json

STAMP_SUFFIX = ".stamp.json"
STAMP_FORMAT = 1
# untracked files here change what runs; elsewhere (results, scratch) they do not
CODE_FOLDERS = ("hi4dfix", "workflow")
# what a number or a model depends on besides the code: the model and training stack, the renderer,
# the metrics and the image libraries
PACKAGES = (
    "torch", "torchvision", "numpy", "scipy", "scikit-image", "opencv-python-headless", "diffusers",
    "transformers", "peft", "accelerate", "gsplat", "lpips", "piq", "flip-evaluator", "snakemake",
)  # fmt: skip
NOT_INSTALLED = "not installed"


class StampError(ValueError):
    """A stamp that cannot be written or read."""


def stamp_path(output: str | os.PathLike) -> str:
    """Where the stamp of ``output`` lies: beside it (``plan.Paths.stamp`` is the workflow's name)."""
    return f"{output}{STAMP_SUFFIX}"


def digest_of(hashes: Mapping[str, str]) -> str:
    """One sha256 over ``{name: sha256}`` (sorted names): changes when any file, name or count does."""
    return hashlib.sha256("".join(f"{k}\0{hashes[k]}\n" for k in sorted(hashes)).encode()).hexdigest()


def settings_sha256(settings: Any) -> str:
    """sha256 of the canonical JSON of ``settings`` (sorted keys; tuples, paths and others as strings)."""
    return hashlib.sha256(canonical_json(settings, compact=True, default=str).encode()).hexdigest()


def path_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, or one digest over every file of a folder (by relative path)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return digest_of({str(p.relative_to(path)): sha256_file(p) for p in files})
    if not path.is_file():
        raise StampError(f"{path} does not exist: it cannot be stamped or hashed")
    return sha256_file(path)


def code_state(repo: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit, ``dirty`` and ``diff_sha256`` of ``repo`` now (default: the checkout hi4dfix is imported
    from); ``commit`` None, with a note, outside a git checkout."""
    repo = Path(repo) if repo is not None else Path(__file__).resolve().parents[1]

    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=60).stdout

    try:
        commit = git("rev-parse", "HEAD").decode().strip()
        diff = git("diff", "HEAD", "--binary")
        untracked = git("ls-files", "--others", "--exclude-standard", "-z", "--", *CODE_FOLDERS).split(b"\0")
        status = git("status", "--porcelain").strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "note": f"{repo} is not a git checkout (or git is missing)"}
    digest = hashlib.sha256(diff)
    for name in sorted(n for n in untracked if n):
        digest.update(b"\0" + name + b"\0" + bytes.fromhex(sha256_file(repo / name.decode())))
    return {"commit": commit, "dirty": bool(status), "diff_sha256": digest.hexdigest()}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Python's version and each package's (:data:`NOT_INSTALLED` when absent), in this environment."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = NOT_INSTALLED
    return versions


def packages_key(packages: Mapping[str, str]) -> str:
    """A short name of a package set: the first 12 hex digits of its canonical JSON's sha256."""
    return settings_sha256(dict(packages))[:12]


def code_key(code: Mapping[str, Any]) -> str:
    """One line naming a code state: two stamps with the same key ran the same code."""
    commit = (code.get("commit") or "unknown")[:12]
    if not code.get("dirty"):
        return f"{commit} (clean)"
    return f"{commit} (dirty, diff {str(code.get('diff_sha256'))[:12]})"


def make_stamp(
    output: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    settings: Any,
    code: Mapping[str, Any] | None = None,
    packages: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The stamp of ``output`` (see the module doc); ``code`` defaults to :func:`code_state` now,
    ``packages`` to :func:`package_versions`."""
    return {
        "format": STAMP_FORMAT,
        "output": {"path": str(output), "sha256": path_sha256(output)},
        "code": dict(code) if code is not None else code_state(),
        "settings_sha256": settings_sha256(settings),
        "settings": json.loads(canonical_json(settings, default=str)),
        "inputs": {str(p): path_sha256(p) for p in dict.fromkeys(str(p) for p in inputs)},
        "packages": dict(packages) if packages is not None else package_versions(),
    }


def write_stamp(
    outputs: str | os.PathLike | Sequence[str | os.PathLike],
    inputs: Iterable[str | os.PathLike],
    settings: Any,
    code: Mapping[str, Any] | None = None,
) -> list[str]:
    """Stamp each of ``outputs`` (one code state and package set for all, taken once); returns the stamps' paths."""
    outputs = [outputs] if isinstance(outputs, (str, os.PathLike)) else list(outputs)
    inputs = list(inputs)
    code = dict(code) if code is not None else code_state()
    packages = package_versions()
    written = []
    for output in outputs:
        write_json(stamp_path(output), make_stamp(output, inputs, settings, code, packages))
        written.append(stamp_path(output))
    return written


def stamp_job(snakemake: Any, outputs: Sequence[str] | None = None, settings: Any = None) -> list[str]:
    """Stamp a Snakemake script job's outputs (default: every output that is not a stamp) with its
    inputs and ``settings`` (default: its params, the resolved settings it used)."""
    if outputs is None:
        outputs = [str(p) for p in snakemake.output if not str(p).endswith(STAMP_SUFFIX)]
    inputs = [str(p) for p in snakemake.input]
    if settings is None:
        settings = {key: value for key, value in snakemake.params.items()}
    return write_stamp(outputs, inputs, settings)


def read_stamp(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise StampError(f"{path} does not exist: the job that made {str(path)[: -len(STAMP_SUFFIX)]} stamps it")
    try:
        stamp = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StampError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(stamp, dict) or stamp.get("format") != STAMP_FORMAT:
        raise StampError(f"{path}: not a hi4dfix stamp of format {STAMP_FORMAT}")
    return stamp


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hi4dfix.stamps --output F [--output G] --inputs A B ... --settings=JSON``: shell rules' stamps."""
    parser = argparse.ArgumentParser(prog="python -m hi4dfix.stamps", description=main.__doc__)
    parser.add_argument("--output", action="append", required=True, help="an output to stamp (repeatable)")
    parser.add_argument("--inputs", nargs="*", default=[], help="the job's inputs")
    parser.add_argument("--settings", default="{}", help="the job's resolved settings, as JSON or a string")
    args = parser.parse_args(argv)
    try:
        settings = json.loads(args.settings)
    except json.JSONDecodeError:
        settings = args.settings  # a command line of options: hashed as it is
    for path in write_stamp(args.output, args.inputs, settings):
        print(f"stamped: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
