"""The tree is clean under the linters, pinned in pyproject.toml's test extra: `snakemake --lint` on
the default and on the small-study config, snakefmt (check mode) on the Snakefile and rule files,
and ruff on the Python code. A failure shows the tool's own report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_helpers import REPO, SMALL_CONFIG, SNAKEMAKE

DEFAULT_CONFIG = REPO / "config" / "config.yaml"
PYTHON_CODE = ["hi4dfix", "workflow/scripts", "tests", "bench"]
SNAKEFILES = ["Snakefile", "workflow/rules"]


def check_clean(command: list[str], cwd: Path = REPO) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # the Snakefile imports hi4dfix: the venv that runs the tests must be first on PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, (
        f"`{' '.join(map(str, command))}` found problems (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    )


@pytest.mark.parametrize(
    "configfiles", [[DEFAULT_CONFIG], [DEFAULT_CONFIG, SMALL_CONFIG]], ids=["default", "test-config"]
)
def test_snakemake_lint(tmp_path, configfiles):
    # in a scratch directory: the lint reads the config files given, writes nothing to the repository
    check_clean([*SNAKEMAKE, "--lint", "-s", REPO / "Snakefile", "-d", tmp_path, "--configfile", *configfiles])


def test_snakefmt():
    check_clean([sys.executable, "-m", "snakefmt", "--config", "pyproject.toml", "--check", "--diff", *SNAKEFILES])


def test_ruff():
    check_clean([sys.executable, "-m", "ruff", "check", "--no-cache", *PYTHON_CODE])
