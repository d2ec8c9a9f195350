"""Config files read strictly: duplicate keys and bytes that are not UTF-8 are refused, naming the file.

Snakemake's loader (PyYAML through yte) keeps the last of two equal keys in one mapping without a word,
so a duplicated axis label in an ablation grid silently drops a variant, and a file that is not UTF-8
ends in a bare ``UnicodeDecodeError``. :func:`read_config_file` reads a file as Snakemake does (JSON
first, then PyYAML's ``FullLoader``) but refuses both with a :class:`ConfigFileError` naming the file, the
line and the key or byte offset. :func:`hi4dfix.plan.load_config` re-reads every config file the run used
with it (Snakemake has merged them already); the ``hi4dfix`` commands read their ``--config`` and
``--configfile`` with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"


class ConfigFileError(ValueError):
    """A config file cannot be read as it is meant; the message names the file."""


class _StrictLoader(yaml.FullLoader):
    """Snakemake's loader, but a mapping that repeats a key is refused."""

    path = "<config>"

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:  # '<<' merges may override keys: not a duplicate
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first
                except TypeError:  # an unhashable key: PyYAML's own error follows
                    continue
                if seen:
                    raise ConfigFileError(
                        f"{self.path}, line {key_node.start_mark.line + 1}: duplicate key {key!r} (first at line "
                        f"{first[key] + 1}) in one mapping; YAML keeps only the last, so the first would be dropped "
                        "silently"
                    )
                first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


class _DuplicateKey(Exception):  # not a ValueError: json's own errors are
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise _DuplicateKey(key)
    return dict(pairs)


def decode_utf8(data: bytes, path: str | os.PathLike) -> str:
    """``data`` as UTF-8 text, or a :class:`ConfigFileError` naming the file, the byte offset, line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line, column = before.count(b"\n") + 1, error.start - (before.rfind(b"\n") + 1) + 1
        bad = data[error.start : error.end].hex(" ")
        raise ConfigFileError(
            f"{path}: not UTF-8 at byte offset {error.start} (line {line}, column {column}: byte(s) {bad}, "
            f"{error.reason}); save the file as UTF-8"
        ) from None


def read_config_file(path: str | os.PathLike) -> Any:
    """The YAML content of a config file, refusing invalid UTF-8 and duplicate keys (module doc)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigFileError(f"{path}: cannot read the config file ({error.strerror})") from None
    text = decode_utf8(data, path)
    try:  # JSON first, then YAML: Snakemake's order (a JSON file that PyYAML would refuse, tabs say, is valid)
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as duplicate:
        raise ConfigFileError(
            f"{path}: duplicate key {duplicate.args[0]!r} in one JSON object; the first would be dropped silently"
        ) from None
    except ValueError:
        pass
    loader = _StrictLoader(text)
    loader.path = os.fspath(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as error:
        raise ConfigFileError(f"{path}: not valid YAML: {error}") from None
    finally:
        loader.dispose()


def check_utf8(path: str | os.PathLike) -> None:
    """Refuse a config file that is not UTF-8 naming it and the byte offset (nothing when it does not exist):
    for the Snakefile's own ``configfile:``, which Snakemake reads before the workflow can say which file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return
    except OSError as error:
        raise ConfigFileError(f"{path}: cannot read the config file ({error.strerror})") from None
    decode_utf8(data, path)


def check_config_files(paths: Iterable[str | os.PathLike]) -> None:
    """Re-read each config file the run merged (Snakemake's loader let duplicates and the like through)."""
    for path in dict.fromkeys(map(os.fspath, paths)):
        read_config_file(path)


__all__ = ["ConfigFileError", "check_config_files", "check_utf8", "decode_utf8", "read_config_file"]
