"""`hi4dfix provenance check` on the small study's real outputs (the shared `small_pipeline` run, copied
per case): it passes untouched, and fails naming the file after each tampering of issue 37."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hi4dfix.cli import main
from hi4dfix.provenance import SELF_KEY, record_sha256
from hi4dfix.stamps import read_stamp
from workflow_helpers import REPO, SNAKEMAKE

pytestmark = pytest.mark.usefixtures("small_pipeline")


@pytest.fixture
def case(small_pipeline, tmp_path) -> Path:
    """A copy of the small study's working directory, free to tamper with."""
    workdir, _config = small_pipeline
    copy = tmp_path / "study"
    shutil.copytree(workdir, copy, symlinks=True)
    return copy


def check(root: Path, capsys) -> tuple[int, str]:
    code = main(["provenance", "check", str(root / "results/v0"), "--root", str(root)])
    return code, capsys.readouterr().out


def record(root: Path) -> dict:
    return json.loads((root / "results/v0/provenance.json").read_text())


def test_untouched_study_passes_with_tables_recomputed_and_its_code_state(case, capsys):
    code, out = check(case, capsys)
    assert code == 0, out
    assert "tables recomputed from the per-view CSVs: deltas, eval_deltas" in out
    assert "code: every output came from" in out
    assert "packages: every output came from one package set (" in out  # every job ran in this environment
    sealed = record(case)
    assert sealed[SELF_KEY] == record_sha256(sealed) and sealed["code"]["mixed"] is False
    assert sealed["compute_packages"]["mixed"] is False
    # every output holding the version's numbers or models was stamped by its own job
    stamped = {stamp["output"]["path"] for stamp in sealed["stamps"].values()}
    assert {"results/v0/difix/eval.csv", "results/v0/difix/model.pkl", "results/v0/difix/control/model.pkl",
            "results/v0/deltas.csv", "results/v0/difix/eval_deltas.csv", "results/difix_base/tiny/model.pkl",
            "results/v0/nvs/raw/hi4d_pair15_fight.csv"} <= stamped  # fmt: skip
    assert any(p.startswith("results/scenes/hi4d_pair19_piggyback/") for p in sealed["ground_truth"]["files"])
    assert set(sealed["tables"]) == {"results/v0/deltas.csv", "results/v0/difix/eval_deltas.csv"}
    assert sealed["weights"]["control"]["sha256"]


def test_a_changed_ground_truth_image_of_a_reserved_scene_fails(case, capsys):
    image = next(p for p in sorted((case / "results/scenes/hi4d_pair15_fight").rglob("*.png")))
    data = bytearray(image.read_bytes())
    data[-20] ^= 0x01
    image.write_bytes(bytes(data))
    code, out = check(case, capsys)
    assert code == 1 and f"ground truth: {image.relative_to(case)} changed" in out


def test_an_edited_resolved_config_in_the_record_fails(case, capsys):
    path = case / "results/v0/provenance.json"
    sealed = record(case)
    sealed["config"]["resolved"]["version"]["tuning"]["steps"] = 150
    path.write_text(json.dumps(sealed))
    code, out = check(case, capsys)
    assert code == 1 and "results/v0/provenance.json was edited after it was written" in out
    assert "resolved config does not match its recorded sha256" in out


def test_an_edited_number_in_deltas_csv_fails_even_with_the_record_rehashed(case, capsys):
    path = case / "results/v0/deltas.csv"
    table = pd.read_csv(path)
    table.loc[0, "delta"] = table.loc[0, "delta"] + 1.0
    table.to_csv(path, index=False)
    code, out = check(case, capsys)
    assert code == 1 and "table: results/v0/deltas.csv changed" in out
    assert "delta table: results/v0/deltas.csv differs from its recomputation (row 0 delta" in out
    # a careful tamperer rewrites the record's hashes too: the recomputation still fails
    sealed = record(case)
    from hi4dfix.io import sha256_file

    sealed["tables"]["results/v0/deltas.csv"] = sha256_file(path)
    sealed[SELF_KEY] = record_sha256(sealed)
    (case / "results/v0/provenance.json").write_text(json.dumps(sealed))
    code, out = check(case, capsys)
    assert code == 1 and "table: results/v0/deltas.csv changed" not in out
    assert "delta table: results/v0/deltas.csv differs from its recomputation" in out


def test_an_edited_eval_csv_fails(case, capsys):
    path = case / "results/v0/difix/eval.csv"
    table = pd.read_csv(path)
    table.loc[0, "psnr"] = table.loc[0, "psnr"] + 5.0
    table.to_csv(path, index=False)
    code, out = check(case, capsys)
    assert code == 1 and "output: results/v0/difix/eval.csv changed since its job stamped it" in out


def test_a_changed_control_model_fails(case, capsys):
    path = case / "results/v0/difix/control/model.pkl"
    path.write_bytes(path.read_bytes() + b"\0")
    code, out = check(case, capsys)
    assert code == 1 and "control weights: results/v0/difix/control/model.pkl changed" in out


def _clone(tmp_path: Path) -> Path:
    """The repository's files (tracked and untracked, not ignored) as a fresh git checkout: its code
    state is the test's to change."""
    names = (
        subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"], check=True, capture_output=True
        )
        .stdout.decode()
        .split("\0")
    )
    clone = tmp_path / "code"
    for name in filter(None, names):
        if (REPO / name).is_file() and not (REPO / name).is_symlink():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    git = ["git", "-C", str(clone), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], check=True)
    return clone


def _snakemake(clone: Path, workdir: Path, config: dict, *args: str) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(clone), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        [*SNAKEMAKE, "-s", str(clone / "Snakefile"), "-d", str(workdir), "--configfile", str(workdir / "config.yaml"),
         # the clone's code is the repository's at another path, which Snakemake's code trigger takes for a change
         "--rerun-triggers", "mtime", "params", "input", "--cores", "2", *args],
        capture_output=True, text=True, env=env, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def test_an_output_made_by_dirty_code_keeps_dirty_after_the_change_is_reverted_and_the_record_rewritten(
    small_pipeline, case, tmp_path, capsys
):
    _workdir, config = small_pipeline
    clone = _clone(tmp_path)
    metrics = clone / "hi4dfix/metrics.py"
    clean = metrics.read_text()
    metrics.write_text(clean + "\n# a local change, made and then reverted\n")
    raw = "results/v0/nvs/raw/hi4d_pair15_fight.csv"
    _snakemake(clone, case, config, "--force", raw)
    metrics.write_text(clean)  # reverted: the checkout is clean again
    config = {**config, "stats": {**config["stats"], "seed": config["stats"]["seed"] + 1}}
    _snakemake(clone, case, config, "results/v0/deltas.csv")  # an unrelated rerun rewrites the record
    stamp = read_stamp(case / f"{raw}.stamp.json")
    assert stamp["code"]["dirty"] is True and len(stamp["code"]["diff_sha256"]) == 64
    sealed = record(case)
    assert sealed["code"]["mixed"] is True and sealed["code"]["dirty"] is True
    dirty_states = [key for key, outputs in sealed["code"]["states"].items() if raw in outputs]
    assert len(dirty_states) == 1 and "dirty" in dirty_states[0]
    assert read_stamp(case / "results/v0/deltas.csv.stamp.json")["code"]["dirty"] is False
    code, out = check(case, capsys)
    assert code == 1 and "code: the outputs came from" in out
    line = next(line for line in out.splitlines() if "code: the outputs came from" in line)
    assert f"dirty, diff {stamp['code']['diff_sha256'][:12]}): {raw}" in line
