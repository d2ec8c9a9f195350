"""config/README.md documents every block and key of the config schema, and no key the schema lacks."""

from __future__ import annotations

import re

import yaml

from workflow_helpers import REPO

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
README = (REPO / "config" / "README.md").read_text()
TOP_LEVEL = "(top level)"


def _resolve(schema: dict) -> dict:
    """A sub-schema with its ``$ref`` (``#/definitions/...``) merged in."""
    if "$ref" not in schema:
        return schema
    target = SCHEMA
    for part in schema["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve(target), **{k: v for k, v in schema.items() if k != "$ref"}}


def schema_blocks(schema: dict = SCHEMA, path: str = "") -> dict[str, list[str]]:
    """Block path (``difix.pretrain``, ``versions.NAME.tuning``; a mapping of names is ``NAME``) -> its keys."""
    schema = _resolve(schema)
    blocks = {}
    if schema.get("properties"):
        blocks[path or TOP_LEVEL] = list(schema["properties"])
        for key, sub in schema["properties"].items():
            blocks.update(schema_blocks(sub, f"{path}.{key}".lstrip(".")))
    named = schema.get("additionalProperties")
    if isinstance(named, dict) and _resolve(named).get("properties"):
        blocks.update(schema_blocks(named, f"{path}.NAME".lstrip(".")))
    return blocks


def documented_blocks(text: str = README) -> dict[str, list[str]]:
    """Reference sections of the README (``### `block` `` or ``### Top-level blocks``) -> keys of their table rows."""
    heading = "## Reference: every block and key"
    assert heading in text, f"config/README.md has no section {heading!r}"
    reference = text.split(heading, 1)[1]
    blocks = {}
    for section in re.split(r"^### ", reference, flags=re.M)[1:]:
        heading, _, body = section.partition("\n")
        name = TOP_LEVEL if heading.startswith("Top-level") else re.match(r"`([^`]+)`", heading)[1]
        blocks[name] = re.findall(r"^\| `([^`]+)` \|", body, flags=re.M)
    return blocks


def test_walker_finds_nested_and_named_blocks():
    blocks = schema_blocks()
    assert blocks[TOP_LEVEL][:2] == ["data", "materialize"]
    assert "mode" in blocks["versions.NAME.nvs"] and "rot_deg" in blocks["render_profiles.NAME.pose_error"]
    assert "n_resamples" in blocks["stats"] and "data.scene_dirs" not in blocks  # a map of names, no keys


def test_every_schema_block_and_key_is_documented():
    documented = documented_blocks()
    missing_blocks = sorted(set(schema_blocks()) - set(documented))
    assert not missing_blocks, f"config/README.md has no reference section for {missing_blocks}"
    missing = [
        f"{block}.{key}" for block, keys in schema_blocks().items() for key in keys if key not in documented[block]
    ]
    assert not missing, f"config/README.md does not document {missing}"


def test_documented_keys_exist_in_the_schema():
    schema = schema_blocks()
    stale = [
        f"{block}.{key}"
        for block, keys in documented_blocks().items()
        for key in keys
        if key not in schema.get(block, [])
    ]
    assert not stale, f"config/README.md documents keys the schema does not have: {stale}"


def test_a_dropped_key_is_found():
    text = README.replace("| `chunk_views` |", "| chunk_views |")
    assert "chunk_views" not in documented_blocks(text)["metrics"]
