"""The workflow's DAG: policy errors at DAG build, planned jobs, staleness after touching raw input."""

from __future__ import annotations

import copy
import json
import re
import shutil

import numpy as np
import pytest

from workflow_helpers import default_config, planned_jobs, run_snakemake, small_config

V0_SCENES = [
    "hi4d_pair00_dance",
    "hi4d_pair01_talk",
    "hi4d_pair02_dance",
    "hi4d_pair15_fight",
    "hi4d_pair16_jump",
    "hi4d_pair17_dance",
    "hi4d_pair19_piggyback",
]


@pytest.mark.parametrize(
    "changes, expected",
    [
        (
            {"difix_train": ["hi4d_pair00_dance", "hi4d_pair17_dance"]},
            "version v0: reserved scene hi4d_pair17_dance is in difix_train",
        ),
        ({"difix_eval": ["hi4d_pair15_fight"]}, "version v0: reserved scene hi4d_pair15_fight is in difix_eval"),
        (
            {"nvs_eval": ["hi4d_pair15_fight", "hi4d_pair02_dance"]},
            "version v0: nvs_eval must be exactly the reserved scenes",
        ),
        ({"difix_eval": ["hi4d_pair00_dance"]}, "version v0: difix_eval scene hi4d_pair00_dance shares Hi4D pair00"),
        ({"difix_train": ["hi4d_pair77_hug"]}, "unknown scene 'hi4d_pair77_hug'"),
    ],
)
def test_policy_violation_fails_at_dag_build(tmp_path, changes, expected):
    config = default_config()
    config["versions"]["v0"].update(changes)
    result = run_snakemake(tmp_path, config, "--cores", "1", "results/v0/deltas.csv", check=False)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr
    assert not (tmp_path / "results").exists(), "no job may run when the DAG is refused"


def test_a_new_version_is_just_a_block(tmp_path):
    config = default_config()
    v1 = copy.deepcopy(config["versions"]["v0"])
    v1["triplets"]["reference"] = "temporal"
    config["versions"]["v1"] = v1
    result = run_snakemake(tmp_path, config, "-n", "results/v1/deltas.csv")
    jobs = planned_jobs(result)
    assert jobs["build_triplets"] == 1 and jobs["tune_difix"] == 1 and jobs["delta_table"] == 1


def test_dry_run_plans_all_v0_scenes(tmp_path):
    targets = [f"results/scenes/{scene}" for scene in V0_SCENES]
    result = run_snakemake(tmp_path, default_config(), "-n", *targets)
    assert planned_jobs(result) == {"synthesize_sequence": 7, "materialize_scene": 7}
    for scene in V0_SCENES:
        assert f"results/scenes/{scene}" in result.stdout


def test_main_job_plans_every_stage(tmp_path):
    result = run_snakemake(tmp_path, default_config(), "-n", "results/v0/deltas.csv")
    assert planned_jobs(result) == {
        "synthesize_sequence": 7,
        "materialize_scene": 7,
        "render_scene": 7,
        "render_quality": 4,  # the raw renders' quality of each reserved scene, in the delta table
        "check_reserved_content": 1,
        "build_triplets": 1,
        "pretrain_difix_base": 1,
        "tune_difix": 1,
        "tune_control": 1,  # the control arm (difix.control, on in the embedded default)
        "check_control_content": 1,  # its triplets hold no reserved scene's frames
        "control_triplets": 1,  # its fresh out-of-domain triplets
        "evaluate_nvs": 16,  # 4 arms x 4 reserved scenes
        "evaluate_difix": 1,  # the internal evaluation: one of v0's expected outputs
        "eval_deltas": 1,
        "provenance": 1,  # what made the numbers: the delta table names it
        "delta_table": 1,
        # the report items, which the delta table brings into its DAG
        "version_card": 1,
        "metric_charts": 1,
        "before_after_views": 4,
        "triplet_gallery": 1,
        "loss_curve": 1,
    }


def test_control_arm_jobs_are_in_the_dag_only_when_on(tmp_path):
    on = run_snakemake(tmp_path / "on", default_config(), "-n", "results/v0/deltas.csv", "results/v0/difix/eval.csv")
    assert "results/v0/difix/control/model.pkl" in on.stdout
    # the control trains on fresh out-of-domain triplets (control_triplets: no scene is its input)
    assert re.search(r"rule tune_control:\n    input: results/difix_control/triplets.json", on.stdout)
    assert re.search(r"rule control_triplets:\n    output: results/difix_control/triplets.json", on.stdout)
    for scene in V0_SCENES[3:]:
        assert f"results/v0/nvs/control/{scene}.csv" in on.stdout
    config = default_config()
    config["difix"]["control"]["enabled"] = False
    off = run_snakemake(tmp_path / "off", config, "-n", "results/v0/deltas.csv", "results/v0/difix/eval.csv")
    jobs = planned_jobs(off)
    assert "tune_control" not in jobs and "check_control_content" not in jobs and jobs["evaluate_nvs"] == 12
    assert "control_triplets" not in jobs
    control_jobs = {"tune_control": 1, "check_control_content": 1, "control_triplets": 1, "evaluate_nvs": 16}
    assert planned_jobs(on) == {**jobs, **control_jobs}
    assert "difix/control/" not in off.stdout and "nvs/control/" not in off.stdout


def test_control_arm_needs_data_of_its_own_and_never_the_studys(tmp_path):
    config = default_config()
    config["difix"]["control"]["seed"] = config["difix"]["pretrain"]["seed"]  # the base's own scenes again
    result = run_snakemake(tmp_path / "own", config, "-n", "results/v0/deltas.csv", check=False)
    assert result.returncode != 0
    assert "difix.control.seed is 0, difix.pretrain.seed's too" in result.stdout + result.stderr
    # a control triplets file that takes an image from the study's data is refused before any job runs
    workdir = tmp_path / "leak"
    image = workdir / "results/synthetic_hi4d/pair17/dance17/images/4/000000.jpg"
    leak = {"train": {"x/4": {"image": str(image), "target_image": str(image), "ref_image": str(image)}}}
    (workdir / "control.json").parent.mkdir(parents=True)
    (workdir / "control.json").write_text(json.dumps(leak))
    config = default_config()
    config["difix"]["control"]["triplets"] = str(workdir / "control.json")
    result = run_snakemake(workdir, config, "--cores", "1", "results/v0/deltas.csv", check=False)
    assert result.returncode != 0
    assert "train triplet x/4 takes its image from" in result.stdout + result.stderr
    assert "inside data.root" in result.stdout + result.stderr
    assert not (workdir / "results").exists(), "no job may run when the DAG is refused"


def test_touching_one_scenes_raw_input_reruns_only_that_scene(tmp_path):
    config = small_config()
    targets = ["results/scenes/hi4d_pair00_dance", "results/scenes/hi4d_pair15_fight"]
    run_snakemake(tmp_path, config, "--cores", "2", *targets)
    assert planned_jobs(run_snakemake(tmp_path, config, "-n", *targets)) == {}
    # Snakemake compares checksums of small inputs, so a bare `touch` with unchanged content is
    # (deliberately) no change: edit the file as a user fixing their data would.
    meta = tmp_path / "results/synthetic_hi4d/pair15/fight15/meta.npz"
    arrays = dict(np.load(meta, allow_pickle=True))
    arrays["comment"] = np.array("re-exported")
    np.savez(meta, **arrays)
    result = run_snakemake(tmp_path, config, "-n", *targets)
    assert planned_jobs(result) == {"materialize_scene": 1}
    assert "scene=hi4d_pair15_fight" in result.stdout and "scene=hi4d_pair00_dance" not in result.stdout


def test_require_lpips_fails_before_any_job_when_the_backbone_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    config = default_config()
    config["metrics"] = {"require_lpips": True}
    result = run_snakemake(tmp_path, config, "--cores", "1", "results/v0/deltas.csv", check=False)
    assert result.returncode != 0
    assert "metrics.require_lpips is true" in result.stdout + result.stderr
    assert "alexnet" in (result.stdout + result.stderr).lower()
    assert not (tmp_path / "results").exists()


def _add_scene(config, scene, folder=None):
    config["data"]["scenes"].append(scene)
    if folder is not None:
        config["data"]["scene_dirs"][scene] = folder


@pytest.mark.parametrize(
    "scene, folder, split, expected",
    [
        # pair015 would parse as pair 15 and map to pair15/fight15, the reserved scene's folder
        (
            "hi4d_pair015_fight",
            None,
            "difix_train",
            ["data.scenes: scene name 'hi4d_pair015_fight' is not canonical: write it 'hi4d_pair15_fight'"],
        ),
        # another name mapped onto the reserved folder, however the folder is spelled
        *[
            (
                "hi4d_pair03_dance",
                folder,
                "difix_train",
                [
                    "hi4d_pair15_fight and hi4d_pair03_dance resolve to the same sequence folder pair15/fight15",
                    "reserved scene hi4d_pair15_fight's data a DiFix sample (version v0 difix_train)",
                ],
            )
            for folder in ("pair15/fight15", "pair15/fight15/", "./pair15/../pair15/fight15")
        ],
        # a copy of the reserved sequence elsewhere: same Hi4D pair and action
        (
            "hi4d_pair03_dance",
            "copies/pair15/fight15",
            "difix_eval",
            [
                "version v0: difix_eval scene hi4d_pair03_dance (folder copies/pair15/fight15 under data.root) "
                "is the data of reserved scene hi4d_pair15_fight: same Hi4D pair15 action fight"
            ],
        ),
        # pair leakage by identity: a scene named pair03 holding pair01's data evaluates a model trained on pair01
        (
            "hi4d_pair03_dance",
            "copies/pair01/talk01",
            "difix_eval",
            [
                "version v0: difix_eval scene hi4d_pair03_dance shares Hi4D pair01 with "
                "difix_train scene hi4d_pair01_talk"
            ],
        ),
    ],
)
def test_reserved_data_under_another_name_fails_at_dag_build(tmp_path, scene, folder, split, expected):
    config = default_config()
    _add_scene(config, scene, folder)
    v0 = config["versions"]["v0"]
    v0[split] = [*v0[split], scene] if split == "difix_train" else [scene]
    result = run_snakemake(tmp_path, config, "-n", "results/v0/deltas.csv", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for text in expected:
        assert text in output
    assert not (tmp_path / "results").exists()


def test_materialize_names_a_truncated_image_without_a_traceback(synthetic_sequence, tmp_path):
    root = tmp_path / "hi4d"
    shutil.copytree(synthetic_sequence, root / "pair00" / "dance00")
    image = root / "pair00" / "dance00" / "images" / "16" / "000012.jpg"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])  # the header survives: the reader's check passes it
    config = default_config()
    config["data"].update(source="hi4d", root=str(root))
    workdir = tmp_path / "work"
    result = run_snakemake(workdir, config, "--cores", "1", "results/scenes/hi4d_pair00_dance", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"error: {image}: unreadable image (image file is truncated" in output
    assert "Traceback" not in output
    log = (workdir / "results/logs/materialize_scene/hi4d_pair00_dance.log").read_text()
    assert "Traceback" in log and str(image) in log  # the job log keeps the details
    assert not (workdir / "results/scenes/hi4d_pair00_dance").exists()


@pytest.mark.parametrize(
    "change, first_line",
    [
        (
            lambda config: config["versions"]["v0"]["tuning"].update(lr=-1),
            "config key versions.v0.tuning.lr: -1 is less than or equal to the minimum of 0 "
            "(schema workflow/schemas/config.schema.yaml)",
        ),
        (
            lambda config: config["versions"]["v0"].update(tunning={"steps": 3}),
            "config key versions.v0: Additional properties are not allowed ('tunning' was unexpected); "
            "allowed keys: objective, decisions",
        ),
    ],
)
def test_schema_errors_start_with_the_failing_key(tmp_path, change, first_line):
    """Snakemake's own report printed the failing sub-schema (60-150 lines) before the useful line."""
    config = default_config()
    change(config)
    result = run_snakemake(tmp_path, config, "-n", "results/v0/deltas.csv", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    lines = output.strip().splitlines()
    assert first_line in lines[1], output
    assert len(lines) <= 5 and "Failed validating" not in output


@pytest.mark.parametrize(
    "where, change, expected",
    [
        (
            "triplets",
            {"cams": [16, 99]},
            "version v0: triplets.cams names camera(s) [99] that scene hi4d_pair00_dance does not have",
        ),
        (
            "profile",
            {"source": "external", "external_pattern": "/renders/{scene}.png"},
            "render_profiles.imperfect.external_pattern '/renders/{scene}.png' has no {cam} or {frame}",
        ),
        (
            "profile",
            {"pose_error": {"rot_deg": float("nan"), "trans_mm": 40.0, "part_mm": 30.0, "temporal_offset": 0}},
            "render_profiles.imperfect.pose_error.rot_deg is nan",
        ),
    ],
)
def test_settings_that_would_quietly_go_wrong_fail_at_dag_build(tmp_path, where, change, expected):
    config = default_config()
    block = config["versions"]["v0"]["triplets"] if where == "triplets" else config["render_profiles"]["imperfect"]
    block.update(change)
    result = run_snakemake(tmp_path, config, "-n", "results/v0/deltas.csv", check=False)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_gpu_resources_only_where_the_machine_has_a_gpu(tmp_path, monkeypatch):
    # a CPU machine: no job header shows gpu=, and tuning launches on the CPU (--gpus 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cpu = run_snakemake(tmp_path / "cpu", small_config(), "-n", "-p", "results/v0/deltas.csv").stdout
    assert "gpu=" not in cpu and "hi4dfix.difix.launch --gpus 0 --" in cpu
    # a machine with a GPU: the GPU rules ask for one (a profile may ask for more: the Slurm profile's)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    gpu = run_snakemake(tmp_path / "gpu", small_config(), "-n", "-p", "results/v0/deltas.csv").stdout
    # + the one-job GPU rules: pretraining, tuning, control tuning, control_triplets, internal evaluation, gallery
    assert gpu.count("gpu=1") == cpu.count("rule render_scene:") + cpu.count("rule evaluate_nvs:") + 6
    assert "hi4dfix.difix.launch --gpus 1 --" in gpu


def _linked_tree(synthetic_sequence, tmp_path):
    """A Hi4D root whose pair00/dance00 is a link into a store, pair01/talk01 a folder of its own."""
    root, store = tmp_path / "hi4d", tmp_path / "store_a" / "pair00" / "dance00"
    shutil.copytree(synthetic_sequence, store)
    (root / "pair00").mkdir(parents=True)
    (root / "pair00" / "dance00").symlink_to(store, target_is_directory=True)
    shutil.copytree(synthetic_sequence, root / "pair01" / "talk01")
    config = default_config()
    config["data"].update(source="hi4d", root=str(root))
    return root, config


SOURCE_SCENES = ["results/scenes/hi4d_pair00_dance", "results/scenes/hi4d_pair01_talk"]


def test_a_re_pointed_sequence_folder_reruns_that_scene_only(synthetic_sequence, tmp_path):
    """The same data.root and the same file times (a copy with copy2), but another tree behind a link:
    materialize's source_dir param (the folder, links followed) reruns that scene and nothing else."""
    root, config = _linked_tree(synthetic_sequence, tmp_path)
    workdir = tmp_path / "work"
    run_snakemake(workdir, config, "--cores", "2", *SOURCE_SCENES)
    assert planned_jobs(run_snakemake(workdir, config, "-n", *SOURCE_SCENES)) == {}
    moved = tmp_path / "store_b" / "pair00" / "dance00"
    shutil.copytree(tmp_path / "store_a" / "pair00" / "dance00", moved)  # times kept: the files look the same
    (root / "pair00" / "dance00").unlink()
    (root / "pair00" / "dance00").symlink_to(moved, target_is_directory=True)
    result = run_snakemake(workdir, config, "-n", *SOURCE_SCENES)
    assert planned_jobs(result) == {"materialize_scene": 1}
    assert "scene=hi4d_pair00_dance" in result.stdout and "scene=hi4d_pair01_talk" not in result.stdout
    # what follows the scene is replanned with it
    result = run_snakemake(workdir, config, "-n", "results/renders/imperfect/hi4d_pair00_dance")
    assert planned_jobs(result) == {"materialize_scene": 1, "render_scene": 1}


@pytest.mark.parametrize("state", ["is empty", "does not exist"])
def test_an_empty_or_missing_sequence_folder_is_refused_at_dag_build(synthetic_sequence, tmp_path, state):
    """Even with the scene materialized from the old tree: Snakemake alone would keep that one silently."""
    root, config = _linked_tree(synthetic_sequence, tmp_path)
    workdir = tmp_path / "work"
    run_snakemake(workdir, config, "--cores", "2", *SOURCE_SCENES)
    folder = root / "pair01" / "talk01"
    shutil.rmtree(folder)
    if state == "is empty":
        folder.mkdir()
    result = run_snakemake(workdir, config, "-n", *SOURCE_SCENES, check=False)
    assert result.returncode != 0
    assert (
        f"scene hi4d_pair01_talk: its sequence folder {folder} {state}; data.root is '{root}' and the folder is "
        "its default folder 'pair01/talk01' under it: point data.root (or data.scene_dirs.hi4d_pair01_talk) at the "
        "Hi4D tree that holds the sequence"
    ) in result.stdout + result.stderr


def test_each_training_seed_trains_once_and_shares_everything_upstream(tmp_path):
    # tuning.seeds [0, 1, 2]: the one-seed DAG, plus per further seed a tuned and a control run, their NVS
    # on the 4 reserved scenes and their internal evaluation; renders, triplets, base, raw/base arms shared
    targets = ("results/v0/deltas.csv", "results/v0/difix/eval_deltas.csv")
    one = planned_jobs(run_snakemake(tmp_path / "one", small_config(), "-n", *targets))
    config = small_config()
    config["versions"]["v0"]["tuning"]["seeds"] = [0, 1, 2]
    result = run_snakemake(tmp_path / "three", config, "-n", "-p", *targets)
    reserved = len(config["versions"]["v0"]["nvs_eval"])
    assert planned_jobs(result) == {
        **one, "tune_difix_seed": 2, "tune_control_seed": 2, "evaluate_nvs_seed": 2 * 2 * reserved,
        "evaluate_difix_seed": 2,
    }  # fmt: skip
    for seed in (1, 2):
        assert f"--seed {seed} " in result.stdout  # the run of that seed: the trainer's --seed
        assert f"results/v0/difix/seed{seed}/model.pkl" in result.stdout
        assert f"results/v0/nvs/control/seed{seed}/hi4d_pair15_fight.csv" in result.stdout
