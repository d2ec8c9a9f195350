"""Versions that inherit, ablation grids (expansion, shared work, bad grids) and the comparison across versions."""

from __future__ import annotations

import copy
import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from hi4dfix.ablations import GridError, deep_merge, expand_config, resolve_extends
from hi4dfix.cli import main
from hi4dfix.compare import (
    VariantTables,
    compare_markdown,
    compare_table,
    decision_html,
    paired_chart,
    read_compare_csv,
)
from hi4dfix.config_schema import load_schema
from hi4dfix.metrics import METRIC_COLUMNS
from hi4dfix.stats import BootstrapConfig, holm
from hi4dfix.study import PolicyError, Study
from hi4dfix.tables import per_scene_table, read_per_scene_csv, write_csv
from workflow_helpers import REPO, default_config, planned_jobs, run_snakemake, small_config

SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
SMALL_GRID = REPO / ".test" / "config" / "ablations.yaml"
SHIPPED_GRIDS = REPO / "config" / "ablations.yaml"


def with_grid(config: dict, grid_file=SMALL_GRID) -> dict:
    update_config(config, yaml.safe_load(grid_file.read_text()))
    return config


def one_grid(axes: dict, parent: str = "v0") -> dict:
    config = default_config()
    config["ablations"] = {"bad": {"parent": parent, "axes": axes}}
    return config


# ---- inheritance ------------------------------------------------------------------------------------


def test_deep_merge_merges_mappings_and_replaces_lists():
    base = {"tuning": {"steps": 150, "lr": 2e-4}, "difix_train": ["a", "b"], "nvs": {"mode": "postfix"}}
    merged = deep_merge(base, {"tuning": {"steps": 10}, "difix_train": ["c"]})
    assert merged == {"tuning": {"steps": 10, "lr": 2e-4}, "difix_train": ["c"], "nvs": {"mode": "postfix"}}
    assert base["tuning"]["steps"] == 150  # the parent is not touched


def test_extends_merges_the_parent_and_names_the_child_in_its_outputs():
    versions = default_config()["versions"]
    versions["v1"] = {"extends": "v0", "tuning": {"steps": 10}, "difix_train": ["hi4d_pair00_dance"]}
    versions["v2"] = {"extends": "v1", "triplets": {"reference": "temporal"}}
    resolved = resolve_extends(versions)
    v0, v1, v2 = resolved["v0"], resolved["v1"], resolved["v2"]
    assert v1["tuning"] == {**v0["tuning"], "steps": 10} and v1["difix_train"] == ["hi4d_pair00_dance"]
    assert v2["tuning"]["steps"] == 10 and v2["triplets"] == {**v0["triplets"], "reference": "temporal"}
    assert v2["extends"] == "v1" and "extends" not in v0 and v2["objective"] == v0["objective"]
    assert "results/v2/deltas.csv" in v2["expected_outputs"] and "results/v0/deltas.csv" not in v2["expected_outputs"]


def test_the_policy_holds_on_the_merged_version():
    config = default_config()
    config["versions"]["v1"] = {"extends": "v0", "difix_eval": ["hi4d_pair17_dance"]}
    expand_config(config, SCHEMA)
    study = Study.from_config(config)
    study.check_version("v0")
    with pytest.raises(PolicyError, match="version v1: reserved scene hi4d_pair17_dance is in difix_eval"):
        study.check_version("v1")


def test_a_version_that_inherits_a_policy_break_fails_at_dag_build(tmp_path):
    config = default_config()
    config["versions"]["v1"] = {"extends": "v0", "difix_train": ["hi4d_pair00_dance", "hi4d_pair16_jump"]}
    result = run_snakemake(tmp_path, config, "-n", "results/v1/deltas.csv", check=False)
    assert result.returncode != 0
    assert "version v1: reserved scene hi4d_pair16_jump is in difix_train" in result.stdout + result.stderr


def test_an_extends_cycle_is_refused_naming_it():
    config = default_config()
    config["versions"]["v1"] = {"extends": "v2"}
    config["versions"]["v2"] = {"extends": "v1"}
    with pytest.raises(GridError, match=r"versions: extends cycle v1 -> v2 -> v1"):
        expand_config(config, SCHEMA)
    config["versions"]["v2"] = {"extends": "v9"}
    with pytest.raises(GridError, match=r"versions.v2.extends: 'v9' is not a version"):
        expand_config(config, SCHEMA)


def test_versions_command_shows_each_versions_changes_from_its_parent(tmp_path, capsys):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"versions": {"v1": {"extends": "v0", "tuning": {"steps": 10}}}}))
    assert main(["versions", "--config", str(REPO / "config/config.yaml"), "--configfile", str(extra),
                 "--workdir", str(tmp_path)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "v1: Does fine-tuning" in out and "  extends v0, changing:\n    tuning.steps: 150 -> 10\n" in out


# ---- grids ---------------------------------------------------------------------------------------------


def test_the_small_grid_expands_into_readably_named_versions():
    config = with_grid(small_config())
    grids = expand_config(config, SCHEMA)
    grid = grids["small"]
    assert [v.label for v in grid.variants] == [
        "small.estimated.lr-0.0002", "small.estimated.lr-0.002", "small.gt.lr-0.0002", "small.gt.lr-0.002",
    ]  # fmt: skip
    # the variant with the parent's settings is the parent: it is compared with nothing and runs nothing
    assert grid.variants[0].same_as_parent and grid.variants[0].name == "v0"
    assert [v.name for v in grid.compared] == ["small.estimated.lr-0.002", "small.gt.lr-0.0002", "small.gt.lr-0.002"]
    assert list(config["versions"]) == ["v0", *[v.name for v in grid.compared]]
    # one new render profile, shared by both GT-pose variants; the estimated one keeps v0's
    assert list(config["render_profiles"]) == ["imperfect", "small.gt"]
    assert config["render_profiles"]["small.gt"]["pose_source"] == "gt"
    versions = config["versions"]
    assert versions["small.estimated.lr-0.002"]["render_profile"] == "imperfect"
    assert versions["small.gt.lr-0.002"]["render_profile"] == "small.gt"
    # GT poses render the training data only: DiFix is still scored on the parent's (imperfect) renders
    assert versions["small.gt.lr-0.002"]["eval_render_profile"] == "imperfect"
    assert "eval_render_profile" not in versions["small.estimated.lr-0.002"]
    assert versions["small.gt.lr-0.002"]["tuning"]["lr"] == 0.002 and versions["small.gt.lr-0.002"]["extends"] == "v0"
    assert "tuning.lr = 0.002" in versions["small.gt.lr-0.002"]["objective"]


def test_the_shipped_grids_have_the_memos_and_the_training_variants():
    config = with_grid(default_config(), SHIPPED_GRIDS)
    grids = expand_config(config, SCHEMA)
    memo, training = grids["memo"], grids["training"]
    assert len(memo.variants) == 12 and len(memo.compared) == 11  # memo.estimated.same_time.train2 is v0
    assert "memo.gt.mixed.train4" in config["versions"]
    assert config["versions"]["memo.gt.mixed.train4"]["difix_train"][-1] == "hi4d_pair04_highfive"
    assert len(training.variants) == 6
    lora = config["versions"]["training.lora8.person"]["tuning"]
    assert lora["unet"] == "lora" and lora["unet_lora_rank"] == 8 and lora["loss_region"] == "person"
    assert lora["steps"] == 150  # the rest of the parent's tuning block stays


def test_a_dry_run_of_the_small_grid_shares_renders_triplets_and_arms(tmp_path):
    config = with_grid(small_config())
    result = run_snakemake(tmp_path, config, "-n")
    jobs = planned_jobs(result)
    # every reserved scene is rendered once, with the parent's (imperfect) poses, whatever the variant
    assert "renders/imperfect/hi4d_pair15_fight" in result.stdout
    assert "renders/small.gt/hi4d_pair15_fight" not in result.stdout
    # 4 versions (v0 and 3 variants) of which two pairs share render settings and triplets
    # per render profile, not per version (4 x 7 unshared): the 7 scenes with imperfect poses, and the 2
    # training scenes with GT poses (the GT variants' evaluation renders are the parent's)
    assert jobs["render_scene"] == 7 + 2
    assert jobs["build_triplets"] == 2  # per (renders, triplet settings), not 4
    assert jobs["pretrain_difix_base"] == 1 and jobs["tune_difix"] == 4
    # the control model per tuning settings (2 learning rates), not per version
    assert jobs["tune_control"] == 2
    # tuned per version; raw and base per (evaluation renders, NVS settings): one set; control per tuning
    # settings: 4 x 4 + 2 x 4 + 2 x 4, not 4 x 4 x 4
    assert jobs["evaluate_nvs"] == 4 * 4 + 2 * 4 + 2 * 4
    assert jobs["compare_grid"] == 1 and jobs["delta_table"] == 4


# ---- bad grids -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, message",
    [
        (
            one_grid({"triplets.referense": ["same_time", "temporal"]}),
            "ablations.bad: axis triplets.referense: no setting 'referense' in triplets (the path does not exist)",
        ),
        (
            one_grid({"render_profiles.other.pose_source": ["gt"]}),
            "ablations.bad: axis render_profiles.other.pose_source: names render profile 'other', but the parent's",
        ),
        (
            one_grid({"triplets.reference": ["same_time", "sideways"]}),
            'ablations.bad: variant bad.sideways: axis triplets.reference = sideways ("sideways"): '
            "setting triplets.reference: 'sideways' is not one of",
        ),
        (
            one_grid({"tuning.steps": [150, -3]}),
            "ablations.bad: variant bad.steps--3: axis tuning.steps = steps--3 (-3): setting tuning.steps: "
            "-3 is less than the minimum of 1",
        ),
        (
            one_grid(
                {"difix_train": {"ok": ["hi4d_pair00_dance"], "leak": ["hi4d_pair00_dance", "hi4d_pair15_fight"]}}
            ),
            "ablations.bad: variant bad.leak (axis difix_train = leak) breaks the policy: version bad.leak: "
            "reserved scene hi4d_pair15_fight is in difix_train",
        ),
        (
            one_grid({"tuning.steps": {"short": 10, "brief": 10}}),
            "ablations.bad: variants bad.short and bad.brief collapse to the same settings (tuning.steps = brief)",
        ),
        (one_grid({"tuning.lr": [0.1]}, parent="v7"), "ablations.bad.parent: 'v7' is not a version"),
    ],
    ids=["no-such-path", "other-profile", "bad-value", "bad-number", "policy", "collapse", "no-parent"],
)
def test_a_bad_grid_is_refused_naming_grid_axis_and_value(config, message):
    with pytest.raises(GridError) as error:
        expand_config(config, SCHEMA)
    assert message in str(error.value)


def test_a_bad_grid_is_refused_at_dag_build_before_any_job(tmp_path):
    config = one_grid({"triplets.reference": ["same_time", "sideways"]})
    result = run_snakemake(tmp_path, config, "--cores", "1", check=False)
    assert result.returncode != 0
    assert "ablations.bad: variant bad.sideways: axis triplets.reference = sideways" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


# ---- decisions across versions -------------------------------------------------------------------------


def test_holm_adjusts_a_hand_example():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): 4 x 0.005 = 0.02, 3 x 0.01 = 0.03, 2 x 0.03 = 0.06,
    # 1 x 0.04 = 0.04 -> 0.06 (never below the step before); NaN stays out of the family
    adjusted = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[4])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


SCENES = ("hi4d_pair15_fight", "hi4d_pair16_jump")
CFG = BootstrapConfig(n_resamples=400, confidence=0.9, seed=5)


def write_tuned(tmp_path, version, psnr):
    """Per-scene tuned CSVs: 2 frames x 2 cams per scene, PSNR given per (scene, frame, cam)."""
    paths = []
    for scene in SCENES:
        rows = [
            {"frame": f, "cam": c, "psnr": psnr(scene, f, c), "ssim": 0.5 + 0.01 * psnr(scene, f, c),
             "lpips": 0.3, "psnr_person": np.nan, "ssim_person": np.nan, "lpips_person": np.nan,
             **dict.fromkeys(METRIC_COLUMNS[6:], np.nan)}
            for f in (0, 1) for c in (4, 5)
        ]  # fmt: skip
        path = tmp_path / version / "nvs" / "tuned" / f"{scene}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_csv(path, per_scene_table(rows))
        paths.append(str(path))
    return paths


def rng(seed, name):
    words = np.frombuffer(hashlib.sha256(name.encode()).digest(), dtype=np.uint32)
    return np.random.default_rng(np.random.SeedSequence([seed, *map(int, words)]))


def hand_frame_means(differences: np.ndarray, n: int, generator) -> np.ndarray:
    """differences[frame, cam]: a resample draws as many frames as there are, with replacement (all cams
    of a drawn frame come along)."""
    frames = differences.shape[0]
    draws = generator.integers(0, frames, size=(n, frames))
    return differences[draws].reshape(n, -1).mean(axis=1)


def test_compare_intervals_match_a_hand_computed_bootstrap_on_two_frames(tmp_path):
    base = {"hi4d_pair15_fight": 20.0, "hi4d_pair16_jump": 22.0}
    parent = write_tuned(tmp_path, "v0", lambda s, f, c: base[s] + 0.1 * c)
    gains = {("hi4d_pair15_fight", 0): 0.5, ("hi4d_pair15_fight", 1): 1.5, ("hi4d_pair16_jump", 0): -0.2,
             ("hi4d_pair16_jump", 1): 0.6}  # fmt: skip
    variant = write_tuned(
        tmp_path, "small.gt.lr-0.002", lambda s, f, c: base[s] + 0.1 * c + gains[(s, f)] + 0.1 * (c - 4)
    )
    variants = [VariantTables("small.gt.lr-0.002", "gt", variant, "results/small.gt.lr-0.002/provenance.json")]
    table = compare_table(
        "small", "v0", parent, variants, list(SCENES), metrics=("psnr",), bootstrap=CFG,
        parent_provenance="results/v0/provenance.json",
    )  # fmt: skip
    rows = table.set_index("scene")
    tail = (1 - CFG.confidence) / 2
    for scene in SCENES:
        d = np.array([[gains[(scene, f)] + 0.1 * c for c in (0, 1)] for f in (0, 1)])  # [frame, cam]
        means = hand_frame_means(d, CFG.n_resamples, rng(CFG.seed, scene))
        low, high = np.quantile(means, [tail, 1 - tail])
        assert rows.loc[scene, "delta"] == pytest.approx(d.mean())
        assert rows.loc[scene, ["ci_low", "ci_high"]].tolist() == pytest.approx([low, high])
        assert rows.loc[scene, "n_frames"] == 2 and rows.loc[scene, "n_views"] == 4
    # the mean row: scenes drawn with replacement, then each drawn scene's frames from its own stream
    diffs = {s: np.array([[gains[(s, f)] + 0.1 * c for c in (0, 1)] for f in (0, 1)]) for s in SCENES}
    drawn = rng(CFG.seed, "\0scenes").integers(0, 2, size=(CFG.n_resamples, 2))
    resampled = np.empty(drawn.shape)
    for index, scene in enumerate(SCENES):
        slots = drawn == index
        resampled[slots] = hand_frame_means(diffs[scene], int(slots.sum()), rng(CFG.seed, scene))
    low, high = np.quantile(resampled.mean(axis=1), [tail, 1 - tail])
    assert rows.loc["mean", "delta"] == pytest.approx(np.mean([d.mean() for d in diffs.values()]))
    assert rows.loc["mean", ["ci_low", "ci_high"]].tolist() == pytest.approx([low, high])
    p = min(1.0, 2 * min(np.mean(resampled.mean(axis=1) <= 0), np.mean(resampled.mean(axis=1) >= 0)))
    assert rows.loc["mean", "p_value"] == pytest.approx(p) and rows.loc["mean", "p_holm"] == pytest.approx(p)
    assert rows.loc["mean", "provenance"] == "results/small.gt.lr-0.002/provenance.json; results/v0/provenance.json"
    assert np.isnan(rows.loc["hi4d_pair15_fight", "p_holm"])  # Holm: the mean rows only
    path = tmp_path / "compare.csv"
    write_csv(path, table)
    pd.testing.assert_frame_equal(read_compare_csv(path), table, check_dtype=False)


INTERNAL_SCENE = "hi4d_pair02_dance"


def write_eval(tmp_path, version, psnr, frames=(0, 1, 2), cams=(4, 5)):
    """An internal evaluation table (eval.csv) of the difix_eval scene: raw and tuned arms, PSNR given per
    (frame, cam); the raw arm is the same in every version."""
    rows = [
        {"arm": arm, "id": f"{INTERNAL_SCENE}/{c}/{f}", "frame": f, "cam": c,
         "psnr": 18.0 if arm == "raw" else psnr(f, c), "ssim": 0.5, "lpips": 0.3,
         "psnr_person": np.nan, "ssim_person": np.nan, "lpips_person": np.nan,
         **dict.fromkeys(METRIC_COLUMNS[6:], np.nan)}
        for arm in ("raw", "tuned") for f in frames for c in cams
    ]  # fmt: skip
    path = tmp_path / version / "difix" / "eval.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_compare_markdown_ranks_on_the_internal_split_and_says_holm(tmp_path):
    parent = write_tuned(tmp_path, "v0", lambda s, f, c: 20.0 + f)
    parent_eval = write_eval(tmp_path, "v0", lambda f, c: 21.0 + f)
    variants = []
    # reserved gains rank big > small > worse; internal gains rank small > big > worse: the decision
    # must follow the internal split, and report the reserved one as held out
    for name, gain, internal_gain in (("g.small", 0.2, 2.0), ("g.big", 3.0, 0.5), ("g.worse", -2.0, -1.5)):
        noise = {0: 0.0, 1: 0.05, 2: 0.02}
        paths = write_tuned(tmp_path, name, lambda s, f, c, gain=gain: 20.0 + f + gain + noise[f] * c / 5)
        evals = write_eval(tmp_path, name, lambda f, c, g=internal_gain: 21.0 + f + g + noise[f] * c / 5)
        variants.append(VariantTables(name, f"x = {name}", paths, eval_csv=evals))
    cfg = BootstrapConfig(n_resamples=300, confidence=0.95, seed=0)
    table = compare_table("g", "v0", parent, variants, list(SCENES), bootstrap=cfg, parent_eval_csv=parent_eval)
    assert set(table["split"]) == {"internal", "reserved"}
    internal = table[(table.split == "internal") & (table.metric == "psnr")]
    assert set(internal["scene"]) == {INTERNAL_SCENE, "mean"}
    # paired per view: the gain plus the noise's mean over frames (0, 0.05, 0.02) and cams (4, 5 -> 4.5 / 5)
    expected = 2.0 + np.mean([0.0, 0.05, 0.02]) * 4.5 / 5
    assert internal.set_index(["variant", "scene"]).loc[("g.small", "mean"), "delta"] == pytest.approx(expected)
    md = compare_markdown(table, cfg, references=["g.base"])
    assert "across the grid's 3 comparisons of each metric on each split" in md and "Holm" in md
    assert md.index("### Internal evaluation") < md.index("### Reserved scenes") < md.index("### Decision")
    decision = md.split("### Decision", 1)[1]
    assert "on the internal evaluation (hi4d_pair02_dance" in decision
    assert decision.index("**g.small**") < decision.index("**g.big**") < decision.index("**g.worse**")
    assert "g.base has the parent's own settings, so it is v0 itself" in decision
    for split in ("internal", "reserved"):
        psnr = table[(table.scene == "mean") & (table.metric == "psnr") & (table.split == split)].set_index("variant")
        assert psnr.loc["g.worse", "verdict_holm"] == "worse"
        assert (psnr["p_holm"] >= psnr["p_value"]).all()
    # one Holm family per split and metric: 3 p-values each
    assert table[(table.scene == "mean") & table.p_holm.notna()].groupby(["split", "metric"]).size().max() == 3
    # SSIM is equal on the internal split and LPIPS everywhere: g.small improves PSNR there and is worse on
    # nothing, so it is adopted, whatever the reserved scenes rank first
    assert "**Decision:** g.small improves PSNR (dB) ↑ over v0 on the internal evaluation after Holm" in decision
    assert "On the held-out reserved scenes it measures +0.2" in decision
    assert "<ol><li>" in decision_html(table, references=["g.base"])


def test_internal_intervals_match_a_hand_computed_bootstrap_on_one_scene(tmp_path):
    parent = write_tuned(tmp_path, "v0", lambda s, f, c: 20.0)
    parent_eval = write_eval(tmp_path, "v0", lambda f, c: 21.0 + 0.1 * c)
    gains = {0: 0.4, 1: -0.1, 2: 0.9}
    variant_eval = write_eval(tmp_path, "g.a", lambda f, c: 21.0 + 0.1 * c + gains[f] + 0.05 * (c - 4))
    variant = VariantTables("g.a", "x", write_tuned(tmp_path, "g.a", lambda s, f, c: 20.5), eval_csv=variant_eval)
    table = compare_table(
        "g", "v0", parent, [variant], list(SCENES), metrics=("psnr",), bootstrap=CFG, parent_eval_csv=parent_eval
    )
    rows = table[table.split == "internal"].set_index("scene")
    d = np.array([[gains[f] + 0.05 * c for c in (0, 1)] for f in (0, 1, 2)])  # [frame, cam]
    tail = (1 - CFG.confidence) / 2
    # the scene row: its 3 frames resampled from the scene's own stream
    low, high = np.quantile(hand_frame_means(d, CFG.n_resamples, rng(CFG.seed, INTERNAL_SCENE)), [tail, 1 - tail])
    assert rows.loc[INTERNAL_SCENE, "delta"] == pytest.approx(d.mean())
    assert rows.loc[INTERNAL_SCENE, ["ci_low", "ci_high"]].tolist() == pytest.approx([low, high])
    # the mean row over one scene: every scene draw picks it, so the frames' resampling is all that varies
    assert (rng(CFG.seed, "\0scenes").integers(0, 1, size=(CFG.n_resamples, 1)) == 0).all()
    means = hand_frame_means(d, CFG.n_resamples, rng(CFG.seed, INTERNAL_SCENE))
    assert rows.loc["mean", ["ci_low", "ci_high"]].tolist() == pytest.approx(np.quantile(means, [tail, 1 - tail]))
    p = min(1.0, 2 * min(np.mean(means <= 0), np.mean(means >= 0)))
    assert rows.loc["mean", "p_value"] == pytest.approx(p) and p > 0.0
    assert rows.loc["mean", ["n_frames", "n_views"]].tolist() == [3, 6]
    assert rows.loc["mean", "note"] == (
        "one scene: the interval resamples its frames only, so it cannot see variation between scenes; "
        "3 frames: too few for it to cover as much as it says"
    )


def test_a_metric_measured_in_no_version_is_one_line_and_leaves_the_chart_and_decision(tmp_path):
    parent = write_tuned(tmp_path, "v0", lambda s, f, c: 20.0 + f)
    variant = write_tuned(tmp_path, "g.a", lambda s, f, c: 21.0 + f + 0.01 * c * f)
    for path in [*parent, *variant]:  # LPIPS not computed, and the rows say why
        frame = pd.read_csv(path)
        frame["lpips"], frame["lpips_computed"] = np.nan, False
        frame.to_csv(path, index=False)
    table = compare_table("g", "v0", parent, [VariantTables("g.a", "x", variant)], list(SCENES), bootstrap=CFG)
    lpips = table[table.metric == "lpips"]
    assert lpips["delta"].isna().all()
    assert (lpips["note"] == "lpips not measured in both versions (LPIPS AlexNet weights not cached)").all()
    md = compare_markdown(table, CFG)
    assert "**LPIPS ↓**: no comparison: lpips not measured in both versions (LPIPS AlexNet weights not cached)." in md
    assert md.count("| g.a |") == 2  # PSNR and SSIM tables only
    decision = md.split("### Decision", 1)[1]
    assert "PSNR (dB) ↑ +1" in decision and "SSIM ↑" in decision and "LPIPS" not in decision
    figure = paired_chart(table)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["reserved: PSNR (dB) ↑", "reserved: SSIM ↑"]


def test_compare_without_internal_tables_ranks_on_the_reserved_scenes_and_says_so(tmp_path):
    parent = write_tuned(tmp_path, "v0", lambda s, f, c: 20.0 + f)
    big = write_tuned(tmp_path, "g.big", lambda s, f, c: 23.0 + f + 0.01 * c * f)
    table = compare_table("g", "v0", parent, [VariantTables("g.big", "x", big)], list(SCENES), bootstrap=CFG)
    assert set(table["split"]) == {"reserved"}
    decision = compare_markdown(table, CFG).split("### Decision", 1)[1]
    assert "on the reserved scenes (no internal evaluation was given" in decision
    assert "**Decision:** g.big improves PSNR (dB) ↑ over v0 on the reserved scenes after Holm" in decision


def test_compare_grid_runs_through_snakemake_on_the_small_study(small_pipeline, tmp_path):
    """A one-axis grid over the small study's finished v0 (copied): only the variant's own jobs run, and
    compare.csv holds both splits with the parent's numbers read from v0's own tables."""
    source, config = small_pipeline
    workdir = tmp_path / "grid"
    shutil.copytree(source, workdir)
    config = copy.deepcopy(config)
    config["ablations"] = {"ref": {"parent": "v0", "axes": {"triplets.reference": ["same_time", "temporal"]}}}
    target = "results/ablations/ref/compare.csv"
    planned = planned_jobs(run_snakemake(workdir, config, "-n", target))
    # v0's renders, base, control and raw/base/control arms are reused: the variant's triplets, tuning,
    # tuned arm on the 4 reserved scenes and internal evaluation, its provenance, and the comparison
    assert planned == {
        "build_triplets": 1, "check_reserved_content": 1, "tune_difix": 1, "evaluate_nvs": 4,
        "evaluate_difix": 1, "provenance": 1, "compare_grid": 1,
    }  # fmt: skip
    run_snakemake(workdir, config, "--cores", "2", target)
    out = workdir / "results" / "ablations" / "ref"
    table = read_compare_csv(out / "compare.csv")
    assert set(table["variant"]) == {"ref.temporal"} and set(table["split"]) == {"internal", "reserved"}
    means = table[table.scene == "mean"].set_index(["split", "metric"])
    v0_internal = pd.read_csv(workdir / "results" / "v0" / "difix" / "eval.csv").query("arm == 'tuned'")
    assert means.loc[("internal", "psnr"), "parent_mean"] == pytest.approx(v0_internal["psnr"].mean())
    reserved = config["versions"]["v0"]["nvs_eval"]
    v0_reserved = [read_per_scene_csv(workdir / "results" / "v0" / "nvs" / "tuned" / f"{s}.csv") for s in reserved]
    reserved_means = [t[t["frame"].astype(str) != "mean"]["psnr"].astype(float).mean() for t in v0_reserved]
    assert means.loc[("reserved", "psnr"), "parent_mean"] == pytest.approx(np.mean(reserved_means))
    assert means.loc[("internal", "psnr"), "n_views"] == len(v0_internal)
    assert "results/ref.temporal/provenance.json; results/v0/provenance.json" in set(table["provenance"])
    md = (out / "compare.md").read_text()
    assert md.index("### Internal evaluation") < md.index("### Reserved scenes") < md.index("### Decision")
    assert (out / "paired.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ref.temporal" in (out / "decision.html").read_text()


def test_a_variant_with_other_internal_views_has_no_internal_comparison(tmp_path):
    parent = write_tuned(tmp_path, "v0", lambda s, f, c: 20.0)
    variant = write_tuned(tmp_path, "g.a", lambda s, f, c: 21.0)
    parent_eval = write_eval(tmp_path, "v0", lambda f, c: 20.0)
    other_eval = write_eval(tmp_path, "g.a", lambda f, c: 21.0, cams=(4, 6))
    table = compare_table(
        "g", "v0", parent, [VariantTables("g.a", "", variant, eval_csv=other_eval)], list(SCENES),
        bootstrap=CFG, parent_eval_csv=parent_eval,
    )  # fmt: skip
    internal = table[table.split == "internal"]
    assert internal["delta"].isna().all() and (internal["verdict"] == "").all()
    assert internal["note"].str.contains("internal evaluation on other views than v0's").all()
    measured = table.metric.isin(["psnr", "ssim", "lpips"])  # the rows here carry no other metric
    assert table[(table.split == "reserved") & (table.scene == "mean") & measured]["delta"].notna().all()


def test_compare_refuses_variants_on_other_views(tmp_path):
    parent = write_tuned(tmp_path, "v0", lambda s, f, c: 20.0)
    other = write_tuned(tmp_path, "g.a", lambda s, f, c: 21.0)
    frame = pd.read_csv(other[0])
    frame.loc[0, "cam"] = "9"
    frame.to_csv(other[0], index=False)
    with pytest.raises(ValueError, match="variant g.a and parent v0 cover different views"):
        compare_table("g", "v0", parent, [VariantTables("g.a", "", other)], list(SCENES), bootstrap=CFG)


def test_expansion_is_deterministic():
    first, second = with_grid(default_config(), SHIPPED_GRIDS), with_grid(default_config(), SHIPPED_GRIDS)
    expand_config(first, SCHEMA)
    expand_config(second, copy.deepcopy(SCHEMA))
    assert list(first["versions"]) == list(second["versions"]) and first == second
