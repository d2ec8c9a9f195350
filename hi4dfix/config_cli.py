"""Dataclass configs on the command line: one ``--option`` per field, typed and explained by the field.

The ``python -m`` entry points (``hi4dfix.difix.train``, ``hi4dfix.difix.pretrain``) declare their
settings once, as a dataclass whose fields carry their help (``field(metadata=option_help(...))``);
:func:`dataclass_parser` makes the ``argparse`` parser and :func:`config_from_argv` the config.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, Sequence, TypeVar

Config = TypeVar("Config")


def option_help(text: str) -> dict[str, str]:
    """Field metadata holding the option's help text."""
    return {"help": text}


def parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {value!r}")


def parse_json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {value!r} ({exc})") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {value!r}")
    return parsed


def _option_type(annotation: Any) -> Any:
    """The parser of a field's values from its annotation (``int | None`` parses as ``int``, a
    ``dict`` as a JSON object)."""
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if kind.startswith("bool"):
        return parse_bool
    if kind.startswith("dict"):
        return parse_json_object
    if kind.startswith("int"):
        return int
    if kind.startswith("float"):
        return float
    return str


def dataclass_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    """``--field-name`` per field of dataclass ``cls``: required where the field has no default,
    else defaulting to it (said in the help); booleans are written ``true``/``false``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for f in dataclasses.fields(cls):
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help", "")}
        if f.default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default
            kwargs["help"] += f" (default: {f.default})"
        kwargs["type"] = _option_type(f.type)
        if kwargs["type"] is parse_bool:
            kwargs["metavar"] = "BOOL"
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)
    return parser


def config_from_argv(cls: type[Config], argv: Sequence[str] | None, prog: str, description: str) -> Config:
    """An instance of dataclass ``cls`` from command-line arguments (``None``: ``sys.argv``)."""
    args = dataclass_parser(cls, prog, description).parse_args(argv)
    return cls(**vars(args))
