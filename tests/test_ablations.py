"""Versions that inherit, ablation grids (expansion, shared work, bad grids) and the comparison across versions."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from hi4dfix.ablations import GridError, deep_merge, expand_config, resolve_extends
from hi4dfix.cli import main
from hi4dfix.compare import read_compare_csv
from hi4dfix.config_schema import load_schema
from hi4dfix.study import PolicyError, Study
from hi4dfix.tables import read_per_scene_csv
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
    lora = config["versions"]["training.lora8_all.person"]["tuning"]
    assert lora["unet"] == "lora" and lora["unet_lora_rank"] == 8 and lora["loss_region"] == "person"
    assert lora["steps"] == 150  # the rest of the parent's tuning block stays


def test_the_decision_overlay_gives_the_grids_a_parent_that_can_decide():
    """config/decide.yaml (the memo's "more scenes" step): nine internal scenes, enough for the sign flip after
    Holm over the memo's 11 variants, from pairs no variant trains on, and three training seeds per arm."""
    from hi4dfix.stats import scenes_needed

    config = with_grid(with_grid(default_config(), SHIPPED_GRIDS), REPO / "config" / "decide.yaml")
    grids = expand_config(config, SCHEMA)
    study = Study.from_config(config)
    for name in config["versions"]:
        study.check_version(name)  # the reserved-scene policy holds for every variant
    parent = config["versions"]["v0_decide"]
    assert grids["memo"].parent == grids["training"].parent == "v0_decide"
    assert len(parent["difix_eval"]) == 9 >= scenes_needed(len(grids["memo"].compared), 0.05)
    trained = {scene[:11] for name in config["versions"] for scene in config["versions"][name]["difix_train"]}
    assert not trained & {scene[:11] for scene in parent["difix_eval"]}
    variant = config["versions"]["memo.gt.mixed.train4"]
    assert variant["difix_eval"] == parent["difix_eval"] and variant["tuning"]["seeds"] == [0, 1, 2]


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


def profile_clash() -> dict:
    """A grid whose GT-pose variant makes profile bad.gt, and a user's bad.gt (other settings) that v1 uses."""
    config = one_grid({"render_profiles.*.pose_source": ["estimated", "gt"]})
    config["render_profiles"]["bad.gt"] = {**config["render_profiles"]["imperfect"], "fit_steps": 7}
    config["versions"]["v1"] = {"extends": "v0", "render_profile": "bad.gt"}
    return config


def test_a_grid_made_profile_never_replaces_a_users_profile_of_that_name():
    config = profile_clash()
    with pytest.raises(GridError) as error:
        expand_config(config, SCHEMA)
    assert str(error.value) == (
        'ablations.bad: variant bad.gt (axis render_profiles.*.pose_source = gt ("gt")) makes render profile '
        "'bad.gt', but render_profiles.bad.gt is already defined with other settings; rename that profile or the grid"
    )
    # the same user profile with the grid's settings is shared, not refused
    config = profile_clash()
    config["render_profiles"]["bad.gt"] = {**config["render_profiles"]["imperfect"], "pose_source": "gt"}
    expand_config(config, SCHEMA)
    assert config["versions"]["bad.gt"]["render_profile"] == "bad.gt"


def test_a_bad_grid_is_refused_at_dag_build_before_any_job(tmp_path):
    config = one_grid({"triplets.reference": ["same_time", "sideways"]})
    result = run_snakemake(tmp_path, config, "--cores", "1", check=False)
    assert result.returncode != 0
    assert "ablations.bad: variant bad.sideways: axis triplets.reference = sideways" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
    result = run_snakemake(tmp_path / "clash", profile_clash(), "-n", check=False)
    assert result.returncode != 0
    assert "render profile 'bad.gt', but render_profiles.bad.gt is already defined" in result.stdout + result.stderr


# ---- decisions across versions (the comparison itself: tests/test_compare.py)


GRID_TARGETS = {"ref": "results/ablations/ref/compare.csv", "seed": "results/ablations/seed/compare.csv"}


@pytest.fixture(scope="module")
def grid_runs(small_pipeline, tmp_path_factory):
    """Two one-axis grids over the small study's finished v0 (copied once): the reference frame's
    (test_compare_grid_...) and the training seed's (test_a_grid_of_training_seeds_...). Their variants
    share no job, so each grid's own dry run (before) says what it needs, and one Snakemake call runs
    both (the two cores kept busy across the grids).

    Returns (workdir, config, {grid: planned jobs})."""
    source, config = small_pipeline
    workdir = tmp_path_factory.mktemp("grids") / "study"
    shutil.copytree(source, workdir)
    config = copy.deepcopy(config)
    config["ablations"] = {
        "ref": {"parent": "v0", "axes": {"triplets.reference": ["same_time", "temporal"]}},
        "seed": {"parent": "v0", "axes": {"tuning.seed": [0, 1]}},
    }
    planned = {
        grid: planned_jobs(run_snakemake(workdir, config, "-n", target)) for grid, target in GRID_TARGETS.items()
    }
    run_snakemake(workdir, config, "--cores", "2", *GRID_TARGETS.values())
    return workdir, config, planned


def test_compare_grid_runs_through_snakemake_on_the_small_study(grid_runs):
    """A one-axis grid over the small study's finished v0 (copied): only the variant's own jobs run, and
    compare.csv holds both splits with the parent's numbers read from v0's own tables."""
    workdir, config, planned = grid_runs
    # v0's renders, base, control and raw/base/control arms are reused: the variant's triplets, tuning,
    # tuned arm on the 4 reserved scenes and internal evaluation, its provenance, and the comparison
    assert planned["ref"] == {
        "build_triplets": 1, "check_reserved_content": 1, "tune_difix": 1, "evaluate_nvs": 4,
        "evaluate_difix": 1, "provenance": 1, "compare_grid": 1,
    }  # fmt: skip
    # the comparison is recomputed from its stamp, and each version's record verified
    assert main(["provenance", "check", str(workdir / "results/ablations/ref"), "--root", str(workdir)]) == 0
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
    assert "results/ref.temporal/provenance_inputs.json; results/v0/provenance_inputs.json" in set(table["provenance"])
    md = (out / "compare.md").read_text()
    assert md.index("### Internal evaluation") < md.index("### Reserved scenes") < md.index("### Decision")
    assert (out / "paired.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ref.temporal" in (out / "decision.html").read_text()


def test_expansion_is_deterministic():
    first, second = with_grid(default_config(), SHIPPED_GRIDS), with_grid(default_config(), SHIPPED_GRIDS)
    expand_config(first, SCHEMA)
    expand_config(second, copy.deepcopy(SCHEMA))
    assert list(first["versions"]) == list(second["versions"]) and first == second


def test_a_grid_of_training_seeds_only_ends_in_no_decision_through_snakemake(grid_runs):
    """Variants that differ from v0 in the training seed alone are replicates, not settings: through
    Snakemake on the small study (v0's run copied), compare.md's decision adopts none of them."""
    workdir, _, planned = grid_runs
    # the seed decides the tuned and control weights: both retrain, on v0's triplets, base and renders
    assert planned["seed"] == {
        "tune_difix": 1, "tune_control": 1, "evaluate_nvs": 8, "evaluate_difix": 1, "provenance": 1,
        "compare_grid": 1,
    }  # fmt: skip
    md = (workdir / "results" / "ablations" / "seed" / "compare.md").read_text()
    decision = md[md.index("### Decision") :]
    assert "**Decision:**" in decision and "no decision" in decision
    assert "adopt its settings" not in decision
