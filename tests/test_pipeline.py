"""The whole DAG on a small config: the delta table's shape and values, and what a re-run redoes."""

from __future__ import annotations

import copy
import json
import re

import pandas as pd
import pytest

from hi4dfix.tables import read_per_scene_csv
from workflow_helpers import planned_jobs, run_snakemake

RESERVED = ["hi4d_pair15_fight", "hi4d_pair16_jump", "hi4d_pair17_dance", "hi4d_pair19_piggyback"]


@pytest.fixture(scope="module")
def pipeline(small_pipeline):
    return small_pipeline


def test_delta_table_is_tuned_minus_baseline(pipeline):
    workdir, _ = pipeline
    deltas = pd.read_csv(workdir / "results/v0/deltas.csv")
    assert list(deltas.columns) == ["scene", "metric", "raw", "baseline", "tuned", "delta", "improved", "note"]
    assert len(deltas) == (len(RESERVED) + 1) * 3
    assert sorted(set(deltas["scene"])) == sorted(RESERVED + ["mean"])
    for scene in RESERVED:
        means = {
            arm: read_per_scene_csv(workdir / f"results/v0/nvs/{arm}/{scene}.csv").iloc[-1]
            for arm in ("raw", "base", "tuned")
        }
        for metric in ("psnr", "ssim"):
            row = deltas[(deltas.scene == scene) & (deltas.metric == metric)].iloc[0]
            assert row.baseline == pytest.approx(float(means["base"][metric]))
            assert row.tuned == pytest.approx(float(means["tuned"][metric]))
            assert row.raw == pytest.approx(float(means["raw"][metric]))
            assert row.delta == pytest.approx(row.tuned - row.baseline)
            assert bool(row.improved) == (row.delta > 0)
    mean_psnr = deltas[(deltas.scene == "mean") & (deltas.metric == "psnr")].iloc[0]
    scene_psnr = deltas[(deltas.scene != "mean") & (deltas.metric == "psnr")]
    assert mean_psnr.delta == pytest.approx(scene_psnr.delta.mean())
    assert (workdir / "results/v0/deltas.md").read_text().startswith("| scene |")


def test_products_of_every_stage(pipeline):
    workdir, _ = pipeline
    triplets = json.loads((workdir / "results/v0/triplets.json").read_text())
    scenes = {key.split("/")[0] for split in triplets.values() for key in split}
    assert scenes == {"hi4d_pair00_dance", "hi4d_pair01_talk", "hi4d_pair02_dance"}
    for scene in RESERVED:  # reserved scenes are rendered, never DiFix samples
        assert (workdir / f"results/renders/imperfect/{scene}/manifest.json").is_file()
    evaluation = pd.read_csv(workdir / "results/v0/difix/eval.csv")
    assert set(evaluation["arm"]) == {"raw", "base", "tuned"}
    assert set(evaluation["id"].str.split("/").str[0]) == {"hi4d_pair02_dance"}
    train_log = pd.read_csv(workdir / "results/v0/difix/train_log.csv")
    assert train_log["step"].max() == 4
    for rule in ("materialize_scene", "render_scene", "tune_difix", "evaluate_nvs", "delta_table"):
        assert list((workdir / "results/logs" / rule).rglob("*.log")), rule
        assert list((workdir / "results/benchmarks" / rule).rglob("*.tsv")), rule


def test_rerun_does_nothing_and_tuning_change_reruns_only_downstream(pipeline):
    workdir, config = pipeline
    targets = ("results/v0/deltas.csv", "results/v0/difix/eval.csv")
    assert planned_jobs(run_snakemake(workdir, config, "-n", *targets)) == {}
    changed = copy.deepcopy(config)
    changed["versions"]["v0"]["tuning"]["lr"] = config["versions"]["v0"]["tuning"]["lr"] * 2
    jobs = planned_jobs(run_snakemake(workdir, changed, "-n", *targets))
    # the tuned arm and what shows it: the report items made from the tuned model and its outputs
    # (the version card shows the tuning settings), then the delta table; nothing upstream
    assert jobs == {
        "tune_difix": 1, "evaluate_difix": 1, "evaluate_nvs": len(RESERVED), "delta_table": 1,
        "version_card": 1, "metric_charts": 1, "before_after_views": len(RESERVED), "triplet_gallery": 1,
        "loss_curve": 1,
    }


def test_changed_triplet_settings_rebuild_the_triplets_not_the_renders(pipeline):
    workdir, config = pipeline
    changed = copy.deepcopy(config)
    changed["versions"]["v0"].setdefault("triplets", {})["max_samples"] = 2
    jobs = planned_jobs(run_snakemake(workdir, changed, "-n", "results/v0/deltas.csv"))
    assert jobs["build_triplets"] == 1 and jobs["tune_difix"] == 1
    assert not {"materialize_scene", "render_scene", "pretrain_difix_base"} & set(jobs)


def test_every_difix_arm_runs_at_the_tuning_runs_processing_size(pipeline):
    """One config: the size tuning trained at (its log and summary) is the size the base and
    tuned arms ran at in the internal evaluation, the NVS evaluation and the gallery (their logs)."""
    workdir, config = pipeline
    logs = workdir / "results/logs"
    trained = re.findall(r"processing size (\d+)x(\d+) \(HxW\) for (\d+)x(\d+) training images", (logs / "tune_difix/v0.log").read_text())
    assert trained, "the tuning log states its processing size"
    height, width = config["data"]["synthetic"]["height"], config["data"]["synthetic"]["width"]
    size = {(int(h), int(w)) for h, w, *_ in trained}
    assert {(int(h), int(w)) for *_, h, w in trained} == {(height, width)}
    assert size == {(48, 32)}  # long side 48 of the 48x64 (WxH) frames, not their own size
    summary = json.loads((workdir / "results/v0/difix/work/summary.json").read_text())
    assert tuple(summary["resolution"]) in size
    arm_logs = [logs / "evaluate_difix/v0.log", logs / "triplet_gallery/v0.log", *sorted((logs / "evaluate_nvs/v0").glob("[bt]*/*.log"))]
    assert len(arm_logs) == 2 + 2 * len(RESERVED)
    for log in arm_logs:
        used = re.findall(r"processing size (\d+)x(\d+) \(HxW\) for (\d+)x(\d+) images", log.read_text())
        assert used and {(int(h), int(w)) for h, w, *_ in used} == size, log
