"""The reserved-scene policy and the scene-name mapping (pure, no Snakemake)."""

import copy
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
        ({"difix_train": ["hi4d_pair00_dance", "hi4d_pair16_jump"]}, r"version v0: reserved scene hi4d_pair16_jump is in difix_train"),
        ({"difix_eval": ["hi4d_pair19_piggyback"]}, r"version v0: reserved scene hi4d_pair19_piggyback is in difix_eval"),
        ({"nvs_eval": ["hi4d_pair15_fight", "hi4d_pair16_jump", "hi4d_pair17_dance"]}, r"version v0: nvs_eval .*missing: hi4d_pair19_piggyback"),
        (
            {"nvs_eval": ["hi4d_pair15_fight", "hi4d_pair16_jump", "hi4d_pair17_dance", "hi4d_pair19_piggyback", "hi4d_pair02_dance"]},
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
