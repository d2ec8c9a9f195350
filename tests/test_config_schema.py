"""One source of truth for settings: the schema against the dataclasses that own the defaults.

Every config block that is read into a dataclass may only name that dataclass's fields, and a
default written in the schema must be the dataclass's default (and a value its schema accepts).
The dataclasses are read as they are, so a field added, renamed or given another default (for
example in ``PretrainConfig``) is checked without editing this file.  Every object in the schema
is closed, so unknown keys are refused when the workflow validates its config, before any job.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import jsonschema
import pytest
import yaml

from hi4dfix.difix.infer import InferenceConfig
from hi4dfix.difix.pretrain import PretrainConfig
from hi4dfix.difix.train_config import TrainConfig
from hi4dfix.difix3d_plus import ProgressiveConfig
from hi4dfix.materialize import MaterializeConfig
from hi4dfix.metrics import MetricsConfig
from hi4dfix.render.fit import RenderConfig
from hi4dfix.render.poses import PoseErrorConfig
from hi4dfix.render.scene_renders import split_render_profile
from hi4dfix.report.figures import LossCurveConfig, MetricChartConfig
from hi4dfix.report.gallery import BeforeAfterConfig, GalleryConfig
from hi4dfix.stats import BootstrapConfig
from hi4dfix.synth import SynthConfig
from hi4dfix.triplets import TripletConfig
from workflow_helpers import REPO, default_config, run_snakemake

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())

# Schema blocks (as paths into the schema) and the dataclass that owns their settings.
DATACLASS_BLOCKS = {
    "properties/data/properties/synthetic": SynthConfig,
    "properties/materialize": MaterializeConfig,
    "definitions/render_profile": RenderConfig,
    "definitions/pose_error": PoseErrorConfig,
    "definitions/version/properties/triplets": TripletConfig,
    "definitions/version/properties/tuning": TrainConfig,
    "definitions/version/properties/nvs": ProgressiveConfig,
    "properties/difix/properties/pretrain": PretrainConfig,
    "properties/metrics": MetricsConfig,
    "properties/stats": BootstrapConfig,
    "properties/difix/properties/inference": InferenceConfig,
    "properties/report/properties/metric_charts": MetricChartConfig,
    "properties/report/properties/loss_curve": LossCurveConfig,
    "properties/report/properties/gallery": GalleryConfig,
    "properties/report/properties/before_after": BeforeAfterConfig,
}
# Keys of a dataclass block that another function consumes before the dataclass is built, and
# the defaults that function applies.
_source, _pattern, _ = split_render_profile({})
OTHER_OWNERS = {
    "definitions/render_profile": {"source": _source, "external_pattern": _pattern},
    "definitions/version/properties/nvs": {"mode": "postfix"},  # hi4dfix.evaluate.evaluate_nvs's mode
    # the plan reads the seed list (a run per seed, each given its own --seed): hi4dfix.plan.version_seeds
    "definitions/version/properties/tuning": {"seeds": [0]},  # absent: [tuning.seed], 0 by default
}
# Blocks with keys of their own that no dataclass reads (the workflow reads them).
WORKFLOW_BLOCKS = {
    "",
    "properties/data",
    "properties/policy",
    "properties/difix",
    "properties/difix/properties/control",  # the control arm: read by common.smk and hi4dfix.difix.control
    "properties/difix/properties/extra_arms/additionalProperties",  # an extra arm: hi4dfix.extra_arms reads it
    "properties/report",
    "definitions/version",
    "properties/ablations/additionalProperties",  # hi4dfix.ablations reads grids
}


def object_blocks(schema: dict, path: str = "") -> dict[str, dict]:
    """Every sub-schema that describes an object, by its path."""
    found = {}
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            found[path] = schema
        for key, value in schema.items():
            if isinstance(value, dict) and key not in ("default", "const"):
                found.update(object_blocks(value, f"{path}/{key}".lstrip("/")))
    return found


def plain(value: Any) -> Any:
    """Dataclass defaults as YAML would write them (tuples are lists)."""
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value


def field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def resolve(path: str) -> dict:
    node = SCHEMA
    for part in path.split("/"):
        node = node[part]
    return node


def test_every_object_in_the_schema_is_closed_and_classified():
    for path, block in object_blocks(SCHEMA).items():
        if "properties" in block:
            assert block.get("additionalProperties") is False, f"schema block {path!r} accepts unknown keys"
            assert path in DATACLASS_BLOCKS or path in WORKFLOW_BLOCKS, (
                f"schema block {path!r} is neither mapped to its dataclass nor listed as a workflow block"
            )
        else:  # a map (scene_dirs, render_profiles, versions): its values have a schema
            assert isinstance(block.get("additionalProperties"), dict), f"schema object {path!r} is open"


@pytest.mark.parametrize("path", sorted(DATACLASS_BLOCKS))
def test_schema_block_matches_its_dataclass(path):
    cls = DATACLASS_BLOCKS[path]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    others = OTHER_OWNERS.get(path, {})
    properties = resolve(path)["properties"]
    for key, prop in properties.items():
        where = f"{path}/{key}"
        if key in others:
            expected = others[key]
        else:
            assert key in fields, f"schema key {where} is not a field of {cls.__name__} (renamed or removed?)"
            expected = field_default(fields[key])
            assert expected is not dataclasses.MISSING or "default" not in prop, (
                f"schema gives {where} a default but {cls.__name__}.{key} is required"
            )
        if "default" in prop:
            if dataclasses.is_dataclass(expected):
                message = f"schema default of {where} differs from {cls.__name__}"
                assert type(expected)(**prop["default"]) == expected, message
            else:
                assert prop["default"] == plain(expected), (
                    f"schema default of {where} is {prop['default']!r}, {cls.__name__} says {plain(expected)!r}"
                )
        if expected is not dataclasses.MISSING and not dataclasses.is_dataclass(expected):
            # the dataclass default is a value the config may write
            sub = {"definitions": SCHEMA["definitions"], **prop}  # $refs resolve against this root
            jsonschema.Draft202012Validator(sub).validate(plain(expected))


def test_a_renamed_field_is_caught(monkeypatch):
    """The check above fails when a dataclass field is renamed and the schema is not."""
    renamed = dataclasses.make_dataclass(
        "Renamed",
        [
            (
                "autoencoder_steps" if f.name == "vae_steps" else f.name,
                f.type,
                dataclasses.field(default=f.default, default_factory=f.default_factory),
            )
            for f in dataclasses.fields(PretrainConfig)
        ],
    )
    monkeypatch.setitem(DATACLASS_BLOCKS, "properties/difix/properties/pretrain", renamed)
    with pytest.raises(AssertionError, match="vae_steps is not a field"):
        test_schema_block_matches_its_dataclass("properties/difix/properties/pretrain")


def test_a_drifted_default_is_caught(monkeypatch):
    block = copy.deepcopy(SCHEMA)
    block["definitions"]["version"]["properties"]["tuning"]["properties"]["steps"]["default"] = 150
    monkeypatch.setitem(globals(), "SCHEMA", block)
    with pytest.raises(AssertionError, match="steps is 150, TrainConfig says 200"):
        test_schema_block_matches_its_dataclass("definitions/version/properties/tuning")


@pytest.mark.parametrize(
    "where, key",
    [
        (("versions", "v0", "tuning"), "stepz"),
        (("difix", "pretrain"), "vae_stepz"),
        (("report", "gallery"), "num_sampels"),
        (("render_profiles", "imperfect", "pose_error"), "rot_degree"),
    ],
)
def test_unknown_keys_are_refused_at_dag_build(tmp_path, where, key):
    config = default_config()
    block = config
    for part in where:
        block = block.setdefault(part, {})
    block[key] = 1
    result = run_snakemake(tmp_path, config, "-n", "results/v0/deltas.csv", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert key in output and where[-1] in output, output[-3000:]
    assert not (tmp_path / "results").exists()
