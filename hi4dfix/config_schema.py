"""The study config against its JSON schema, with errors that start with the failing key.

Snakemake's ``validate`` reports a failure with the whole failing sub-schema and instance
(a version block's schema alone is over a hundred lines), before the line that matters. Here
each problem is one line, best match first::

    config key versions.v0.tuning.lr: -1 is less than or equal to the minimum of 0

The check validates a copy while filling the schema's defaults exactly as Snakemake's
``validate`` does, so it finds the same problems; :func:`fill_defaults` then fills them into the
real config (``hi4dfix.plan.load_config`` does both, for the workflow and the commands).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match, relevance

MAX_LISTED = 5  # problems listed after the first


class ConfigError(ValueError):
    """The config breaks its schema; the message names each failing key path."""


def _with_defaults(validator_class):
    """A validator that fills ``default`` values while validating (Snakemake's ``validate`` does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema) -> Iterator[ValidationError]:
        for name, subschema in properties.items():
            if "default" in subschema and isinstance(instance, dict):
                instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def key_path(error: ValidationError) -> str:
    """``versions.v0.tuning.lr``; list indices as ``data.scenes[2]``."""
    text = ""
    for part in error.absolute_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe(error: ValidationError) -> str:
    where = f"config key {key_path(error)}" if error.absolute_path else "config"
    message = error.message
    if error.validator == "additionalProperties" and isinstance(error.schema.get("properties"), Mapping):
        message += f"; allowed keys: {', '.join(error.schema['properties'])}"
    return f"{where}: {message}"


def config_problems(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Every way ``config`` breaks ``schema``, one line each, the most relevant first."""
    validator = _with_defaults(Draft202012Validator)(schema)
    errors = list(validator.iter_errors(copy.deepcopy(dict(config))))
    if not errors:
        return []
    first = best_match(errors)
    rest = sorted((e for e in errors if e is not first), key=relevance)
    return [describe(first), *(describe(e) for e in rest)]


def fill_defaults(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """Fill the schema's ``default`` values into ``config`` in place, as Snakemake's ``validate`` does
    (raises jsonschema's ValidationError on a config that :func:`check_config` would refuse)."""
    _with_defaults(Draft202012Validator)(schema).validate(config)


def load_schema(schema_path: str | Path) -> dict[str, Any]:
    """The schema file as data (libyaml's loader where PyYAML has it: the workflow reads it at every start)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(Path(schema_path).read_text(), Loader=loader)


def check_config(
    config: Mapping[str, Any],
    schema_path: str | Path,
    shown_as: str | None = None,
    schema: Mapping[str, Any] | None = None,
) -> None:
    """Raise :class:`ConfigError` whose message starts with the failing key path and message;
    ``shown_as`` is how the message names the schema file (default: ``schema_path``); ``schema``:
    the file's content when the caller has read it already."""
    schema_path = Path(schema_path)
    problems = config_problems(config, schema if schema is not None else load_schema(schema_path))
    if not problems:
        return
    lines = [f"{problems[0]} (schema {shown_as or schema_path})"]
    if len(problems) > 1:
        lines.append(f"{len(problems) - 1} more problem(s):")
        lines += [f"  {p}" for p in problems[1 : 1 + MAX_LISTED]]
        if len(problems) > 1 + MAX_LISTED:
            lines.append(f"  ... ({len(problems) - 1 - MAX_LISTED} not shown)")
    raise ConfigError("\n".join(lines))
