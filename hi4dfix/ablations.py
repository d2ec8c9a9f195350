"""Versions that inherit (``extends:``) and grids of versions (``ablations:``), expanded into plain versions.

The workflow calls :func:`expand_config` on the raw config before it validates it, so the schema and the
reserved-scene policy see every version as it will run: merged with its parent, or expanded from a grid.

**Inheritance.** ``versions.NAME.extends: PARENT`` makes the version the parent's block deep-merged with
its own (mappings merge key by key, lists and scalars replace). The merged block keeps ``extends`` (it
says where the version came from); expected outputs inherited unchanged name the version, not the parent.

**Grids.** ``ablations.GRID`` names a parent version and axes, each a setting's path and its values::

    ablations:
      memo:
        parent: v0
        axes:
          render_profiles.*.pose_source: [estimated, gt]          # the parent's render profile
          triplets.reference: [same_time, temporal, mixed]        # the version block (or versions.*.triplets...)
          difix_train:                                            # a mapping gives each value its label
            train2: [hi4d_pair00_dance, hi4d_pair01_talk]
            train4: [hi4d_pair00_dance, hi4d_pair01_talk, hi4d_pair03_hug, hi4d_pair04_kick]

A value at a path that holds a mapping merges into it (``tuning: {unet: lora, unet_lora_rank: 8}``), as
``extends`` does. The grid's variants are the product of the axes, in axis order; a variant's version name
is ``GRID.LABEL1.LABEL2...``, a label per axis: a string value is its own label, a number or boolean is
``LEAF-VALUE``, a list is ``LEAF`` and its length (``LEAF-INDEX`` when lengths repeat), unless the axis
gives labels. Shared work: render-profile axes make render profiles named by the grid and their labels,
one per distinct settings (a variant whose settings are an existing profile's uses that profile), so
renders are made once per render settings; a variant whose settings are the parent's *is* the parent
(no version of its own; it is the grid's reference row).

Refused, naming grid, axis and value: an axis path the schema does not know, a value the schema refuses,
a variant that breaks the reserved-scene policy, two variants with the same settings, a grid-made render
profile whose name a config's profile of other settings has (naming both), and (naming the
versions) an ``extends`` cycle or a missing parent.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from jsonschema import Draft202012Validator

from hi4dfix.config_schema import _with_defaults, key_path
from hi4dfix.study import PolicyError, Study, block_eval_profile

# Keys of a version block that describe it rather than how it runs: ignored when settings are compared.
# Profile names are compared by their settings (_settings_key).
DESCRIPTIVE_KEYS = ("objective", "decisions", "expected_outputs", "extends", "render_profile", "eval_render_profile")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class GridError(ValueError):
    """A version's ``extends`` or an ``ablations`` grid is wrong; the message names grid, axis and value."""


@dataclass(frozen=True)
class Axis:
    path: str  # as written in the grid
    target: str  # "version" or "render_profile"
    keys: tuple[str, ...]  # path inside the version block or the render profile
    labels: tuple[str, ...]
    values: tuple[Any, ...]
    labelled: bool = False  # the grid gave the labels (a mapping of labels to values)

    def shown(self, index: int) -> str:
        """How a variant's value of this axis reads: its label if the grid gave one, else the value."""
        value = self.values[index]
        return self.labels[index] if self.labelled or not isinstance(value, (str, int, float)) else str(value)


@dataclass(frozen=True)
class Variant:
    name: str  # the version that runs it: GRID.LABELS, or the parent's name when the settings are the parent's
    label: str  # GRID.LABELS
    choices: tuple[tuple[str, str], ...]  # (axis path, label: the given label, or the value as written)
    same_as_parent: bool

    def describe(self) -> str:
        return ", ".join(f"{path} = {label}" for path, label in self.choices)


@dataclass(frozen=True)
class Grid:
    name: str
    parent: str
    axes: tuple[Axis, ...]
    variants: tuple[Variant, ...]

    @property
    def compared(self) -> tuple[Variant, ...]:
        """Variants compared with the parent (those whose settings differ from it)."""
        return tuple(v for v in self.variants if not v.same_as_parent)


# ---- inheritance ------------------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in: mappings key by key, anything else (lists too) replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _rename_outputs(outputs: Sequence[str], parent: str, child: str) -> list[str]:
    return [re.sub(rf"^results/{re.escape(parent)}/", f"results/{child}/", path) for path in outputs]


def resolve_extends(versions: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every version merged with its ancestors (see the module doc), in the order given."""
    resolved: dict[str, dict[str, Any]] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
        if name in resolved:
            return resolved[name]
        if name in chain:
            cycle = " -> ".join([*chain[chain.index(name) :], name])
            raise GridError(f"versions: extends cycle {cycle}; a version cannot inherit from itself")
        block = versions[name]
        parent = block.get("extends")
        if parent is None:
            merged = copy.deepcopy(dict(block))
        else:
            if parent not in versions:
                known = ", ".join(sorted(versions))
                raise GridError(f"versions.{name}.extends: {parent!r} is not a version (defined: {known})")
            own = {key: value for key, value in block.items() if key != "extends"}
            merged = deep_merge(resolve(parent, (*chain, name)), own)
            merged["extends"] = parent
            if "expected_outputs" not in own and "expected_outputs" in merged:
                merged["expected_outputs"] = _rename_outputs(merged["expected_outputs"], parent, name)
        resolved[name] = merged
        return merged

    for name in versions:
        resolve(name, ())
    return {name: resolved[name] for name in versions}


def differences(child: Mapping[str, Any], parent: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(path, parent value, child value)`` for every setting that differs, mappings walked key by key."""
    found = []
    for key in sorted(set(child) | set(parent)):
        if key == "extends":
            continue
        path = f"{prefix}{key}"
        mine, theirs = child.get(key), parent.get(key)
        if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
            found += differences(mine, theirs, f"{path}.")
        elif mine != theirs:
            found.append((path, theirs, mine))
    return found


# ---- schema helpers ----------------------------------------------------------------------------------


def _subschema(schema: Mapping[str, Any], definition: str) -> dict[str, Any]:
    return {"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]}


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


_FILLING_VALIDATOR = _with_defaults(Draft202012Validator)


def filled(schema: Mapping[str, Any], definition: str, instance: Mapping[str, Any]) -> tuple[dict, list]:
    """``instance`` with the schema's defaults filled in, and the schema's errors (best first)."""
    validator = _FILLING_VALIDATOR(_subschema(schema, definition))
    instance = copy.deepcopy(dict(instance))
    errors = sorted(validator.iter_errors(instance), key=lambda e: len(list(e.absolute_path)), reverse=True)
    return instance, errors


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# ---- grids -------------------------------------------------------------------------------------------


def _auto_labels(leaf: str, values: Sequence[Any]) -> list[str]:
    lengths = [len(v) for v in values if isinstance(v, (list, tuple))]
    unique_lengths = len(set(lengths)) == len(lengths)
    labels = []
    for index, value in enumerate(values):
        if isinstance(value, str):
            label = value
        elif isinstance(value, bool) or value is None:
            label = f"{leaf}-{str(value).lower()}"
        elif isinstance(value, (int, float)):
            label = f"{leaf}-{value:g}"
        elif isinstance(value, (list, tuple)) and unique_lengths:
            label = f"{leaf}{len(value)}"
        else:
            label = f"{leaf}-{index + 1}"
        labels.append(re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or f"{leaf}-{index + 1}")
    return labels


def parse_axis(grid: str, path: str, spec: Any, parent_profile: str, schema: Mapping[str, Any]) -> Axis:
    """One axis of a grid: where its path points (version block or render profile) and its labelled values."""
    where = f"ablations.{grid}: axis {path}"
    parts = path.split(".")
    if parts[0] == "render_profiles":
        if len(parts) < 3:
            raise GridError(
                f"{where}: a render-profile axis is render_profiles.*.SETTING (e.g. render_profiles.*.pose_source)"
            )
        if parts[1] not in ("*", parent_profile):
            raise GridError(
                f"{where}: names render profile {parts[1]!r}, but the parent's render profile is {parent_profile!r} "
                "(write render_profiles.* for the parent's)"
            )
        target, keys, node = "render_profile", tuple(parts[2:]), schema["definitions"]["render_profile"]
    else:
        if parts[0] == "versions":
            if len(parts) < 3 or parts[1] != "*":
                raise GridError(f"{where}: a version axis is versions.*.SETTING or SETTING (e.g. triplets.reference)")
            parts = parts[2:]
        target, keys, node = "version", tuple(parts), schema["definitions"]["version"]
    for depth, key in enumerate(keys):
        node = _resolve(schema, node)
        known = node.get("properties", {})
        if key not in known:
            at = ".".join(keys[:depth]) or target.replace("_", " ")
            raise GridError(
                f"{where}: no setting {key!r} in {at} (the path does not exist); known: {', '.join(known) or 'none'}"
            )
        node = known[key]
    if key in ("extends", "objective", "decisions", "expected_outputs") and target == "version":
        raise GridError(f"{where}: {key} describes a version; it cannot be an axis")
    if isinstance(spec, Mapping):
        labels, values = [str(label) for label in spec], list(spec.values())
        for label in labels:
            if not LABEL.match(label):
                raise GridError(
                    f"{where}: label {label!r} must match {LABEL.pattern} (it becomes part of a version name)"
                )
    elif isinstance(spec, (list, tuple)):
        values = list(spec)
        labels = _auto_labels(keys[-1], values)
    else:
        raise GridError(f"{where}: values must be a list or a mapping of labels to values, got {spec!r}")
    if not values:
        raise GridError(f"{where}: no values")
    return Axis(path, target, keys, tuple(labels), tuple(values), labelled=isinstance(spec, Mapping))


def _set(block: dict[str, Any], keys: Sequence[str], value: Any) -> None:
    for key in keys[:-1]:
        block = block.setdefault(key, {})
    leaf = keys[-1]
    if isinstance(value, Mapping) and isinstance(block.get(leaf), Mapping):
        block[leaf] = deep_merge(block[leaf], value)
    else:
        block[leaf] = copy.deepcopy(value)


def _blame(axes: Sequence[Axis], combination: Sequence[int], target: str, error_path: Sequence[Any]) -> str:
    """``axis P = LABEL (VALUE)`` of the axis the failing key lies under (every axis of the target if none)."""
    error_path = tuple(str(part) for part in error_path)
    hits = [
        i
        for i, axis in enumerate(axes)
        if axis.target == target
        and (error_path[: len(axis.keys)] == axis.keys or axis.keys[: len(error_path)] == error_path)
    ]
    hits = hits or [i for i, axis in enumerate(axes) if axis.target == target] or list(range(len(axes)))
    return ", ".join(
        f"axis {axes[i].path} = {axes[i].labels[combination[i]]} ({canonical(axes[i].values[combination[i]])})"
        for i in hits
    )


def _settings_key(block: Mapping[str, Any], profile: Mapping[str, Any], eval_profile: Mapping[str, Any]) -> str:
    runs = {key: value for key, value in block.items() if key not in DESCRIPTIVE_KEYS}
    return canonical({"version": runs, "render_profile": profile, "eval_render_profile": eval_profile})


def expand_grid(
    grid: str,
    spec: Mapping[str, Any],
    versions: dict[str, dict[str, Any]],
    profiles: dict[str, dict[str, Any]],
    schema: Mapping[str, Any],
) -> tuple[Grid, dict[str, dict[str, Any]]]:
    """The grid's variants; new versions are added to ``versions`` and new render profiles to ``profiles``.
    Returns the grid and the new versions' blocks."""
    parent = spec["parent"]
    if parent not in versions:
        raise GridError(
            f"ablations.{grid}.parent: {parent!r} is not a version (defined: {', '.join(sorted(versions))})"
        )
    parent_block = versions[parent]
    parent_profile_name = parent_block.get("render_profile")
    if parent_profile_name not in profiles:
        raise GridError(
            f"ablations.{grid}: the parent {parent}'s render profile {parent_profile_name!r} is not defined"
        )
    axes = tuple(parse_axis(grid, path, values, parent_profile_name, schema) for path, values in spec["axes"].items())
    filled_profiles = {name: filled(schema, "render_profile", block)[0] for name, block in profiles.items()}
    parent_filled, _ = filled(schema, "version", parent_block)
    # the parent's evaluation renders: a render-profile axis varies the training renders only, so every
    # variant is scored on the same inputs (the inference condition) as the parent
    parent_eval_name = block_eval_profile(parent_block)
    if parent_eval_name not in profiles:
        raise GridError(
            f"ablations.{grid}: the parent {parent}'s eval_render_profile {parent_eval_name!r} is not defined"
        )
    parent_key = _settings_key(parent_filled, filled_profiles[parent_profile_name], filled_profiles[parent_eval_name])
    seen: dict[str, str] = {}  # settings -> variant label
    variants, new_versions = [], {}
    for combination in itertools.product(*(range(len(axis.values)) for axis in axes)):
        label = ".".join([grid, *(axis.labels[i] for axis, i in zip(axes, combination))])
        choices = tuple((axis.path, axis.shown(i)) for axis, i in zip(axes, combination))
        block = {key: value for key, value in copy.deepcopy(parent_block).items() if key != "extends"}
        profile = copy.deepcopy(profiles[parent_profile_name])
        for axis, i in zip(axes, combination):
            _set(block if axis.target == "version" else profile, axis.keys, axis.values[i])
        profile, errors = filled(schema, "render_profile", profile)
        if errors:
            blamed = _blame(axes, combination, "render_profile", errors[0].absolute_path)
            raise GridError(
                f"ablations.{grid}: variant {label}: {blamed}: "
                f"render profile setting {key_path(errors[0]) or '(profile)'}: {errors[0].message}"
            )
        block_filled, errors = filled(schema, "version", block)
        if errors:
            raise GridError(
                f"ablations.{grid}: variant {label}: {_blame(axes, combination, 'version', errors[0].absolute_path)}: "
                f"setting {key_path(errors[0]) or '(version)'}: {errors[0].message}"
            )
        eval_name = block.get("eval_render_profile") or parent_eval_name
        if eval_name not in filled_profiles:
            raise GridError(
                f"ablations.{grid}: variant {label}: {_blame(axes, combination, 'version', ('eval_render_profile',))}: "
                f"eval_render_profile {eval_name!r} is not defined under render_profiles"
            )
        settings = _settings_key(block_filled, profile, filled_profiles[eval_name])
        if settings in seen:
            raise GridError(
                f"ablations.{grid}: variants {seen[settings]} and {label} collapse to the same settings "
                f"({Variant(label, label, choices, False).describe()}); every variant must differ"
            )
        seen[settings] = label
        if settings == parent_key:
            variants.append(Variant(parent, label, choices, True))
            continue
        profile_name = next(
            (name for name, settings_of in filled_profiles.items() if canonical(settings_of) == canonical(profile)),
            None,
        )
        if profile_name is None:
            labels = [axis.labels[i] for axis, i in zip(axes, combination) if axis.target == "render_profile"]
            profile_name = ".".join([grid, *labels])
            if profile_name in profiles:  # a user's profile of this name (other settings): never replace it
                raise GridError(
                    f"ablations.{grid}: variant {label} ({_blame(axes, combination, 'render_profile', ())}) makes "
                    f"render profile {profile_name!r}, but render_profiles.{profile_name} is already defined with "
                    "other settings; rename that profile or the grid"
                )
            profiles[profile_name] = profile
            filled_profiles[profile_name] = profile
        if label in versions:
            raise GridError(f"ablations.{grid}: variant {label} clashes with the version of that name")
        block["render_profile"] = profile_name
        if eval_name != profile_name:
            block["eval_render_profile"] = eval_name
        block["extends"] = parent
        block["objective"] = f"Ablation {grid} of {parent}: {Variant(label, label, choices, False).describe()}."
        block["decisions"] = [
            *parent_block.get("decisions", ()),
            *(f"Ablation {grid}: {p} = {lab}." for p, lab in choices),
        ]
        block["expected_outputs"] = _rename_outputs(parent_block.get("expected_outputs", ()), parent, label)
        versions[label] = block
        new_versions[label] = block
        variants.append(Variant(label, label, choices, False))
    return Grid(grid, parent, axes, tuple(variants)), new_versions


def _check_policy(config: Mapping[str, Any], grids: Iterable[Grid]) -> None:
    """Every variant against the reserved-scene policy, naming the grid and the axes the scene lists come from."""
    try:
        study = Study.from_config(config)
    except (KeyError, PolicyError):
        return  # not the grid's doing: the schema check and the study that follow report it
    for grid in grids:
        for variant in grid.compared:
            try:
                study.check_version(variant.name)
            except PolicyError as error:
                scene_axes = [
                    (path, label)
                    for path, label in variant.choices
                    if path.split(".")[-1] in ("difix_train", "difix_eval", "nvs_eval")
                ] or list(variant.choices)
                blamed = ", ".join(f"axis {path} = {label}" for path, label in scene_axes)
                raise GridError(
                    f"ablations.{grid.name}: variant {variant.name} ({blamed}) breaks the policy: {error}"
                ) from None


def expand_config(config: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Grid]:
    """Resolve ``extends`` and expand ``ablations`` in place (``config["versions"]`` and
    ``config["render_profiles"]`` gain the variants and their profiles); return the grids by name."""
    versions = config.get("versions")
    if not isinstance(versions, Mapping):
        return {}
    config["versions"] = resolve_extends(versions)
    ablations = config.get("ablations") or {}
    if not ablations:
        return {}
    grid_schema = schema["properties"]["ablations"]
    problems = sorted(
        Draft202012Validator({**grid_schema, "definitions": schema["definitions"]}).iter_errors(ablations), key=str
    )
    if problems:
        where = ".".join(["ablations", *map(str, problems[0].absolute_path)])
        raise GridError(f"{where}: {problems[0].message}")
    profiles = config.setdefault("render_profiles", {})
    grids = {}
    for name, spec in ablations.items():
        grids[name], _ = expand_grid(name, spec, config["versions"], profiles, schema)
    _check_policy(config, grids.values())
    return grids

