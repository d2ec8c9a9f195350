"""Provenance of a version's numbers: ``results/{version}/provenance.json``.

Two records. The inputs record (``provenance_inputs.json``, rule ``provenance``, once the NVS arms are
evaluated; the version card shows it) holds what went into the numbers; the ``delta_table`` job then
*seals* it into ``provenance.json`` (:func:`seal_provenance`): the compute-time stamps of every output
holding a number or a model (:mod:`hi4dfix.stamps`; ``code`` is what they say, never the state at
sealing), the ground truth's and tables' sha256, the settings that recompute the tables, and the
record's own hash. The inputs record:

* ``code``: the git commit of the hi4dfix checkout that ran and whether its tree was dirty;
* ``config``: the resolved version config (the version block with the render profiles and the
  study-wide settings it uses; of the data block, its own scenes only, so adding scenes to the study
  leaves the record alone) and the sha256 of its canonical JSON;
* ``packages``: Python's version and those of :data:`hi4dfix.stamps.PACKAGES` where the record is written
  (``not installed`` when absent; each output's own, from its job, are in its stamp);
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
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from hi4dfix.io import canonical_json, sha256_file, write_json
from hi4dfix.stamps import StampError, code_key, package_versions, packages_key, path_sha256, read_stamp, stamp_path

PROVENANCE_NAME = "provenance.json"
FORMAT = 1
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
    if not isinstance(record, dict) or record.get("format") not in (FORMAT, SEALED_FORMAT):
        raise ProvenanceError(f"{path}: not a hi4dfix provenance record of format {FORMAT} or {SEALED_FORMAT}")
    return path, record


def check_provenance(
    version_dir_or_file: str | os.PathLike, root: str | os.PathLike = ".", notes: list[str] | None = None
) -> list[str]:
    """Hash again every file the record names; one line per mismatch (empty: all match).

    Finds changed, missing and new prediction files (a file in an arm's folder that the record does
    not list), changed weights and changed scene fingerprints. A sealed record (:func:`seal_provenance`)
    is also checked against its own hash and its config's, its ground truth, tables and stamps are
    hashed again, outputs from more than one code state fail, and the delta tables are recomputed
    from the per-view CSVs (:func:`recompute_problems`). ``notes`` (when given) gets lines that pass."""
    path, record = read_provenance(version_dir_or_file)
    root = Path(root)
    problems: list[str] = []
    if record.get("format") == SEALED_FORMAT:
        sealed, sealed_notes = check_sealed(record, path, root)
        problems += sealed
        if notes is not None:
            notes += sealed_notes

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
    """``table`` with the column ``provenance``: the path of the record of what made its numbers (the
    record is sealed after the table, and hashes it, so the table cannot hold the record's hash)."""
    table = table.copy()
    table["provenance"] = str(provenance_path)
    return table


def nvs_delta_table(
    scenes,
    arm_csvs,
    bootstrap,
    nvs_mode: str,
    provenance_path: str | os.PathLike,
    seed_csvs: Mapping[str, Mapping[int, Any]] | None = None,
    first_seed: int = 0,
    render_quality: Any = None,
):
    """A version's ``deltas.csv`` from its per-scene NVS CSVs (:mod:`hi4dfix.tables`; ``seed_csvs``: the
    further training seeds', ``render_quality``: the reserved scenes' raw-render quality CSVs): what the
    delta_table job writes and what :func:`check_provenance` recomputes."""
    from hi4dfix.evaluate import with_refit_column
    from hi4dfix.render.quality import read_render_quality, with_render_quality
    from hi4dfix.tables import MEAN, delta_table_from_csvs

    table = delta_table_from_csvs(scenes, arm_csvs, bootstrap=bootstrap, seed_csvs=seed_csvs, first_seed=first_seed)
    table = tag_table(with_refit_column(table, nvs_mode), provenance_path)
    if render_quality:
        table = with_render_quality(table, read_render_quality(render_quality), MEAN)
    return table


def eval_delta_table(eval_csvs: Mapping[int, Any], bootstrap, source: str | None = None):
    """A version's ``eval_deltas.csv`` from its ``eval.csv`` of each training seed (seed -> path, the first
    seed first; :mod:`hi4dfix.tables`); ``source``: the paths the table names (default those given; the
    check reads copies elsewhere under the same names)."""
    from hi4dfix.tables import delta_table, read_seeded_eval_views

    views = read_seeded_eval_views(eval_csvs)
    return delta_table(views, bootstrap=bootstrap, source=source or ", ".join(str(p) for p in eval_csvs.values()))


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


# ---- the sealed record: stamps gathered, ground truth and tables hashed, recomputation spelled out ----

SEALED_FORMAT = 2
SELF_KEY = "record_sha256"


def record_sha256(record: Mapping[str, Any]) -> str:
    """sha256 of the record's canonical JSON without :data:`SELF_KEY`: an edited record no longer matches."""
    return config_sha256({k: v for k, v in record.items() if k != SELF_KEY})


def files_entry(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """``{path: sha256}`` of every file named, folders expanded to their files."""
    files: dict[str, str] = {}
    for path in paths:
        found = files_under(Path(path)) if Path(path).is_dir() else [Path(path)]
        files.update({str(p): sha256_file(p) for p in found})
    return files


def code_states(stamps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The code states of the stamped outputs: ``{key: [output, ...]}``, ``mixed`` when more than one,
    ``dirty`` when any output came from a tree with changes."""
    states: dict[str, list[str]] = {}
    for stamp in stamps.values():
        states.setdefault(code_key(stamp["code"]), []).append(stamp["output"]["path"])
    return {
        "states": {k: sorted(v) for k, v in sorted(states.items())},
        "mixed": len(states) > 1,
        "dirty": any(s["code"].get("dirty") for s in stamps.values()),
    }


def package_states(stamps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The package sets the stamped outputs were computed with: ``{key: {"packages": {...}, "outputs": [...]}}``
    (key: :func:`hi4dfix.stamps.packages_key`; ``unrecorded`` for stamps written before stamps held
    packages), ``mixed`` when more than one."""
    states: dict[str, dict[str, Any]] = {}
    for stamp in stamps.values():
        packages = stamp.get("packages")
        key = packages_key(packages) if packages else "unrecorded"
        states.setdefault(key, {"packages": dict(packages or {}), "outputs": []})["outputs"].append(
            stamp["output"]["path"]
        )
    for state in states.values():
        state["outputs"].sort()
    return {"states": dict(sorted(states.items())), "mixed": len(states) > 1}


def package_note(packages: Mapping[str, Any]) -> str | None:
    """One line for the check: the one package set, or how the sets differ and which outputs each made."""
    states = packages.get("states", {})
    if not states:
        return None
    if len(states) == 1:
        key, state = next(iter(states.items()))
        versions = ", ".join(f"{k} {v}" for k, v in state["packages"].items()) or "not recorded"
        return f"packages: every output came from one package set ({key}: {versions})"
    names = sorted({name for state in states.values() for name in state["packages"]})
    differ = [
        f"{name} ({' | '.join(str(state['packages'].get(name, '-')) for state in states.values())})"
        for name in names
        if len({state["packages"].get(name) for state in states.values()}) > 1
    ]

    def outputs(state: Mapping[str, Any]) -> str:
        shown = state["outputs"][:3]
        more = len(state["outputs"]) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more else "")

    sets = " | ".join(f"{key}: {outputs(state)}" for key, state in states.items())
    return (
        f"packages: the outputs came from {len(states)} package sets, which differ in "
        f"{', '.join(differ) or 'what was recorded'} (in the order of the sets): {sets}"
    )


def seal_provenance(
    inputs_record: Mapping[str, Any],
    stamps: Iterable[str | os.PathLike],
    ground_truth: Iterable[str | os.PathLike],
    tables: Iterable[str | os.PathLike],
    recompute: Mapping[str, Any],
    control_model: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The version's ``provenance.json``: the inputs record (config, packages, weights, scenes,
    predictions) with the compute-time stamps of every output that holds a number or a model (never
    re-deriving code state: ``code`` is what the stamps say), sha256 of the ground truth (the materialized
    scenes whose images are targets), of the tables and of the stamps themselves, the settings that
    recompute the tables (``recompute``), the package sets the stamps name (``compute_packages``:
    :func:`package_states`) and :data:`SELF_KEY`."""
    record = {k: v for k, v in inputs_record.items() if k not in ("format", "code")}
    stamp_records = {str(p): read_stamp(p) for p in stamps}
    if control_model is not None:
        record["weights"] = {**record.get("weights", {}), "control": weights_entry(str(control_model))}
    record.update(
        format=SEALED_FORMAT,
        code=code_states(stamp_records),
        compute_packages=package_states(stamp_records),
        stamps={path: {"sha256": sha256_file(path), **stamp} for path, stamp in stamp_records.items()},
        ground_truth={"files": files_entry(ground_truth)},
        tables=files_entry(tables),
        recompute=dict(recompute),
    )
    record[SELF_KEY] = record_sha256(record)
    return record


def _cell(value: Any) -> str:
    return repr(value.item() if hasattr(value, "item") else value)


def _table_difference(path: Path, recomputed, label: str, root: Path = Path(".")) -> list[str]:
    """Compare a table on disk (``root / path``; messages name ``path``, as recorded) with its
    recomputation, as the job writes it (CSV bytes)."""
    import io

    import pandas as pd

    shown, path = path, root / path

    if not path.is_file():
        return [f"{label}: {shown} is missing"]
    text = io.StringIO()
    recomputed.to_csv(text, index=False)  # hi4dfix.tables.write_csv's format
    if text.getvalue() == path.read_text():
        return []
    on_disk = pd.read_csv(path)
    again = pd.read_csv(io.StringIO(text.getvalue()))
    if list(on_disk.columns) != list(again.columns) or len(on_disk) != len(again):
        return [f"{label}: {shown} differs from its recomputation (columns or rows)"]
    cells = [
        f"row {i} {col}: {_cell(on_disk[col].iloc[i])} on disk, {_cell(again[col].iloc[i])} recomputed"
        for col in on_disk.columns
        for i in range(len(on_disk))
        if not (pd.isna(on_disk[col].iloc[i]) and pd.isna(again[col].iloc[i]))
        and on_disk[col].iloc[i] != again[col].iloc[i]
    ]
    return [f"{label}: {shown} differs from its recomputation ({'; '.join(cells[:3]) or 'formatting'})"]


def recompute_problems(recompute: Mapping[str, Any], root: Path) -> list[str]:
    """Recompute the delta tables from the recorded per-view CSVs (:func:`nvs_delta_table`,
    :func:`eval_delta_table`) and name every table that differs."""
    from hi4dfix.stats import BootstrapConfig

    problems: list[str] = []
    if "deltas" in recompute:
        spec = recompute["deltas"]
        arm_csvs = {arm: [root / p for p in paths] for arm, paths in spec["arm_csvs"].items()}
        seed_csvs = {  # JSON keys are strings: the seeds back to integers
            arm: {int(seed): [root / p for p in paths] for seed, paths in by_seed.items()}
            for arm, by_seed in (spec.get("seed_csvs") or {}).items()
        }
        try:
            table = nvs_delta_table(
                spec["scenes"], arm_csvs, BootstrapConfig(**spec["bootstrap"]), spec["nvs_mode"], spec["provenance"],
                seed_csvs=seed_csvs or None, first_seed=spec.get("first_seed", 0),
                render_quality=[root / p for p in spec.get("render_quality", [])],
            )  # fmt: skip
            problems += _table_difference(Path(spec["path"]), table, "delta table", root)
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"delta table: {spec['path']} cannot be recomputed: {exc}")
    if "eval_deltas" in recompute:
        spec = recompute["eval_deltas"]
        eval_csvs = spec["eval_csvs"]  # seed -> path
        try:
            table = eval_delta_table(
                {int(seed): root / p for seed, p in eval_csvs.items()},
                BootstrapConfig(**spec["bootstrap"]),
                ", ".join(eval_csvs.values()),
            )
            problems += _table_difference(Path(spec["path"]), table, "internal evaluation table", root)
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"internal evaluation table: {spec['path']} cannot be recomputed: {exc}")
    return problems


def check_sealed(record: Mapping[str, Any], record_path: Path, root: Path) -> tuple[list[str], list[str]]:
    """Problems (a non-empty list fails the check) and notes of a sealed record (:func:`seal_provenance`)."""
    problems: list[str] = []
    notes: list[str] = []
    if record.get(SELF_KEY) != record_sha256(record):
        problems.append(f"record: {record_path} was edited after it was written ({SELF_KEY} does not match)")
    config = record.get("config", {})
    if config and config.get("sha256") != config_sha256(config.get("resolved")):
        problems.append(f"record: {record_path}'s resolved config does not match its recorded sha256")

    def check_files(files: Mapping[str, str], what: str) -> None:
        for path, sha in files.items():
            where = root / path
            if not where.is_file():
                problems.append(f"{what}: {path} is missing")
            elif sha256_file(where) != sha:
                problems.append(f"{what}: {path} changed (sha256 {sha256_file(where)[:12]}, recorded {sha[:12]})")

    check_files(record.get("ground_truth", {}).get("files", {}), "ground truth")
    check_files(record.get("tables", {}), "table")
    check_files({p: s["sha256"] for p, s in record.get("stamps", {}).items()}, "stamp")
    for path, stamp in record.get("stamps", {}).items():
        output = stamp["output"]
        where = root / output["path"]
        if where.exists() and path_sha256(where) != output["sha256"]:
            problems.append(f"output: {output['path']} changed since its job stamped it ({path})")
    code = record.get("code", {})
    states = code.get("states", {})
    if code.get("mixed"):
        lines = [f"{key}: {', '.join(outputs)}" for key, outputs in states.items()]
        problems.append(f"code: the outputs came from {len(states)} code states: " + " | ".join(lines))
    elif states:
        notes.append(f"code: every output came from {next(iter(states))}")
    # a note, not a failure: a cluster's nodes may differ in a build, and the note says what and where
    if note := package_note(record.get("compute_packages", {})):
        notes.append(note)
    problems += recompute_problems(record.get("recompute", {}), root)
    return problems, notes


# ---- ablation grids: compare.csv recomputed from its stamp --------------------------------------


def grid_compare_table(grid: str, settings: Mapping[str, Any]):
    """An ablation grid's ``compare.csv`` from the compare_grid job's settings (its rule's params: the
    tuned per-scene CSVs, internal ``eval.csv`` and provenance of each version, the scenes, the
    variants' settings, ``stats``), through :func:`hi4dfix.compare.compare_table`: what the job writes
    and what :func:`check_grid` recomputes from the settings its stamp recorded."""
    from hi4dfix.compare import VariantTables, compare_table
    from hi4dfix.stats import BootstrapConfig

    tables, provenance, internal = settings["tables"], settings["provenance"], settings["internal"]
    parent = settings["parent"]
    # a stamp's JSON sorts keys: the variants' order (their rows') is kept in a list
    order = settings.get("variant_order", list(settings["settings"]))
    # the further training seeds (absent from the stamps of grids made before seeds were units)
    seed_tables, seed_internal = settings.get("seed_tables", {}), settings.get("seed_internal", {})
    variants = (
        VariantTables(
            name, settings["settings"][name], tables[name], provenance[name], internal[name],
            seed_tables.get(name, ()), seed_internal.get(name, ()),
        )
        for name in order
    )  # fmt: skip
    return compare_table(
        grid, parent, tables[parent], variants, settings["scenes"],
        bootstrap=BootstrapConfig(**settings["bootstrap"]),
        parent_provenance=provenance[parent], parent_eval_csv=internal[parent],
        parent_seed_csvs=seed_tables.get(parent, ()), parent_seed_eval_csvs=seed_internal.get(parent, ()),
    )  # fmt: skip


def check_grid(compare_csv: str | os.PathLike, root: str | os.PathLike = ".") -> list[str]:
    """Problems of a grid's ``compare.csv`` (``hi4dfix provenance check results/ablations/GRID``): its
    stamp's output and input hashes, each compared version's sealed record, and the table recomputed
    from the stamp's settings (paths relative to ``root``)."""
    import contextlib

    root, compare_csv = Path(root), Path(compare_csv)
    try:
        stamp = read_stamp(root / stamp_path(compare_csv))
    except StampError as exc:
        return [f"compare table: {exc}"]
    problems = []
    if path_sha256(root / compare_csv) != stamp["output"]["sha256"]:
        problems.append(f"compare table: {compare_csv} changed since its job stamped it")
    for path, sha in stamp["inputs"].items():
        where = root / path
        if not where.exists():
            problems.append(f"compare input: {path} is missing")
        elif path_sha256(where) != sha:
            problems.append(f"compare input: {path} changed since the comparison was made")
    for version, record in sorted(stamp["settings"]["provenance"].items()):
        try:
            problems += [f"{version}: {p}" for p in check_provenance(root / record, root)]
        except ProvenanceError as exc:
            problems.append(f"{version}: {exc}")
    grid = Path(compare_csv).parent.name
    try:
        with contextlib.chdir(root):  # the settings name paths relative to the workflow's directory
            table = grid_compare_table(grid, stamp["settings"])
    except (OSError, ValueError, KeyError) as exc:
        return [*problems, f"compare table: {compare_csv} cannot be recomputed: {exc}"]
    return problems + _table_difference(compare_csv, table, "compare table", root)
