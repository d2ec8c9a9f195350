"""Retraining through the Snakemake command line on the small study: a changed split trains fresh
(never from the old split's checkpoint), and no rerun, failed or not, loses the last good model."""

from __future__ import annotations

import copy
import os

import pandas as pd
import pytest
import torch

from hi4dfix.difix.runs import last_good_model, past_runs
from workflow_helpers import run_snakemake, small_config

MODEL = "results/v0/difix/model.pkl"
WORK = "results/v0/difix/work"
TUNE_LOG = "results/logs/tune_difix/v0.log"


@pytest.fixture(scope="module")
def tuned_once(tmp_path_factory):
    """The small study's tuned model, built once (Snakemake's command line, 2 cores), from a fresh
    tiny base: what these tests look at is the tuning, and pretraining a base takes minutes."""
    workdir = tmp_path_factory.mktemp("retraining")
    config = small_config()
    config["difix"]["base"] = "tiny-random"
    run_snakemake(workdir, config, "--cores", "2", MODEL)
    return workdir, config


def unet_weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict_unet"]


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_changed_split_trains_fresh_and_keeps_the_previous_model(tuned_once):
    workdir, config = tuned_once
    (first,) = past_runs(workdir / WORK)
    assert os.path.samefile(workdir / MODEL, first.model)  # the output is the run folder's model
    first_weights = unet_weights(first.model)
    first_log = pd.read_csv(workdir / "results/v0/difix/train_log.csv")

    changed = copy.deepcopy(config)
    changed["versions"]["v0"]["difix_train"] = ["hi4d_pair00_dance"]
    run_snakemake(workdir, changed, "--cores", "2", MODEL)

    log = (workdir / TUNE_LOG).read_text()
    second = next(run for run in past_runs(workdir / WORK) if run.folder != first.folder)
    assert "resuming from" not in log
    assert f"starting fresh in {second.folder.relative_to(workdir)}: since the run in" in log
    assert "the training data (triplets and the images they name" in log
    assert f"last good model of this tuning: {first.model.relative_to(workdir)}" in log
    new_log = pd.read_csv(workdir / "results/v0/difix/train_log.csv")
    steps = config["versions"]["v0"]["tuning"]["steps"]
    assert new_log["step"].tolist() == list(range(1, steps + 1))
    assert new_log["loss"].iloc[0] != first_log["loss"].iloc[0]  # step 1 trained on the new split
    assert os.path.samefile(workdir / MODEL, second.model)
    # the previous model is where the log says, unchanged
    assert same_weights(unet_weights(first.model), first_weights)
    assert pd.read_csv(first.folder / "train_log.csv").equals(first_log)


def test_a_failed_rerun_keeps_the_last_good_model_and_shows_the_cause(tuned_once, tmp_path):
    workdir, config = tuned_once
    good = last_good_model(workdir / WORK)
    good_weights = unet_weights(good.model)
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"not a checkpoint")
    changed = copy.deepcopy(config)
    changed["difix"]["base"] = str(broken)

    result = run_snakemake(workdir, changed, "--cores", "2", MODEL, check=False)
    assert result.returncode != 0
    console = result.stdout + result.stderr
    reports = [line for line in console.splitlines() if line.startswith(f"failed job's log {TUNE_LOG}: ")]
    assert len(reports) == 1, console[-3000:]
    assert "CheckpointError" in reports[0] and f"{broken} is not a Difix checkpoint" in reports[0]
    assert "CalledProcessError" not in reports[0]  # the cause, not the launcher's exit
    log = (workdir / TUNE_LOG).read_text()
    assert f"last good model of this tuning: {good.model.relative_to(workdir)}" in log
    assert not (workdir / MODEL).exists()  # Snakemake removed the failed job's output...
    assert same_weights(unet_weights(good.model), good_weights)  # ...the run folder keeps the model
