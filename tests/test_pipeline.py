"""The whole DAG on a small config: the delta tables' shape and values, and what a re-run redoes."""

from __future__ import annotations

import copy
import json
import re

import pandas as pd
import pytest

from hi4dfix.tables import (
    CONTROL_ARMS,
    arm_comparisons,
    comparison_name,
    delta_columns,
    read_delta_csv,
    read_per_scene_csv,
)
from workflow_helpers import planned_jobs, run_snakemake

RESERVED = ["hi4d_pair15_fight", "hi4d_pair16_jump", "hi4d_pair17_dance", "hi4d_pair19_piggyback"]
# The small study keeps the embedded default's control arm (difix.control.enabled): five comparisons.
ARMS = CONTROL_ARMS
COMPARISONS = arm_comparisons(ARMS)
COMPARISON_NAMES = tuple(comparison_name(b, a) for b, a in COMPARISONS)


@pytest.fixture(scope="module")
def pipeline(small_pipeline):
    return small_pipeline


def expected_verdict(row, metric) -> str:
    """hi4dfix.stats' rule for psnr/ssim (no equivalence margin on them): the mean rows rest on 4 reserved
    scenes or 1 internal scene, too few for the sign-flip test; a comparison with a trained arm (tuned,
    control) rests on one training seed; a scene row of base against raw decides on its Holm-adjusted p."""
    if row.scene == "mean":
        return "too few scenes"
    if row.comparison != "base_vs_raw":
        return "too few seeds"
    if row.p_holm < 0.05:
        return "improved" if (row.delta > 0) == (metric != "lpips") else "worse"
    return "inconclusive"


def test_delta_table_has_the_arms_means_paired_deltas_intervals_and_verdicts(pipeline):
    workdir, _ = pipeline
    deltas = read_delta_csv(workdir / "results/v0/deltas.csv")
    assert list(deltas.columns) == list(delta_columns(ARMS))
    # the default endpoint's metrics: person PSNR, then the 10 secondary (stats block; whole-frame and person)
    assert len(deltas) == (len(RESERVED) + 1) * 11 * len(COMPARISONS)
    assert sorted(set(deltas["scene"])) == sorted(RESERVED + ["mean"])
    assert set(deltas["comparison"]) == {
        "tuned_vs_base", "tuned_vs_raw", "base_vs_raw", "tuned_vs_control", "control_vs_base",
    }  # fmt: skip
    for scene in RESERVED:
        tables = {arm: read_per_scene_csv(workdir / f"results/v0/nvs/{arm}/{scene}.csv") for arm in ARMS}
        views = tables["raw"].iloc[:-1]
        for metric in ("psnr", "ssim"):
            for (b, a), name in zip(COMPARISONS, COMPARISON_NAMES):
                row = deltas[(deltas.scene == scene) & (deltas.metric == metric) & (deltas.comparison == name)].iloc[0]
                for arm in ARMS:
                    assert row[arm] == pytest.approx(float(tables[arm].iloc[-1][metric]))  # the CSVs' mean rows
                assert row.delta == pytest.approx(row[b] - row[a])
                assert row.ci_low <= row.delta <= row.ci_high
                assert (row.n_views, row.n_frames) == (len(views), views["frame"].nunique())
                assert row.verdict == expected_verdict(row, metric)
    for metric in ("psnr", "ssim"):
        for name in COMPARISON_NAMES:
            rows = deltas[(deltas.metric == metric) & (deltas.comparison == name)]
            mean = rows[rows.scene == "mean"].iloc[0]
            assert mean.delta == pytest.approx(rows[rows.scene != "mean"].delta.mean())
            assert mean.ci_low <= mean.delta <= mean.ci_high and mean.verdict == expected_verdict(mean, metric)
    raw = pd.read_csv(workdir / "results/v0/deltas.csv")
    assert set(raw["provenance"]) == {"results/v0/provenance.json"} and set(raw["refit"]) == {"none"}
    markdown = (workdir / "results/v0/deltas.md").read_text()
    assert markdown.startswith("## v0: novel views of the reserved scenes")
    assert "| tuned − base [95%] | tuned vs base |" in markdown and "2000 random ones, seed 0" in markdown
    assert "| tuned − control [95%] | tuned vs control | control − base [95%] | control vs base |" in markdown


def test_internal_evaluation_has_its_delta_table(pipeline):
    workdir, _ = pipeline
    evaluation = pd.read_csv(workdir / "results/v0/difix/eval.csv")
    table = read_delta_csv(workdir / "results/v0/difix/eval_deltas.csv")
    assert set(table["scene"]) == {"hi4d_pair02_dance", "mean"}
    means = evaluation.groupby("arm")[["psnr", "ssim"]].mean()
    for metric in ("psnr", "ssim"):
        for (b, a), name in zip(COMPARISONS, COMPARISON_NAMES):
            row = table[
                (table.scene == "hi4d_pair02_dance") & (table.metric == metric) & (table.comparison == name)
            ].iloc[0]
            assert row[b] == pytest.approx(means.loc[b, metric]) and row[a] == pytest.approx(means.loc[a, metric])
            assert row.delta == pytest.approx(row[b] - row[a])
            assert row.n_views == len(evaluation[evaluation.arm == a])
            assert row.verdict == expected_verdict(row, metric)
    assert (
        (workdir / "results/v0/difix/eval_deltas.md")
        .read_text()
        .startswith("## v0: DiFix internal evaluation on hi4d_pair02_dance")
    )


def test_products_of_every_stage(pipeline):
    workdir, _ = pipeline
    triplets = json.loads((workdir / "results/v0/triplets.json").read_text())
    scenes = {key.split("/")[0] for split in triplets.values() for key in split}
    assert scenes == {"hi4d_pair00_dance", "hi4d_pair01_talk", "hi4d_pair02_dance"}
    for scene in RESERVED:  # reserved scenes are rendered, never DiFix samples
        assert (workdir / f"results/renders/imperfect/{scene}/manifest.json").is_file()
    evaluation = pd.read_csv(workdir / "results/v0/difix/eval.csv")
    assert set(evaluation["arm"]) == {"raw", "base", "tuned", "control"}
    assert set(evaluation["id"].str.split("/").str[0]) == {"hi4d_pair02_dance"}
    train_log = pd.read_csv(workdir / "results/v0/difix/train_log.csv")
    assert train_log["step"].max() == 4
    # the control: as many steps as tuned with the same learning-rate schedule, on fresh out-of-domain
    # triplets the base never saw (not its pretraining's)
    control_log = pd.read_csv(workdir / "results/v0/difix/control/train_log.csv")
    assert control_log["step"].max() == 4
    assert list(control_log["lr"]) == list(train_log["lr"])
    ood = json.loads((workdir / "results/difix_control/triplets.json").read_text())
    assert len(ood["train"]) == 4 * 7  # the small study's 4 fresh scenes x 7 target cameras
    assert not any("hi4d" in path or "synthetic_hi4d" in path for t in ood["train"].values() for path in t.values())
    own = json.loads((workdir / "results/difix_base/tiny/ood_triplets.json").read_text())
    keys = ("image", "target_image", "ref_image")
    own_images = {t[key] for t in own["train"].values() for key in keys}
    assert not own_images & {t[key] for t in ood["train"].values() for key in keys}
    tuning_log = (workdir / "results/logs/tune_control/v0.log").read_text()
    assert "--triplets results/difix_control/triplets.json" in tuning_log
    for rule in (
        "materialize_scene",
        "render_scene",
        "render_quality",
        "control_triplets",
        "tune_difix",
        "tune_control",
        "evaluate_nvs",
        "eval_deltas",
        "delta_table",
    ):
        assert list((workdir / "results/logs" / rule).rglob("*.log")), rule
        assert list((workdir / "results/benchmarks" / rule).rglob("*.tsv")), rule


def test_rerun_does_nothing_and_tuning_change_reruns_only_downstream(pipeline):
    workdir, config = pipeline
    targets = ("results/v0/deltas.csv", "results/v0/difix/eval.csv")
    assert planned_jobs(run_snakemake(workdir, config, "-n", *targets)) == {}
    changed = copy.deepcopy(config)
    changed["versions"]["v0"]["tuning"]["lr"] = config["versions"]["v0"]["tuning"]["lr"] * 2
    jobs = planned_jobs(run_snakemake(workdir, changed, "-n", *targets))
    # the tuned arm and the control (trained with the same settings) and what shows them: the report
    # items made from the models and their outputs (the version card shows the tuning settings),
    # then the delta tables; nothing upstream
    assert jobs == {
        "tune_difix": 1,
        "tune_control": 1,
        "evaluate_difix": 1,
        "evaluate_nvs": 2 * len(RESERVED),
        "eval_deltas": 1,
        "provenance": 1,
        "delta_table": 1,
        "version_card": 1,
        "metric_charts": 1,
        "before_after_views": len(RESERVED),
        "triplet_gallery": 1,
        "loss_curve": 1,
    }


def test_bootstrap_settings_rerun_only_the_tables_that_show_intervals(pipeline):
    workdir, config = pipeline
    changed = copy.deepcopy(config)
    changed["stats"]["seed"] = 1
    jobs = planned_jobs(run_snakemake(workdir, changed, "-n", "results/v0/deltas.csv"))
    # provenance records the resolved config (stats included), and the version card shows it
    assert jobs == {"eval_deltas": 1, "metric_charts": 1, "delta_table": 1, "provenance": 1, "version_card": 1}


def test_a_scene_added_to_the_study_leaves_the_version_untouched(pipeline):
    """A grid's extra training scenes join data.scenes: v0's record (its resolved config holds its own
    scenes only) and so its numbers stay as they are."""
    workdir, config = pipeline
    changed = copy.deepcopy(config)
    # the scenes first, as when a --configfile that names them is merged
    others = {key: value for key, value in config["data"].items() if key != "scenes"}
    changed["data"] = {"scenes": [*config["data"]["scenes"], "hi4d_pair03_hug"], **others}
    assert planned_jobs(run_snakemake(workdir, changed, "-n", "results/v0/deltas.csv")) == {}


def test_changed_triplet_settings_rebuild_the_triplets_not_the_renders(pipeline):
    workdir, config = pipeline
    changed = copy.deepcopy(config)
    changed["versions"]["v0"].setdefault("triplets", {})["max_samples"] = 2
    jobs = planned_jobs(run_snakemake(workdir, changed, "-n", "results/v0/deltas.csv"))
    assert jobs["build_triplets"] == 1 and jobs["tune_difix"] == 1
    # the control arm never reads the version's triplets
    assert not {"materialize_scene", "render_scene", "pretrain_difix_base", "tune_control"} & set(jobs)


def test_versions_table_holds_the_mean_rows_of_the_delta_table(pipeline):
    workdir, config = pipeline
    run_snakemake(workdir, config, "--cores", "1", "results/versions.csv")
    numeric = (*ARMS, "delta", "ci_low", "ci_high")
    versions = pd.read_csv(
        workdir / "results/versions.csv", keep_default_na=False, na_values={c: [""] for c in numeric}
    )
    deltas = read_delta_csv(workdir / "results/v0/deltas.csv")
    means = deltas[deltas.scene == "mean"].reset_index(drop=True)
    assert list(versions["version"]) == ["v0"] * len(means) and set(versions["n_scenes"]) == {len(RESERVED)}
    for column in ("metric", "comparison", "verdict", "note"):
        assert versions[column].astype(str).tolist() == means[column].tolist()
    for column in ("delta", "ci_low", "ci_high"):
        assert versions[column].to_numpy() == pytest.approx(means[column].to_numpy(), nan_ok=True)


def test_every_difix_arm_runs_at_the_tuning_runs_processing_size(pipeline):
    """One config: the size tuning trained at (its log and summary) is the size the control was trained
    at and the size the base, control and tuned arms ran at in the internal evaluation, the NVS
    evaluation and the gallery (their logs)."""
    workdir, config = pipeline
    logs = workdir / "results/logs"
    trained = re.findall(
        r"processing size (\d+)x(\d+) \(HxW\) for (\d+)x(\d+) training images", (logs / "tune_difix/v0.log").read_text()
    )
    assert trained, "the tuning log states its processing size"
    height, width = config["data"]["synthetic"]["height"], config["data"]["synthetic"]["width"]
    size = {(int(h), int(w)) for h, w, *_ in trained}
    assert {(int(h), int(w)) for *_, h, w in trained} == {(height, width)}
    assert size == {(48, 32)}  # long side 48 of the 48x64 (WxH) frames, not their own size
    (summary_path,) = (workdir / "results/v0/difix/work").glob("*/summary.json")  # the one run's folder
    summary = json.loads(summary_path.read_text())
    assert tuple(summary["resolution"]) in size
    control = re.findall(r"processing size (\d+)x(\d+) \(HxW\)", (logs / "tune_control/v0.log").read_text())
    assert {(int(h), int(w)) for h, w in control} == size  # the out-of-domain 48x32 images at long side 48
    arm_logs = [
        logs / "evaluate_difix/v0.log",
        logs / "triplet_gallery/v0.log",
        *sorted((logs / "evaluate_nvs/v0").glob("[bct]*/*.log")),
    ]
    assert len(arm_logs) == 2 + 3 * len(RESERVED)
    for log in arm_logs:
        used = re.findall(r"processing size (\d+)x(\d+) \(HxW\) for (\d+)x(\d+) images", log.read_text())
        assert used and {(int(h), int(w)) for h, w, *_ in used} == size, log
