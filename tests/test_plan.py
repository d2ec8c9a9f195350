"""hi4dfix.plan without Snakemake: the config loading, output paths, owners of shared work, resources,
the policy gate and the tuning arguments (milliseconds each; tests/test_workflow_dag.py runs the DAG)."""

from __future__ import annotations

import copy
import json
import shlex

import pytest
import yaml
from snakemake.utils import update_config, validate

from hi4dfix import plan, resources
from hi4dfix.ablations import GridError
from hi4dfix.config_schema import ConfigError
from hi4dfix.study import PolicyError
from workflow_helpers import REPO, default_config, small_config

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
_GRID_CONFIG = default_config()
update_config(_GRID_CONFIG, yaml.safe_load((REPO / "config" / "ablations.yaml").read_text()))


@pytest.fixture(scope="module")
def default_plan() -> plan.Plan:
    return plan.load(default_config(), gpus=0)


@pytest.fixture(scope="module")
def grid_plan() -> plan.Plan:
    return plan.load(copy.deepcopy(_GRID_CONFIG), gpus=0)


def test_load_config_fills_the_defaults_as_snakemakes_validate():
    for config in (default_config(), small_config(), copy.deepcopy(_GRID_CONFIG)):
        ours = copy.deepcopy(config)
        plan.load_config(ours)
        theirs = copy.deepcopy(config)
        from hi4dfix.ablations import expand_config
        from hi4dfix.config_schema import load_schema

        expand_config(theirs, load_schema(SCHEMA))
        validate(theirs, SCHEMA)
        assert ours == theirs


def test_load_config_refuses_with_the_failing_key():
    config = default_config()
    config["versions"]["v0"]["tuning"]["lr"] = -1
    with pytest.raises(ConfigError, match=r"^config key versions.v0.tuning.lr: "):
        plan.load_config(config)
    config = copy.deepcopy(_GRID_CONFIG)
    config["ablations"]["memo"]["parent"] = "v9"
    with pytest.raises(GridError):
        plan.load_config(config)


def test_paths_spell_each_output_once_for_names_and_patterns():
    paths = plan.Paths()
    assert paths.model("v0") == "results/v0/difix/model.pkl"
    assert paths.model("{version}", "control") == "results/{version}/difix/control/model.pkl"
    assert paths.train_log("v0", "control") == "results/v0/difix/control/train_log.csv"
    assert paths.workdir("v0") == "results/v0/difix/work"
    assert paths.base_model("tiny") == "results/difix_base/tiny/model.pkl"
    assert paths.triplets("v0") == "results/v0/triplets.json"
    assert paths.eval_csv("v0") == "results/v0/difix/eval.csv"
    assert paths.eval_deltas("v0", "md") == "results/v0/difix/eval_deltas.md"
    assert paths.nvs_csv("{version}", "{arm}", "{scene}") == "results/{version}/nvs/{arm}/{scene}.csv"
    assert paths.deltas("v0") == "results/v0/deltas.csv"
    assert paths.provenance("v0") == "results/v0/provenance.json"
    assert paths.report("v0", "card.html") == "results/v0/report/card.html"
    assert paths.compare("memo") == "results/ablations/memo/compare.csv"
    assert paths.before_after("v0", "s") == "results/v0/report/before_after/s.png"
    assert paths.ood_triplets("tiny") == "results/difix_base/tiny/ood_triplets.json"
    assert paths.log("evaluate_nvs", "v0", "raw", "s") == "results/logs/evaluate_nvs/v0/raw/s.log"
    assert paths.benchmark("versions_table") == "results/benchmarks/versions_table.tsv"
    assert plan.Paths("out").scene("s") == "out/scenes/s"


def test_default_study_owns_its_work(default_plan):
    assert default_plan.version_names == ("v0",)
    assert default_plan.triplets("v0") == "results/v0/triplets.json"
    assert default_plan.arms == ("raw", "base", "tuned", "control")
    assert default_plan.control_model("v0") == "results/v0/difix/control/model.pkl"
    assert default_plan.base_spec == "results/difix_base/tiny/model.pkl"
    assert default_plan.nvs_model("v0", "raw") is None
    assert default_plan.nvs_model("v0", "tuned") == "results/v0/difix/model.pkl"
    inputs = default_plan.delta_inputs("v0")
    assert inputs["provenance_inputs"] == "results/v0/provenance_inputs.json"
    assert "results/v0/nvs/raw/hi4d_pair15_fight.csv.stamp.json" in inputs["stamps"]
    assert "results/v0/difix/control/model.pkl.stamp.json" in inputs["stamps"]
    assert "results/scenes/hi4d_pair19_piggyback" in inputs["ground_truth"]
    assert inputs["eval_deltas"] == "results/v0/difix/eval_deltas.csv"
    assert len(inputs["control"]) == len(default_plan.version("v0").nvs_eval)
    # the raw renders' quality of each reserved scene, under its evaluation render profile
    scene = default_plan.version("v0").nvs_eval[0]
    assert inputs["render_quality"][0] == f"results/renders/imperfect/{scene}.quality.csv"


def test_a_grid_variant_shares_triplets_renders_arms_and_control_with_v0(grid_plan):
    # training.*: tuning only -> v0's triplets, raw and base arms; a control model of its own
    name = "training.lora8_all.image"
    scene = grid_plan.version("v0").nvs_eval[0]
    assert grid_plan.triplets(name) == "results/v0/triplets.json"
    assert grid_plan.nvs_csv(name, "raw", scene) == f"results/v0/nvs/raw/{scene}.csv"
    assert grid_plan.nvs_csv(name, "base", scene) == f"results/v0/nvs/base/{scene}.csv"
    assert grid_plan.nvs_csv(name, "tuned", scene) == f"results/{name}/nvs/tuned/{scene}.csv"
    assert grid_plan.control_model(name) == f"results/{name}/difix/control/model.pkl"
    # memo.*: other triplets (pose source, references, scenes), the same tuning -> v0's control and arms
    memo = "memo.gt.same_time.train2"
    assert grid_plan.triplets(memo) == f"results/{memo}/triplets.json"
    assert grid_plan.control_model(memo) == "results/v0/difix/control/model.pkl"
    assert grid_plan.nvs_csv(memo, "control", scene) == f"results/v0/nvs/control/{scene}.csv"
    # the evaluation renders of a variant with the same eval profile are v0's
    v0_renders = grid_plan.nvs_scene_inputs("v0", scene)["renders"]
    assert grid_plan.nvs_scene_inputs(name, scene)["renders"] == v0_renders
    tables = grid_plan.grid_tuned_csvs("training")
    assert list(tables)[0] == "v0" and name in tables
    assert grid_plan.grid_provenance("training")[name] == f"results/{name}/provenance_inputs.json"


def test_owners_are_the_first_with_the_same_key():
    assert plan.owners({"a": "k", "b": "j", "c": "k"}) == {"a": "a", "b": "b", "c": "a"}


def test_a_version_is_reached_only_through_the_policy_check():
    config = default_config()
    v1 = copy.deepcopy(config["versions"]["v0"])
    v1["difix_eval"] = ["hi4d_pair17_dance"]
    config["versions"]["v1"] = v1
    checked = plan.load(config, gpus=0)  # the plan builds; the version is refused where it is used
    for _ in range(2):  # a refused version is not remembered as checked
        with pytest.raises(PolicyError, match="version v1: reserved scene hi4d_pair17_dance is in difix_eval"):
            checked.version("v1")
    for use in (checked.triplet_inputs, checked.nvs_arm_csvs, checked.tuning_args, checked.resolved_version_config):
        with pytest.raises(PolicyError):
            use("v1")
    with pytest.raises(PolicyError):
        checked.all_deltas()
    assert checked.unchecked_version("v1").difix_eval == ("hi4d_pair17_dance",)  # listings only


def test_tuning_args_name_the_config_key_of_every_option(default_plan):
    words = shlex.split(default_plan.tuning_args("v0"))
    options = dict(zip(words[::2], words[1::2]))
    names = json.loads(options.pop("--setting-names"))
    assert "*" not in names
    passed = {option[2:].replace("-", "_") for option in options}
    assert passed <= set(names)  # every option passed here is named ...
    # ... and those of the shell command (--base, --triplets) and of the launcher (processes)
    assert names["base"] == "difix.base" and names["triplets"] == "versions.v0 (splits and triplets)"
    assert names["num_processes"] == "the gpu resource of the tuning rule"
    assert names["steps"] == "versions.v0.tuning.steps"
    assert names["long_side"] == "difix.long_side" and names["compile_cache_dir"] == "difix.compile_cache_dir"
    tuning = {k: v for k, v in default_plan.version("v0").tuning.items() if v is not None}
    assert options["--steps"] == str(tuning["steps"]) and options["--long-side"] == "160"
    assert options["--compile-cache-dir"] == "results/compile_cache"
    assert "--hub-cache-dir" not in options


def test_tuning_args_name_the_hub_cache_when_set():
    config = default_config()
    config["difix"]["hub_cache_dir"] = "/scratch/hf"
    words = shlex.split(plan.load(config, gpus=0).tuning_args("v0"))
    options = dict(zip(words[::2], words[1::2]))
    assert options["--hub-cache-dir"] == "/scratch/hf"
    assert json.loads(options["--setting-names"])["hub_cache_dir"] == "difix.hub_cache_dir"


def test_gpu_resources_only_where_the_machine_has_a_gpu(tmp_path):
    assert plan.Plan(default_plan_config(), gpus=0).gpu_resources() == {}
    assert plan.Plan(default_plan_config(), gpus=2).gpu_resources() == {"gpu": 1}
    assert plan.local_gpus({"CUDA_VISIBLE_DEVICES": ""}, tmp_path) == 0
    assert plan.local_gpus({"CUDA_VISIBLE_DEVICES": "-1"}, tmp_path) == 0
    assert plan.local_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}, tmp_path) == 2
    assert plan.local_gpus({}, tmp_path) == 0
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    assert plan.local_gpus({}, tmp_path) == 2


def default_plan_config() -> dict:
    config = default_config()
    plan.load_config(config)
    return config


def test_resources_come_from_the_measured_costs(default_plan):
    scene = default_plan.version("v0").nvs_eval[0]
    size = default_plan.scene_size(scene)
    assert (size.frames, size.width, size.height) == (3, 120, 160)
    chunk = default_plan.evaluation_chunk()
    assert default_plan.nvs_mem_mb("raw", scene, 1) == resources.evaluation_mem_mb(size.pixel_scale, chunk, [], 1)
    assert default_plan.nvs_mem_mb("tuned", scene, 2) == resources.evaluation_mem_mb(
        size.pixel_scale, chunk, ["tiny"], 2, tuned=True
    )
    assert default_plan.nvs_runtime("v0", "tuned", scene, 2) > default_plan.nvs_runtime("v0", "tuned", scene, 1)
    assert default_plan.materialize_runtime(scene, 1) >= resources.JOB_START_MIN
    # its models load one after the other: as much as one tuned arm (measured: 7524 against 7651 MiB)
    assert default_plan.difix_eval_mem_mb("v0", 1) >= default_plan.nvs_mem_mb("tuned", scene, 1)


def test_the_version_record_holds_its_own_scenes_only(grid_plan, default_plan):
    resolved = grid_plan.resolved_version_config("v0")
    assert resolved == default_plan.resolved_version_config("v0")  # a grid's extra scenes leave v0's as it was
    assert set(resolved) == {"version", "render_profile", "eval_render_profile", "data", *plan.STUDY_BLOCKS}


def _hi4d_plan(root) -> plan.Plan:
    config = default_config()
    config["data"].update(source="hi4d", root=str(root))
    return plan.load(config, gpus=0)


def test_materializes_identity_is_the_folder_with_links_followed(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")  # the working directory holds neither tree: absolute paths
    for tree in ("tree_a", "tree_b"):
        (tmp_path / tree / "pair00" / "dance00").mkdir(parents=True)
    root = tmp_path / "hi4d"
    root.symlink_to(tmp_path / "tree_a", target_is_directory=True)
    before = _hi4d_plan(root)
    assert before.sequence_path("hi4d_pair00_dance") == f"{root}/pair00/dance00"
    assert before.sequence_identity("hi4d_pair00_dance") == str(tmp_path / "tree_a" / "pair00" / "dance00")
    root.unlink()
    root.symlink_to(tmp_path / "tree_b", target_is_directory=True)  # data.root as written is unchanged
    after = _hi4d_plan(root)
    assert after.sequence_identity("hi4d_pair00_dance") == str(tmp_path / "tree_b" / "pair00" / "dance00")
    # inside the working directory (the synthetic default's results/): relative, so a copied study stays up to date
    monkeypatch.chdir(tmp_path)
    synthetic = plan.load(default_config(), gpus=0)
    assert synthetic.sequence_identity("hi4d_pair00_dance") == "results/synthetic_hi4d/pair00/dance00"


def test_a_missing_or_empty_hi4d_sequence_folder_is_refused_naming_scene_folder_and_root(tmp_path):
    root = tmp_path / "hi4d"
    (root / "pair00" / "dance00").mkdir(parents=True)
    hi4d = _hi4d_plan(root)
    hint = "point data.root (or data.scene_dirs.hi4d_pair00_dance) at the Hi4D tree that holds the sequence"
    with pytest.raises(plan.PlanError) as error:
        hi4d.sequence_index_files("hi4d_pair00_dance")
    assert str(error.value) == (
        f"scene hi4d_pair00_dance: its sequence folder {root}/pair00/dance00 is empty; data.root is '{root}' and "
        f"the folder is its default folder 'pair00/dance00' under it: {hint}"
    )
    with pytest.raises(plan.PlanError, match=r"its sequence folder .*/pair01/talk01 does not exist"):
        hi4d.sequence_index_files("hi4d_pair01_talk")
    (root / "pair00" / "dance00" / "meta.npz").write_bytes(b"")
    assert hi4d.sequence_index_files("hi4d_pair00_dance")[0] == f"{root}/pair00/dance00/meta.npz"
    # synthetic data: the folder is made by a rule, so a missing one is fine
    synthetic = plan.load(default_config(), gpus=0)
    assert synthetic.sequence_index_files("hi4d_pair01_talk")[0].endswith("pair01/talk01/meta.npz")


def _seeded_plan(seeds, grid=False) -> plan.Plan:
    config = copy.deepcopy(_GRID_CONFIG) if grid else default_config()
    config["versions"]["v0"]["tuning"]["seeds"] = seeds
    return plan.load(config, gpus=0)


def test_one_seed_keeps_every_path_owner_and_tuning_option(default_plan, grid_plan):
    # tuning.seeds: [tuning.seed] is the default spelled out: the same paths and options as without it
    one, grid_one = _seeded_plan([0]), _seeded_plan([0], grid=True)
    assert default_plan.seeds("v0") == one.seeds("v0") == (0,) and one.further_seeds("v0") == ()
    assert one.delta_inputs("v0") == default_plan.delta_inputs("v0") and one.seed_arm_csvs("v0") == {}
    assert one.tuning_args("v0") == default_plan.tuning_args("v0")
    assert one.eval_csvs("v0") == {0: "results/v0/difix/eval.csv"}
    for name in grid_plan.version_names:
        assert grid_one.control_model(name) == grid_plan.control_model(name)
        assert grid_one.provenance_inputs(name) == grid_plan.provenance_inputs(name)


def test_each_further_seed_trains_and_evaluates_in_its_own_folder():
    seeded = _seeded_plan([0, 7, 3])
    scene = seeded.version("v0").nvs_eval[0]
    assert seeded.further_seeds("v0") == (7, 3)
    assert seeded.nvs_model("v0", "tuned") == "results/v0/difix/model.pkl"
    assert seeded.nvs_model("v0", "tuned", 7) == "results/v0/difix/seed7/model.pkl"
    assert seeded.control_model("v0", 3) == "results/v0/difix/control/seed3/model.pkl"
    assert seeded.nvs_csv("v0", "tuned", scene, 7) == f"results/v0/nvs/tuned/seed7/{scene}.csv"
    assert seeded.nvs_csv("v0", "control", scene, 3) == f"results/v0/nvs/control/seed3/{scene}.csv"
    assert seeded.nvs_csv("v0", "raw", scene) == f"results/v0/nvs/raw/{scene}.csv"  # shared by every seed
    assert set(seeded.seed_arm_csvs("v0")) == {"tuned", "control"}
    assert len(seeded.delta_inputs("v0")["seed_csvs"]) == 2 * 2 * len(seeded.version("v0").nvs_eval)
    assert seeded.eval_csvs("v0")[3] == "results/v0/difix/seed3/eval.csv"
    words = shlex.split(seeded.tuning_args("v0", 7))
    options = dict(zip(words[::2], words[1::2]))
    assert options["--seed"] == "7" and "--seeds" not in options
    assert json.loads(options["--setting-names"])["seed"] == "versions.v0.tuning.seeds"
    assert dict(zip(words[::2], words[1::2]))["--seed"] == "7"
    first = dict(zip(*[iter(shlex.split(seeded.tuning_args("v0")))] * 2))
    assert first["--seed"] == "0" and "--seeds" not in first
    with pytest.raises(plan.PlanError, match="seed 5 is not one of its tuning.seeds"):
        seeded.nvs_model("v0", "tuned", 5)


def test_grid_variants_share_control_runs_seed_by_seed():
    # memo.* variants change the triplets, not the tuning: every seed's control run is v0's
    seeded = _seeded_plan([0, 1], grid=True)
    memo = "memo.gt.same_time.train2"
    assert seeded.seeds(memo) == (0, 1)
    assert seeded.control_model(memo, 1) == "results/v0/difix/control/seed1/model.pkl"
    assert seeded.nvs_model(memo, "tuned", 1) == f"results/{memo}/difix/seed1/model.pkl"


def test_grid_comparisons_read_every_versions_further_seeds(grid_plan):
    # compare_grid pairs seed with seed: each version's further seeds' tuned CSVs and internal evaluations
    seeded = _seeded_plan([0, 1], grid=True)
    grid = next(iter(seeded.grids))
    tables, evals = seeded.grid_seed_tables(grid), seeded.grid_seed_evals(grid)
    assert set(tables) == set(evals) == set(seeded.grid_tuned_csvs(grid))
    parent = seeded.grids[grid].parent
    scenes = seeded.grid_scenes(grid)
    assert tables[parent] == [[f"results/{parent}/nvs/tuned/seed1/{scene}.csv" for scene in scenes]]
    assert evals[parent] == [f"results/{parent}/difix/seed1/eval.csv"]
    # one seed: nothing further
    assert all(runs == [] for runs in grid_plan.grid_seed_tables(grid).values())
    assert all(paths == [] for paths in grid_plan.grid_seed_evals(grid).values())


def test_seeds_must_start_with_tuning_seed():
    with pytest.raises(plan.PlanError, match=r"versions.v0.tuning.seeds is \[1, 2\].*versions.v0.tuning.seed \(0\)"):
        _seeded_plan([1, 2])
    with pytest.raises(ConfigError, match="tuning.seeds"):
        _seeded_plan([0, 0])
