"""The reserved-scene policy and the scene-name mapping (pure, no Snakemake)."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from hi4dfix.hi4d import default_sequence_dir, parse_scene_name
from hi4dfix.study import PolicyError, Study

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_default_sequence_dir():
    assert default_sequence_dir("hi4d_pair00_dance") == "pair00/dance00"
    assert default_sequence_dir("hi4d_pair19_piggyback") == "pair19/piggyback19"
    assert (parse_scene_name("hi4d_pair15_fight").pair, parse_scene_name("hi4d_pair15_fight").action) == (15, "fight")
    with pytest.raises(ValueError, match="hi4d_pairNN_action"):
        parse_scene_name("pair00_dance")


def test_v0_is_the_memo(config):
    study = Study.from_config(config)
    v0 = study.check_version("v0")
    assert v0.difix_train == ("hi4d_pair00_dance", "hi4d_pair01_talk")
    assert v0.difix_eval == ("hi4d_pair02_dance",)
    assert set(v0.nvs_eval) == study.reserved_scenes == {
        "hi4d_pair15_fight",
        "hi4d_pair16_jump",
        "hi4d_pair17_dance",
        "hi4d_pair19_piggyback",
    }


def test_scene_dir_override(config):
    config["data"]["scene_dirs"] = {"hi4d_pair15_fight": "pair15_1/pair15/fight15"}
    study = Study.from_config(config)
    assert study.sequence_dir("hi4d_pair15_fight") == "pair15_1/pair15/fight15"
    assert study.scene_for_sequence_dir("pair15_1/pair15/fight15") == "hi4d_pair15_fight"
    assert study.sequence_dir("hi4d_pair16_jump") == "pair16/jump16"


def _broken(config, **changes):
    config = copy.deepcopy(config)
    config["versions"]["v0"].update(changes)
    return Study.from_config(config)


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"difix_train": ["hi4d_pair00_dance", "hi4d_pair16_jump"]},
            r"version v0: reserved scene hi4d_pair16_jump is in difix_train",
        ),
        (
            {"difix_eval": ["hi4d_pair19_piggyback"]},
            r"version v0: reserved scene hi4d_pair19_piggyback is in difix_eval",
        ),
        (
            {"nvs_eval": ["hi4d_pair15_fight", "hi4d_pair16_jump", "hi4d_pair17_dance"]},
            r"version v0: nvs_eval .*missing: hi4d_pair19_piggyback",
        ),
        (
            {
                "nvs_eval": [
                    "hi4d_pair15_fight",
                    "hi4d_pair16_jump",
                    "hi4d_pair17_dance",
                    "hi4d_pair19_piggyback",
                    "hi4d_pair02_dance",
                ]
            },
            r"version v0: nvs_eval .*not reserved: hi4d_pair02_dance",
        ),
        ({"difix_eval": ["hi4d_pair01_talk"]}, r"version v0: difix_eval scene hi4d_pair01_talk shares Hi4D pair01"),
        ({"difix_train": ["hi4d_pair42_hug"]}, r"version v0, difix_train: unknown scene 'hi4d_pair42_hug'"),
        ({"render_profile": "nope"}, r"version v0: render_profile 'nope'"),
    ],
)
def test_policy_violations_name_version_and_scene(config, changes, message):
    study = _broken(config, **changes)
    with pytest.raises(PolicyError, match=message):
        study.check_version("v0")


def test_unknown_version(config):
    with pytest.raises(PolicyError, match="unknown study version 'v9'"):
        Study.from_config(config).check_version("v9")


# ---- the policy by data identity: folders and (pair, action), not names ----------------------


def _with_scene(config, scene, folder=None, **version_changes):
    """``config`` with ``scene`` added to data.scenes (mapped to ``folder`` when given) and v0 changed."""
    config = copy.deepcopy(config)
    config["data"]["scenes"].append(scene)
    if folder is not None:
        config["data"]["scene_dirs"][scene] = folder
    config["versions"]["v0"].update(version_changes)
    return config


@pytest.mark.parametrize("where", ["data.scenes", "policy.reserved_scenes"])
def test_non_canonical_scene_names_are_refused_with_the_canonical_spelling(config, where):
    if where == "data.scenes":
        config = _with_scene(config, "hi4d_pair015_fight", difix_train=["hi4d_pair015_fight"])
    else:
        config["policy"]["reserved_scenes"] = ["hi4d_pair015_fight"]
    with pytest.raises(
        PolicyError, match=rf"{where}: scene name 'hi4d_pair015_fight' is not canonical: write it 'hi4d_pair15_fight'"
    ):
        Study.from_config(config)


def test_a_non_canonical_name_in_a_split_gets_the_canonical_spelling(config):
    config["versions"]["v0"]["difix_train"] = ["hi4d_pair00_dance", "hi4d_pair1_talk"]
    with pytest.raises(
        PolicyError, match=r"version v0, difix_train: .*'hi4d_pair1_talk' is not canonical: write it 'hi4d_pair01_talk'"
    ):
        Study.from_config(config).check_version("v0")


@pytest.mark.parametrize(
    "folder",
    [
        "pair15/fight15",
        "pair15/fight15/",
        "./pair15//fight15",
        "pair15/x/../fight15",
        "../synthetic_hi4d/pair15/fight15",
    ],
)
def test_a_scene_mapped_onto_a_reserved_folder_is_refused_however_spelled(config, folder):
    config = _with_scene(config, "hi4d_pair03_dance", folder, difix_train=["hi4d_pair00_dance", "hi4d_pair03_dance"])
    with pytest.raises(PolicyError) as error:
        Study.from_config(config)
    message = str(error.value)
    assert "hi4d_pair15_fight and hi4d_pair03_dance resolve to the same sequence folder pair15/fight15" in message
    assert "reserved scene hi4d_pair15_fight's data a DiFix sample (version v0 difix_train)" in message


def test_two_scenes_sharing_a_folder_are_refused(config):
    config = _with_scene(config, "hi4d_pair03_dance", "pair00/dance00/")
    with pytest.raises(
        PolicyError, match="hi4d_pair00_dance and hi4d_pair03_dance resolve to the same sequence folder pair00/dance00"
    ):
        Study.from_config(config)


def test_folders_are_normalised_and_looked_up_normalised(config):
    config["data"]["scene_dirs"] = {"hi4d_pair15_fight": "./pair15_1//pair15/fight15/"}
    study = Study.from_config(config)
    assert study.sequence_dir("hi4d_pair15_fight") == "pair15_1/pair15/fight15"
    assert study.scene_for_sequence_dir("pair15_1/pair15/fight15/") == "hi4d_pair15_fight"
    assert study.reserved_dirs["hi4d_pair15_fight"] == "pair15_1/pair15/fight15"


@pytest.mark.parametrize("folder, message", [("/data/pair03/dance03", "is absolute"), ("x/..", "is data.root itself")])
def test_unusable_scene_dirs_are_refused(config, folder, message):
    config = _with_scene(config, "hi4d_pair03_dance", folder)
    with pytest.raises(PolicyError, match=f"data.scene_dirs.hi4d_pair03_dance: .*{message}"):
        Study.from_config(config)


def test_identity_comes_from_an_overridden_hi4d_folder_else_from_the_name(config):
    config = _with_scene(config, "hi4d_pair03_dance", "copies/pair15/fight15")
    config["data"]["scenes"].append("hi4d_pair04_hug")
    config["data"]["scene_dirs"]["hi4d_pair04_hug"] = "custom/sequence_a"
    config["data"]["scene_dirs"]["hi4d_pair15_fight"] = "pair15_1/pair15/fight15"
    study = Study.from_config(config)
    assert (study.identity("hi4d_pair03_dance").pair, study.identity("hi4d_pair03_dance").action) == (15, "fight")
    assert (study.identity("hi4d_pair04_hug").pair, study.identity("hi4d_pair04_hug").action) == (4, "hug")
    assert (study.identity("hi4d_pair15_fight").pair, study.identity("hi4d_pair15_fight").action) == (15, "fight")
    assert (study.identity("hi4d_pair00_dance").pair, study.identity("hi4d_pair00_dance").action) == (0, "dance")


@pytest.mark.parametrize("key", ["difix_train", "difix_eval"])
def test_a_scene_holding_a_reserved_pair_and_action_is_refused(config, key):
    changes = (
        {"difix_train": ["hi4d_pair00_dance", "hi4d_pair03_dance"]}
        if key == "difix_train"
        else {"difix_eval": ["hi4d_pair03_dance"]}
    )
    config = _with_scene(config, "hi4d_pair03_dance", "copies/pair15/fight15", **changes)
    with pytest.raises(
        PolicyError,
        match=rf"version v0: {key} scene hi4d_pair03_dance \(folder copies/pair15/fight15 under data.root\) "
        r"is the data of "
        r"reserved scene hi4d_pair15_fight: same Hi4D pair15 action fight",
    ):
        Study.from_config(config).check_version("v0")


def test_a_reserved_folder_not_in_data_scenes_is_still_protected(config):
    """Reserved scenes resolve to their default folder even when data.scenes omits them."""
    config["data"]["scenes"].remove("hi4d_pair16_jump")
    config["versions"]["v0"]["nvs_eval"].remove("hi4d_pair16_jump")
    config = _with_scene(config, "hi4d_pair03_dance", "pair16/jump16", difix_eval=["hi4d_pair03_dance"])
    with pytest.raises(
        PolicyError,
        match=r"version v0: difix_eval scene hi4d_pair03_dance .* reserved scene hi4d_pair16_jump: "
        r"same sequence folder pair16/jump16",
    ):
        Study.from_config(config).check_version("v0")


def test_a_folder_nested_in_a_reserved_one_is_refused(config):
    config = _with_scene(config, "hi4d_pair03_dance", "pair17/dance17/cut", difix_eval=["hi4d_pair03_dance"])
    with pytest.raises(
        PolicyError,
        match=r"reserved scene hi4d_pair17_dance: folder pair17/dance17/cut and the reserved folder pair17/dance17 "
        r"are nested",
    ):
        Study.from_config(config).check_version("v0")


def test_pair_leakage_compares_identities(config):
    # hi4d_pair03_dance holds pair01's data (its folder says so): it may not evaluate a model trained on pair01
    config = _with_scene(config, "hi4d_pair03_dance", "copies/pair01/dance01", difix_eval=["hi4d_pair03_dance"])
    with pytest.raises(
        PolicyError,
        match=r"version v0: difix_eval scene hi4d_pair03_dance shares Hi4D pair01 with "
        r"difix_train scene hi4d_pair01_talk",
    ):
        Study.from_config(config).check_version("v0")


def test_a_scene_with_its_own_data_passes(config):
    config = _with_scene(config, "hi4d_pair03_dance", "pair03_v2/pair03/dance03", difix_eval=["hi4d_pair03_dance"])
    assert Study.from_config(config).check_version("v0").difix_eval == ("hi4d_pair03_dance",)


# ---- schema errors: the failing key first ----------------------------------------------------


SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_schema_check_accepts_the_default_config_without_changing_it(config):
    from hi4dfix.config_schema import check_config

    before = copy.deepcopy(config)
    check_config(config, SCHEMA)
    assert config == before  # defaults are filled into a copy; Snakemake's validate fills the real one


def test_schema_problems_name_key_paths_best_first(config):
    from hi4dfix.config_schema import ConfigError, check_config

    config["data"]["scenes"][2] = "Pair 2"
    config["versions"]["v0"]["tuning"]["lr"] = -1
    del config["versions"]["v0"]["objective"]
    with pytest.raises(ConfigError) as error:
        check_config(config, SCHEMA, shown_as="schema.yaml")
    lines = str(error.value).splitlines()
    assert lines[0].endswith("(schema schema.yaml)") and lines[1] == "2 more problem(s):"
    assert {line.strip().split(":")[0] for line in lines[2:]} | {lines[0].split(":")[0]} == {
        "config key data.scenes[2]",
        "config key versions.v0.tuning.lr",
        "config key versions.v0",
    }
    assert "'objective' is a required property" in str(error.value)


def test_the_four_reserved_scenes_cannot_be_dropped_only_added_to(config):
    dropped = copy.deepcopy(config)
    dropped["policy"]["reserved_scenes"] = ["hi4d_pair16_jump", "hi4d_pair17_dance", "hi4d_pair19_piggyback"]
    with pytest.raises(PolicyError, match=r"^policy.reserved_scenes drops hi4d_pair15_fight: .* never drop these"):
        Study.from_config(dropped)
    config["policy"]["reserved_scenes"] = [*config["policy"]["reserved_scenes"], "hi4d_pair01_talk"]
    assert "hi4d_pair01_talk" in Study.from_config(config).reserved_scenes


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"external_pattern": "/renders/{scene}.png"},
            "external_pattern '/renders/{scene}.png' has no {cam} or {frame}",
        ),
        ({"external_pattern": "/r/{scene}/{cam}.png"}, "external_pattern '/r/{scene}/{cam}.png' has no {frame}"),
        ({"pose_error": {"rot_deg": float("nan")}}, "render_profiles.imperfect.pose_error.rot_deg is nan"),
        ({"pose_error": {"trans_mm": float("inf")}}, "render_profiles.imperfect.pose_error.trans_mm is inf"),
    ],
)
def test_render_profiles_that_would_quietly_go_wrong_are_refused(config, change, message):
    config["render_profiles"]["imperfect"].update(change)
    with pytest.raises(PolicyError, match=re.escape(message)):
        Study.from_config(config)


def test_eval_render_profile_names_the_evaluation_renders(config):
    config["render_profiles"]["gt_poses"] = {**config["render_profiles"]["imperfect"], "pose_source": "gt"}
    config["versions"]["v0"]["render_profile"] = "gt_poses"
    config["versions"]["v0"]["eval_render_profile"] = "imperfect"
    version = Study.from_config(config).check_version("v0")
    assert version.eval_profile == "imperfect"
    assert [version.scene_profile(s) for s in version.difix_scenes] == ["gt_poses", "gt_poses", "imperfect"]
    config["versions"]["v0"]["eval_render_profile"] = "sharp"
    with pytest.raises(PolicyError, match="version v0: eval_render_profile 'sharp' is not defined under"):
        Study.from_config(config).check_version("v0")


# ---- links under data.root: the folder a scene's data really is ------------------------------


def _tree(root, *folders):
    for folder in folders:
        (root / folder).mkdir(parents=True)
    return root


def test_a_link_to_a_reserved_sequence_is_refused_with_links_followed(config, tmp_path):
    root = _tree(tmp_path / "hi4d", "pair15/fight15", "pair05")
    (root / "pair05/talk05").symlink_to(root / "pair15/fight15", target_is_directory=True)
    config["data"]["root"] = str(root)
    config = _with_scene(config, "hi4d_pair05_talk", difix_train=["hi4d_pair00_dance", "hi4d_pair05_talk"])
    Study.from_config(config).check_version("v0")  # as text the folder is pair05/talk05: no way to see it
    with pytest.raises(
        PolicyError,
        match=r"hi4d_pair15_fight and hi4d_pair05_talk resolve to the same sequence folder pair15/fight15 .*"
        r"hi4d_pair05_talk would make reserved scene hi4d_pair15_fight's data a DiFix sample "
        r"\(version v0 difix_train\)",
    ):
        Study.from_config(config, resolve_links=True)


def test_a_reserved_name_pointed_at_a_decoy_is_refused(config, tmp_path):
    root = _tree(tmp_path / "hi4d", "pair15/fight15", "decoy/sequence", "pair05")
    (root / "pair05/talk05").symlink_to(root / "pair15/fight15", target_is_directory=True)
    config["data"]["root"] = str(root)
    config = _with_scene(config, "hi4d_pair05_talk", difix_train=["hi4d_pair00_dance", "hi4d_pair05_talk"])
    config["data"]["scene_dirs"]["hi4d_pair15_fight"] = "decoy/sequence"
    with pytest.raises(
        PolicyError,
        match=r"data.scene_dirs.hi4d_pair15_fight: reserved scene hi4d_pair15_fight maps to folder decoy/sequence, "
        r"which is not its own Hi4D sequence pair15/fight15",
    ):
        Study.from_config(config)
    # a link that makes the decoy look like the reserved folder: followed, it is not
    (root / "pair15_1/pair15").mkdir(parents=True)
    (root / "pair15_1/pair15/fight15").symlink_to(root / "decoy/sequence", target_is_directory=True)
    config["data"]["scene_dirs"]["hi4d_pair15_fight"] = "pair15_1/pair15/fight15"
    Study.from_config(config)  # as text, its own folder
    with pytest.raises(PolicyError, match=r"maps to folder pair15_1/pair15/fight15 \(a link to decoy/sequence\)"):
        Study.from_config(config, resolve_links=True)


def test_two_scenes_linking_to_one_sequence_are_refused(config, tmp_path):
    root = _tree(tmp_path / "hi4d", "pair03/hug03", "pair04")
    (root / "pair04/hug04").symlink_to(root / "pair03/hug03", target_is_directory=True)
    config["data"]["root"] = str(root)
    config = _with_scene(config, "hi4d_pair03_hug")
    config = _with_scene(config, "hi4d_pair04_hug")
    with pytest.raises(PolicyError, match="hi4d_pair03_hug and hi4d_pair04_hug resolve to the same sequence folder"):
        Study.from_config(config, resolve_links=True)
