"""Config files read strictly: a duplicate key or bytes that are not UTF-8 are refused naming the file."""

from __future__ import annotations

import pytest
import yaml

from hi4dfix import plan
from hi4dfix.cli import main
from hi4dfix.config_files import ConfigFileError, read_config_file
from workflow_helpers import REPO, run_snakemake, small_config

# an axis mapping whose label `short` is given twice: Snakemake's loader would keep 30 and drop 10
DUPLICATE_LABEL = """\
ablations:
  dup:
    parent: v0
    axes:
      tuning.steps:
        short: 10
        long: 20
        short: 30
"""
DUPLICATE_MESSAGE = (
    "line 8: duplicate key 'short' (first at line 6) in one mapping; YAML keeps only the last, "
    "so the first would be dropped silently"
)
# "café" in Latin-1: byte 0xe9 at offset 28 (line 3, column 12)
NOT_UTF8 = b"stats:\n  seed: 3\n# note: caf\xe9\n"
NOT_UTF8_MESSAGE = (
    "not UTF-8 at byte offset 28 (line 3, column 12: byte(s) e9, invalid continuation byte); save the file as UTF-8"
)


def test_a_duplicate_key_is_refused_naming_the_file_line_and_key(tmp_path):
    overlay = tmp_path / "grid.yaml"
    overlay.write_text(DUPLICATE_LABEL)
    assert yaml.safe_load(DUPLICATE_LABEL)["ablations"]["dup"]["axes"]["tuning.steps"] == {"short": 30, "long": 20}
    with pytest.raises(ConfigFileError) as error:
        read_config_file(overlay)
    assert str(error.value) == f"{overlay}, {DUPLICATE_MESSAGE}"


def test_a_json_config_is_read_as_json_and_its_duplicate_keys_refused(tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{\n\t"stats": {"seed": 3}\n}\n')  # a tab: JSON, not YAML (Snakemake reads JSON first)
    assert read_config_file(config) == {"stats": {"seed": 3}}
    config.write_text('{"stats": {"seed": 3, "seed": 4}}')
    with pytest.raises(ConfigFileError) as error:
        read_config_file(config)
    assert str(error.value) == f"{config}: duplicate key 'seed' in one JSON object; the first would be dropped silently"


def test_merge_keys_and_the_shipped_configs_read_as_pyyaml_reads_them(tmp_path):
    anchors = tmp_path / "anchors.yaml"
    anchors.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")  # a merge may override: no duplicate
    assert read_config_file(anchors)["other"] == {"x": 3, "y": 2}
    for path in sorted((REPO / "config").glob("*.yaml")):
        assert read_config_file(path) == yaml.safe_load(path.read_text())


def test_invalid_utf8_is_refused_naming_the_file_and_byte_offset(tmp_path):
    overlay = tmp_path / "latin1.yaml"
    overlay.write_bytes(NOT_UTF8)
    with pytest.raises(ConfigFileError) as error:
        read_config_file(overlay)
    assert str(error.value) == f"{overlay}: {NOT_UTF8_MESSAGE}"


def test_load_config_reads_the_config_files_again(tmp_path):
    overlay = tmp_path / "grid.yaml"
    overlay.write_text(DUPLICATE_LABEL)
    config = small_config()
    config.update(yaml.safe_load(DUPLICATE_LABEL))  # as Snakemake merged it: one variant gone
    with pytest.raises(ConfigFileError, match="duplicate key 'short'"):
        plan.load_config(config, config_files=[REPO / "config" / "config.yaml", overlay])


@pytest.mark.parametrize("command", ["versions", "fetch-weights"])
def test_the_commands_name_the_file_of_a_duplicate_key_or_invalid_utf8(tmp_path, capsys, command):
    duplicate, latin1 = tmp_path / "grid.yaml", tmp_path / "latin1.yaml"
    duplicate.write_text(DUPLICATE_LABEL)
    latin1.write_bytes(NOT_UTF8)
    extra = ["--dry-run"] if command == "fetch-weights" else []
    base = ["--config", str(REPO / "config" / "config.yaml")]
    cases = [(duplicate, f"{duplicate}, {DUPLICATE_MESSAGE}"), (latin1, f"{latin1}: {NOT_UTF8_MESSAGE}")]
    for overlay, message in cases:
        assert main([command, *base, "--configfile", str(overlay), *extra]) == 1
        assert capsys.readouterr().err == f"hi4dfix {command}: error: {message}\n"


def test_a_duplicate_label_in_an_overlay_fails_at_dag_build(tmp_path):
    overlay = tmp_path / "grid.yaml"
    overlay.write_text(DUPLICATE_LABEL)
    # run_snakemake writes the config to tmp_path/run/config.yaml; a later --configfile replaces the list
    config_path = tmp_path / "run" / "config.yaml"
    result = run_snakemake(tmp_path / "run", small_config(), "-n", "--configfile", str(config_path), str(overlay),
                           check=False)  # fmt: skip
    assert result.returncode != 0
    assert f"{overlay}, {DUPLICATE_MESSAGE}" in result.stdout + result.stderr
    # without the duplicate the same overlay plans its two variants
    overlay.write_text(DUPLICATE_LABEL.replace("        short: 30\n", ""))
    result = run_snakemake(tmp_path / "run", small_config(), "-n", "--configfile", str(config_path), str(overlay))
    assert "dup.long" in result.stdout


def test_a_default_config_that_is_not_utf8_is_named_at_dag_build(tmp_path):
    """The Snakefile's configfile: (config/config.yaml in the working directory): Snakemake's own read
    would fail with a bare UnicodeDecodeError naming neither the file nor the byte offset."""
    workdir = tmp_path / "run"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_bytes((REPO / "config" / "config.yaml").read_bytes() + b"# caf\xe9\n")
    offset = len((REPO / "config" / "config.yaml").read_bytes()) + len(b"# caf")
    result = run_snakemake(workdir, small_config(), "-n", check=False)
    assert result.returncode != 0
    assert f"config/config.yaml: not UTF-8 at byte offset {offset} (line " in result.stdout + result.stderr
