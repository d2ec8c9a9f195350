"""The Slurm profile, and the workflow on a real Slurm: a single-node cluster on localhost.

Profile checks are dry runs and need no cluster. The cluster tests (marker `slurm`) start one with
tests/slurm/local_slurm.sh and run a six-scene study without the control arm, up to the triplets and
one reserved scene's NVS tables, through `--profile profiles/slurm --workflow-profile
profiles/test-slurm` (the override asks for no GPU: the test node has none). They check that every
job went through sbatch (the scheduler's own records: squeue, kept by a high MinJobAge, and
scontrol), that a job killed by scancel is reported as failed and a re-run does only what is
missing, and that the outputs equal a local run's.

They need root and Debian's Slurm packages (the script installs them with apt-get when missing) and
are skipped otherwise. Deselect them with `pytest -m "not slurm"`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from workflow_helpers import REPO, planned_jobs, run_snakemake, small_config

SCRIPT = REPO / "tests" / "slurm" / "local_slurm.sh"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
CONF_MARKER = "# written by hi4dfix tests/slurm/local_slurm.sh"
PARTITION = "hi4dfix"  # the test cluster's partition; the profile asks for it through the env var
PROFILE_ARGS = (
    "--profile", str(REPO / "profiles" / "slurm"),
    "--workflow-profile", str(REPO / "profiles" / "test-slurm"),
)  # fmt: skip
# the job killed by scancel: a render of the reserved scene (its NVS evaluations wait for it)
CANCELLED_RULE, CANCELLED_SCENE = "render_scene", "hi4d_pair15_fight"
# What the checks compare, and no more (each Slurm job starts its own Snakemake): the triplets
# (tuning's input) and the cancelled scene's NVS table of each arm, which need the base, the tuned
# model and the re-done render. The delta table and the report items are the local runs' (small_pipeline).
TARGETS = (
    "results/v0/triplets.json",
    *(f"results/v0/nvs/{arm}/{CANCELLED_SCENE}.csv" for arm in ("raw", "base", "tuned")),
)


def study_config() -> dict:
    """The small config with six scenes (train, DiFix eval, the four reserved, which no config may
    drop) and no control arm (tested by test_control and test_extra_arms): fewer Slurm jobs."""
    config = small_config()
    config["difix"]["control"]["enabled"] = False
    reserved = config["policy"]["reserved_scenes"]
    config["data"]["scenes"] = ["hi4d_pair00_dance", "hi4d_pair02_dance", *reserved]
    version = config["versions"]["v0"]
    version.update(
        difix_train=["hi4d_pair00_dance"],
        difix_eval=["hi4d_pair02_dance"],
        nvs_eval=list(reserved),
        expected_outputs=[],
    )
    return config


# ---- the profile (dry runs) ---------------------------------------------------------------------

# Every rule Slurm runs is one or the other; a new rule must be added here and to both profiles.
GPU_RULES = {
    "render_scene", "pretrain_difix_base", "tune_difix", "tune_control", "evaluate_difix", "evaluate_nvs",
    "triplet_gallery", "control_triplets",
}  # fmt: skip
CPU_RULES = {
    "synthesize_sequence", "materialize_scene", "check_reserved_content", "check_control_content", "build_triplets",
    "render_quality", "eval_deltas",
    "provenance", "delta_table", "versions_table", "version_card", "metric_charts", "before_after_views", "loss_curve",
}  # fmt: skip
SITE_ENV = {
    "HI4DFIX_SLURM_PARTITION": "gpu-long",
    "HI4DFIX_SLURM_ACCOUNT": "proj42",
    "HI4DFIX_SLURM_GPU_MODEL": "h100",
    "HI4DFIX_SLURM_EXTRA": "--mail-type=FAIL",
}


def planned_resources(stdout: str) -> dict[str, dict[str, str]]:
    """Rule -> the resources of its first job in a dry run's job listing.

    Local rules and `all` (a target without action) are left out: they are never submitted.
    """
    resources: dict[str, dict[str, str]] = {}
    rule = None
    for line in stdout.splitlines():
        header = re.match(r"^(local)?rule (\w+):$", line)
        if header:
            rule = None if header.group(1) or header.group(2) == "all" else header.group(2)
        elif rule and line.strip().startswith("resources:") and rule not in resources:
            items = line.split("resources:", 1)[1].split(", ")
            resources[rule] = dict(item.strip().split("=", 1) for item in items)
    return resources


def dry_run_resources(tmp_path, monkeypatch, env: dict[str, str], *profile_args: str) -> dict[str, dict[str, str]]:
    for name in SITE_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # a dry run scales threads down to the local cores; a cluster run does not
    result = run_snakemake(tmp_path, small_config(), *profile_args, "--cores", "64", "-n", "all")
    return planned_resources(result.stdout)


def test_profile_asks_gpus_for_gpu_rules_and_reads_the_site_from_the_environment(tmp_path, monkeypatch):
    resources = dry_run_resources(tmp_path, monkeypatch, SITE_ENV, "--profile", str(REPO / "profiles" / "slurm"))
    assert set(resources) == GPU_RULES | CPU_RULES, "classify new rules as GPU or CPU rules in the profiles"
    for rule, values in resources.items():
        assert values["slurm_partition"] == "gpu-long" and values["slurm_account"] == "proj42"
        assert values["slurm_extra"] == "--mail-type=FAIL"
        if rule in GPU_RULES:
            assert values["gpu_model"] == "h100"
            assert values["gpu"] == ("2" if rule in ("tune_difix", "tune_control") else "1")
        else:
            assert values.get("gpu", "0") == "0" and "gpu_model" not in values
    assert resources["tune_difix"]["cpus_per_task"] == resources["tune_control"]["cpus_per_task"] == "8"
    assert resources["materialize_scene"]["cpus_per_task"] == "1"


def test_profile_without_site_variables_leaves_partition_and_account_to_slurm(tmp_path, monkeypatch):
    resources = dry_run_resources(tmp_path, monkeypatch, {}, "--profile", str(REPO / "profiles" / "slurm"))
    assert set(resources) == GPU_RULES | CPU_RULES
    for values in resources.values():
        # empty values: the plugin then uses the default partition and guesses the account
        assert values["slurm_partition"] == "" and values["slurm_account"] == ""
        assert values.get("gpu_model", "") == "" and values["slurm_extra"] == ""


def test_test_override_drops_every_gpu_request(tmp_path, monkeypatch):
    resources = dry_run_resources(tmp_path, monkeypatch, {}, *PROFILE_ARGS)
    assert set(resources) == GPU_RULES | CPU_RULES, "classify new rules as GPU or CPU rules in the profiles"
    for values in resources.values():
        assert values.get("gpu", "0") == "0"
        assert int(values["cpus_per_task"]) <= 2 and int(values["mem_mb"]) <= 2000


# ---- the cluster -------------------------------------------------------------------------------


def why_no_cluster() -> str | None:
    if os.geteuid() != 0:
        return "needs root: starts munged, slurmctld and slurmd"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "Slurm is not installed and there is no apt-get to install it"
    if SLURM_CONF.exists() and CONF_MARKER not in SLURM_CONF.read_text().splitlines():
        return f"{SLURM_CONF} belongs to a real Slurm installation; not replacing it"
    return None


@dataclass(frozen=True)
class Cluster:
    scratch: Path
    partition: str


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    reason = why_no_cluster()
    if reason:
        pytest.skip(reason)
    scratch = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ, HI4DFIX_SLURM_PARTITION=PARTITION)
    # installing the packages (first run on a fresh machine) takes a couple of minutes
    started = subprocess.run(
        ["bash", str(SCRIPT), "start", str(scratch)], env=env, capture_output=True, text=True, timeout=900
    )
    try:
        assert started.returncode == 0, f"local_slurm.sh start failed:\n{started.stdout}\n{started.stderr}"
        yield Cluster(scratch=scratch, partition=PARTITION)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(scratch)], capture_output=True, text=True, timeout=120)


def squeue_records(*, name: str | None = None) -> list[dict[str, str]]:
    """Every job slurmctld still knows (finished ones included: MinJobAge is a day)."""
    command = ["squeue", "--states=all", "--noheader", "--format=%i|%T|%j|%k|%P"]
    if name:
        command += ["--name", name]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout
    keys = ("id", "state", "name", "comment", "partition")
    return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]


def scontrol_job(job_id: str) -> str:
    return subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def rule_of(comment: str) -> str:
    """The plugin's job comment is rule_<rule>[_wildcards_<values>]."""
    return re.sub(r"^rule_", "", comment).split("_wildcards_")[0]


def run_id(result: subprocess.CompletedProcess) -> str:
    """The plugin names all jobs of one Snakemake run after its run id."""
    match = re.search(r"SLURM run ID: (\S+)", result.stdout + result.stderr)
    assert match, f"no SLURM run ID in the output:\n{result.stderr[-3000:]}"
    return match.group(1)


# ---- the runs ----------------------------------------------------------------------------------


def run_and_cancel(workdir: Path, config: dict, rule: str, scene: str) -> tuple[subprocess.CompletedProcess, str]:
    """Run the workflow through Slurm and scancel the job of `rule` on `scene` while it runs."""
    known = {record["id"] for record in squeue_records()}
    outcome: dict[str, subprocess.CompletedProcess] = {}
    runner = threading.Thread(
        target=lambda: outcome.setdefault(
            "result", run_snakemake(workdir, config, *PROFILE_ARGS, *TARGETS, check=False, timeout=900)
        )
    )
    runner.start()
    cancelled = None
    while runner.is_alive() and cancelled is None:
        for record in squeue_records():
            if (
                record["id"] not in known
                and rule_of(record["comment"]) == rule
                and scene in record["comment"]
                and record["state"] == "RUNNING"
            ):
                subprocess.run(["scancel", record["id"]], check=True, timeout=30)
                cancelled = record["id"]
                break
        time.sleep(0.2)
    runner.join()
    assert cancelled is not None, f"never saw a {rule} job of {scene} running"
    return outcome["result"], cancelled


@dataclass
class SlurmRuns:
    local: Path
    workdir: Path
    planned: dict[str, int]
    first: subprocess.CompletedProcess
    cancelled_id: str
    replanned: dict[str, int]
    second: subprocess.CompletedProcess


BASE_OUTPUTS = "results/difix_base"  # the pretrained base: the small study's, same difix.pretrain


def reuse_base(source: Path, workdir: Path) -> None:
    """Copy the base pretrained by `source`'s run, with Snakemake's records of it, into `workdir`: a run
    there reuses it (pretraining is most of a local run) while its settings are unchanged."""
    shutil.copytree(source / BASE_OUTPUTS, workdir / BASE_OUTPUTS)
    metadata = workdir / ".snakemake" / "metadata"
    metadata.mkdir(parents=True)
    for record in (source / ".snakemake" / "metadata").iterdir():
        if base64.urlsafe_b64decode(record.name).decode().startswith(f"{BASE_OUTPUTS}/"):
            shutil.copy2(record, metadata / record.name)


@pytest.fixture(scope="module")
def slurm_runs(slurm_cluster, small_pipeline, tmp_path_factory) -> SlurmRuns:
    config = study_config()
    base = tmp_path_factory.mktemp("runs")
    local, workdir = base / "local", base / "slurm"
    # the local reference: the small study's locally pretrained base, the rest run here; through
    # Slurm everything runs (the base included)
    reuse_base(small_pipeline[0], local)
    run_snakemake(local, config, "--cores", "2", *TARGETS, timeout=900)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HI4DFIX_SLURM_PARTITION", slurm_cluster.partition)
        planned = planned_jobs(run_snakemake(workdir, config, *PROFILE_ARGS, "-n", *TARGETS))
        first, cancelled_id = run_and_cancel(workdir, config, CANCELLED_RULE, CANCELLED_SCENE)
        replanned = planned_jobs(run_snakemake(workdir, config, *PROFILE_ARGS, "-n", *TARGETS))
        second = run_snakemake(workdir, config, *PROFILE_ARGS, *TARGETS, timeout=900)
    return SlurmRuns(local, workdir, planned, first, cancelled_id, replanned, second)


# ---- checks ------------------------------------------------------------------------------------


@pytest.mark.slurm
def test_every_job_went_through_sbatch(slurm_runs):
    first = squeue_records(name=run_id(slurm_runs.first))
    second = squeue_records(name=run_id(slurm_runs.second))
    ran: dict[str, int] = {}
    for record in first + second:
        ran[rule_of(record["comment"])] = ran.get(rule_of(record["comment"]), 0) + 1
    # every planned job once, and the cancelled one a second time
    expected = dict(slurm_runs.planned)
    expected[CANCELLED_RULE] += 1
    assert ran == expected
    assert {record["partition"] for record in first + second} == {PARTITION}
    states = {record["id"]: record["state"] for record in first + second}
    assert states.pop(slurm_runs.cancelled_id) == "CANCELLED"
    assert set(states.values()) == {"COMPLETED"}


@pytest.mark.slurm
def test_sbatch_asked_for_no_gpu_and_the_rules_cpus(slurm_runs):
    records = squeue_records(name=run_id(slurm_runs.second))
    render = next(r for r in records if rule_of(r["comment"]) == CANCELLED_RULE)
    job = scontrol_job(render["id"])
    assert f"Partition={PARTITION}" in job
    assert f"WorkDir={slurm_runs.workdir}" in job
    assert "gpu" not in job.lower()
    assert re.search(r"NumCPUs=1\b", job)  # test override: render_scene runs with 1 thread


@pytest.mark.slurm
def test_cancelled_job_is_reported_failed_and_rerun_does_only_whats_missing(slurm_runs):
    first = slurm_runs.first.stdout + slurm_runs.first.stderr
    assert slurm_runs.first.returncode != 0
    assert f"SLURM-job '{slurm_runs.cancelled_id}' failed" in first and "CANCELLED" in first
    assert f"Error in rule {CANCELLED_RULE}" in first
    # the cancelled render and what depends on it among the targets (its raw, base and tuned NVS
    # tables); everything else was done by the first run
    assert slurm_runs.replanned == {"render_scene": 1, "evaluate_nvs": 3}
    rerun = squeue_records(name=run_id(slurm_runs.second))
    assert sorted(rule_of(r["comment"]) for r in rerun) == sorted(
        rule for rule, count in slurm_runs.replanned.items() for _ in range(count)
    )
    assert all(CANCELLED_SCENE in r["comment"] for r in rerun)


def _file_digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.slurm
def test_rerun_render_is_byte_identical_to_the_local_one(slurm_runs):
    """The render killed by scancel and redone equals the local run's, file for file."""
    relative = f"results/renders/imperfect/{CANCELLED_SCENE}"
    local = _file_digests(slurm_runs.local / relative)
    assert local and _file_digests(slurm_runs.workdir / relative) == local


def _json_relative(path: Path, root: Path):
    """A JSON file with its workdir prefix removed, so two workdirs compare equal."""
    return json.loads(path.read_text().replace(f"{root}/", "").replace(str(root), "."))


@pytest.mark.slurm
@pytest.mark.parametrize("relative", TARGETS)
def test_outputs_equal_a_local_run(slurm_runs, relative):
    local, remote = slurm_runs.local / relative, slurm_runs.workdir / relative
    if relative.endswith(".json"):
        assert _json_relative(remote, slurm_runs.workdir) == _json_relative(local, slurm_runs.local)
    else:
        # the provenance record's hash differs by design: it names each run's own files and model bytes
        tables = [pd.read_csv(p).drop(columns="provenance_sha256", errors="ignore") for p in (remote, local)]
        pd.testing.assert_frame_equal(*tables, check_exact=True)
