"""Provenance of a version's numbers: written from the files that made them, and checked against
the disk (`hi4dfix provenance check`), which fails once one byte of a prediction changes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hi4dfix.cli import main
from hi4dfix.io import write_image
from hi4dfix.provenance import (
    ProvenanceError,
    build_provenance,
    check_provenance,
    code_state,
    config_sha256,
    package_versions,
    read_provenance,
    scene_fingerprint,
    tag_table,
    write_provenance,
)
from hi4dfix.report.card import version_card_html
from hi4dfix.stamps import NOT_INSTALLED, PACKAGES
from hi4dfix.study import Version

SCENES = ["hi4d_pair00_dance", "hi4d_pair15_fight"]
ARMS = ("raw", "base", "tuned")


def make_version(root: Path) -> dict:
    """A version's files as the workflow lays them out, under ``root`` (the working directory)."""
    rng = np.random.default_rng(0)
    for scene in SCENES:
        folder = root / "results" / "scenes" / scene
        folder.mkdir(parents=True)
        (folder / "fingerprint.json").write_text(json.dumps({"content_sha256": f"sha-of-{scene}", "images": []}))
    (root / "results/difix_base/tiny").mkdir(parents=True)
    (root / "results/difix_base/tiny/model.pkl").write_bytes(b"base weights")
    (root / "results/v0/difix").mkdir(parents=True)
    (root / "results/v0/difix/model.pkl").write_bytes(b"tuned weights")
    arm_csvs = {}
    for arm in ARMS:
        arm_csvs[arm] = []
        for scene in SCENES[1:]:
            csv = Path("results/v0/nvs") / arm / f"{scene}.csv"
            (root / csv).parent.mkdir(parents=True, exist_ok=True)
            (root / csv).write_text("frame,cam,psnr\n0,4,20.0\n")
            for cam in (4, 28):
                write_image(root / csv.with_suffix("") / str(cam) / "000000.png", rng.random((8, 8, 3)))
            arm_csvs[arm].append(str(csv))
    return {
        "resolved_config": {"version": {"name": "v0", "tuning": {"steps": 4}}, "stats": {"n_resamples": 100}},
        "base_spec": "results/difix_base/tiny/model.pkl",
        "tuned_model": "results/v0/difix/model.pkl",
        "scene_fingerprints": {s: f"results/scenes/{s}/fingerprint.json" for s in SCENES},
        "arm_csvs": arm_csvs,
    }


@pytest.fixture
def version(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inputs = make_version(tmp_path)
    record = build_provenance(**inputs)
    write_provenance("results/v0/provenance.json", record)
    return tmp_path, inputs, record


def test_provenance_records_code_config_packages_weights_scenes_and_predictions(version):
    root, inputs, record = version
    path, read = read_provenance("results/v0")
    assert read == json.loads(json.dumps(record)) and path == Path("results/v0/provenance.json")
    assert set(record["code"]) >= {"commit", "dirty"}
    assert record["config"]["sha256"] == config_sha256(inputs["resolved_config"])
    assert config_sha256({"b": 1, "a": (1, 2)}) == config_sha256({"a": [1, 2], "b": 1})
    assert set(record["packages"]) == {"python", *PACKAGES} >= {"torch", "diffusers", "transformers", "peft"}
    assert record["packages"]["torch"] != NOT_INSTALLED
    import hashlib

    assert record["weights"]["tuned"]["sha256"] == hashlib.sha256(b"tuned weights").hexdigest()
    assert record["weights"]["base"]["sha256"] == hashlib.sha256(b"base weights").hexdigest()
    assert record["scenes"]["hi4d_pair15_fight"]["content_sha256"] == "sha-of-hi4d_pair15_fight"
    for arm in ARMS:
        files = record["predictions"][arm]["files"]
        assert len(files) == 3  # the scene's CSV and its two saved views
        assert f"results/v0/nvs/{arm}/hi4d_pair15_fight/4/000000.png" in files
    assert len({record["predictions"][arm]["sha256"] for arm in ARMS}) == 3
    assert check_provenance("results/v0") == []
    assert main(["provenance", "check", "results/v0"]) == 0


def test_check_fails_after_one_byte_of_a_prediction_changes(version, capsys):
    root, _inputs, _record = version
    image = root / "results/v0/nvs/tuned/hi4d_pair15_fight/28/000000.png"
    data = bytearray(image.read_bytes())
    data[-20] ^= 0x01
    image.write_bytes(bytes(data))
    problems = check_provenance("results/v0")
    assert len(problems) == 1
    assert "arm tuned: results/v0/nvs/tuned/hi4d_pair15_fight/28/000000.png changed" in problems[0]
    assert main(["provenance", "check", "results/v0"]) == 1
    assert "28/000000.png changed" in capsys.readouterr().out


def test_check_names_missing_new_and_changed_files(version):
    root, _inputs, _record = version
    (root / "results/v0/nvs/raw/hi4d_pair15_fight.csv").unlink()
    write_image(root / "results/v0/nvs/base/hi4d_pair15_fight/16/000000.png", np.zeros((8, 8, 3)))
    (root / "results/v0/difix/model.pkl").write_bytes(b"other weights")
    fingerprint = root / "results/scenes/hi4d_pair00_dance/fingerprint.json"
    fingerprint.write_text(json.dumps({"content_sha256": "changed"}))
    problems = "\n".join(check_provenance("results/v0"))
    assert "arm raw: results/v0/nvs/raw/hi4d_pair15_fight.csv is missing" in problems
    assert "arm base: results/v0/nvs/base/hi4d_pair15_fight/16/000000.png is new" in problems
    assert "tuned weights: results/v0/difix/model.pkl changed" in problems
    assert "scene hi4d_pair00_dance: content fingerprint changed" in problems
    # checked from elsewhere, the paths resolve against --root
    assert main(["provenance", "check", str(root / "results/v0"), "--root", str(root)]) == 1


def test_missing_fingerprint_and_bad_records_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ProvenanceError, match="fingerprint.json does not exist.*materialize rule"):
        scene_fingerprint(tmp_path / "fingerprint.json")
    (tmp_path / "fingerprint.json").write_text("{}")
    with pytest.raises(ProvenanceError, match="content_sha256"):
        scene_fingerprint(tmp_path / "fingerprint.json")
    assert main(["provenance", "check", str(tmp_path)]) == 1
    assert "provenance.json does not exist" in capsys.readouterr().err


def test_package_versions_say_not_installed_and_code_state_sees_a_dirty_tree(tmp_path):
    assert package_versions(("torch", "no-such-package-hi4dfix"))["no-such-package-hi4dfix"] == NOT_INSTALLED
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.txt").write_text("a")
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    clean = code_state(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (tmp_path / "a.txt").write_text("b")
    assert code_state(tmp_path) == {"commit": clean["commit"], "dirty": True}
    assert code_state(tmp_path / "nowhere")["commit"] is None


def test_delta_table_and_card_name_the_provenance(version):
    root, _inputs, record = version
    table = tag_table(pd.DataFrame({"scene": ["mean"], "delta": [0.1]}), "results/v0/provenance.json")
    assert table["provenance"].tolist() == ["results/v0/provenance.json"]
    assert "provenance_sha256" not in table  # the record is sealed after the table: it hashes the table
    card = version_card_html(
        Version("v0", "objective", ("a",), ("b",), ("c",), "imperfect"), [], {}, None,
        provenance=("results/v0/provenance.json", record),
    )  # fmt: skip
    assert "<h2>Provenance</h2>" in card and record["config"]["sha256"] in card
    assert record["predictions"]["tuned"]["sha256"] in card and "sha-of-hi4d_pair00_dance" in card


def test_digests_and_canonical_json_keep_the_bytes_recorded_before_they_had_one_helper(tmp_path):
    """Recorded digests (provenance, source files, run folder keys, compile cache keys) must not move."""
    import hashlib

    from hi4dfix.io import canonical_json, sha256_file

    data = {"b": [1, (2, 3)], "a": {"y": None, "x": 1.5}}
    assert canonical_json(data) == '{"a": {"x": 1.5, "y": null}, "b": [1, [2, 3]]}'
    assert canonical_json(data, compact=True, default=list) == '{"a":{"x":1.5,"y":null},"b":[1,[2,3]]}'
    assert canonical_json({"p": Path("a/b")}, default=str) == '{"p": "a/b"}'
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 5000)  # more than one 1 MiB block
    assert sha256_file(big) == hashlib.sha256(big.read_bytes()).hexdigest()


def test_stamps_take_the_code_state_with_a_diff_hash_and_name_inputs_settings_and_output(tmp_path):
    from hi4dfix.stamps import StampError, code_key, read_stamp, write_stamp
    from hi4dfix.stamps import code_state as stamp_code_state

    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    repo = tmp_path / "repo"
    (repo / "hi4dfix").mkdir()
    (repo / "hi4dfix/a.py").write_text("a = 1\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    clean = stamp_code_state(repo)
    assert clean["dirty"] is False and code_key(clean).endswith("(clean)")
    (repo / "hi4dfix/a.py").write_text("a = 2\n")
    changed = stamp_code_state(repo)
    (repo / "hi4dfix/a.py").write_text("a = 3\n")
    other = stamp_code_state(repo)
    assert changed["dirty"] and changed["diff_sha256"] != other["diff_sha256"] != clean["diff_sha256"]
    (repo / "hi4dfix/a.py").write_text("a = 1\n")
    (repo / "hi4dfix/new.py").write_text("b = 1\n")  # an untracked module changes what runs
    untracked = stamp_code_state(repo)
    assert untracked["dirty"] and untracked["diff_sha256"] != clean["diff_sha256"]
    assert code_key(untracked) != code_key(clean)

    out, inp = tmp_path / "out.csv", tmp_path / "in.csv"
    out.write_text("x\n1\n")
    inp.write_text("y\n2\n")
    (path,) = write_stamp(out, [inp], {"b": (1, 2), "a": tmp_path}, code=changed)
    stamp = read_stamp(path)
    assert path == f"{out}.stamp.json" and stamp["code"] == changed
    assert stamp["output"]["sha256"] == __import__("hashlib").sha256(b"x\n1\n").hexdigest()
    assert set(stamp["inputs"]) == {str(inp)} and stamp["settings"] == {"a": str(tmp_path), "b": [1, 2]}
    with pytest.raises(StampError, match="missing.csv does not exist"):
        write_stamp(tmp_path / "missing.csv", [], {})


def test_stamps_record_the_jobs_packages_and_the_sealed_record_names_what_differs(tmp_path):
    """Each stamp holds its job's package versions; the sealed record groups the outputs by package set and
    the check's note names the package that differs and the outputs of each set (a stamp of an older
    format, without packages, is a set of its own)."""
    from hi4dfix.provenance import package_note, package_states, seal_provenance
    from hi4dfix.stamps import packages_key, read_stamp, write_stamp

    outputs = []
    for name in ("model.pkl", "eval.csv", "nvs.csv", "old.csv"):
        outputs.append(tmp_path / name)
        outputs[-1].write_text(name)
    code = {"commit": "a" * 40, "dirty": False, "diff_sha256": "0" * 64}
    paths = write_stamp(outputs[:3], [], {}, code=code)
    stamps = {path: read_stamp(path) for path in paths}
    here = stamps[paths[0]]["packages"]
    assert set(here) == {"python", *PACKAGES} and here["torch"] != NOT_INSTALLED and here["numpy"] != NOT_INSTALLED
    one = package_states(stamps)
    assert one["mixed"] is False and list(one["states"]) == [packages_key(here)]
    assert package_note(one).startswith(f"packages: every output came from one package set ({packages_key(here)}: ")

    # the tuned model made elsewhere, with another transformers; an output stamped before stamps held packages
    elsewhere = {**here, "transformers": "9.9.9"}
    stamps[paths[0]] = {**stamps[paths[0]], "packages": elsewhere}
    old = {k: v for k, v in stamps[paths[1]].items() if k != "packages"}
    stamps["old.csv.stamp.json"] = {**old, "output": {"path": str(outputs[3]), "sha256": "-"}}
    mixed = package_states(stamps)
    assert mixed["mixed"] is True
    assert set(mixed["states"]) == {packages_key(here), packages_key(elsewhere), "unrecorded"}
    assert mixed["states"][packages_key(elsewhere)]["outputs"] == [str(outputs[0])]
    note = package_note(mixed)
    assert note.startswith("packages: the outputs came from 3 package sets, which differ in ")
    in_order = " | ".join(str(state["packages"].get("transformers", "-")) for state in mixed["states"].values())
    assert sorted(in_order.split(" | ")) == sorted([here["transformers"], "9.9.9", "-"])
    assert f"transformers ({in_order})" in note
    assert f"{packages_key(elsewhere)}: {outputs[0]}" in note and f"unrecorded: {outputs[3]}" in note
    assert "torch (" in note  # the unrecorded set differs in every package

    sealed = seal_provenance({"format": 1}, paths, [], [], {})
    assert sealed["compute_packages"] == package_states({path: read_stamp(path) for path in paths})


def test_a_grids_compare_table_is_recomputed_from_its_stamp_and_an_edited_cell_fails(tmp_path, monkeypatch, capsys):
    import dataclasses

    from hi4dfix.provenance import check_grid, grid_compare_table
    from hi4dfix.stamps import write_stamp
    from hi4dfix.tables import write_csv
    from test_compare import CFG, SCENES, write_eval, write_tuned

    monkeypatch.chdir(tmp_path)
    root = Path("results")
    names = ["v0", "g.b", "g.a"]  # not sorted: the rows keep the grid's order
    tables = {n: [str(Path(p)) for p in write_tuned(root, n, lambda s, f, c, k=i: 20.0 + k + 0.1 * c + 0.3 * f)]
              for i, n in enumerate(names)}  # fmt: skip
    internal = {n: write_eval(root, n, lambda s, f, c, k=i: 19.0 + k + 0.1 * f) for i, n in enumerate(names)}
    provenance = {}
    for n in names:
        provenance[n] = f"results/{n}/provenance.json"
        Path(provenance[n]).write_text(json.dumps({"format": 1}))
    settings = {
        "parent": "v0", "scenes": list(SCENES), "tables": tables, "internal": internal, "provenance": provenance,
        "settings": {"g.b": "b", "g.a": "a"}, "references": [], "variant_order": ["g.b", "g.a"],
        "bootstrap": dataclasses.asdict(CFG),
    }  # fmt: skip
    csv = "results/ablations/g/compare.csv"
    write_csv(csv, grid_compare_table("g", settings))
    inputs = [p for paths in tables.values() for p in paths] + list(internal.values()) + list(provenance.values())
    write_stamp(csv, inputs, settings)
    assert check_grid(csv) == []
    assert main(["provenance", "check", "results/ablations/g"]) == 0
    table = pd.read_csv(csv)
    assert table["variant"].drop_duplicates().tolist()[:2] == ["g.b", "g.a"]
    table.loc[0, "delta"] += 1.0
    table.to_csv(csv, index=False)
    problems = "\n".join(check_grid(csv))
    assert f"compare table: {csv} changed since its job stamped it" in problems
    assert f"compare table: {csv} differs from its recomputation (row 0 delta" in problems
    assert main(["provenance", "check", "results/ablations/g"]) == 1
