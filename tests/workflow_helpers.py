"""Running the workflow from tests: a copy of the config in a scratch directory, Snakemake's CLI."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml
from snakemake.utils import update_config

REPO = Path(__file__).resolve().parents[1]
SMALL_CONFIG = REPO / ".test" / "config" / "config.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def small_config() -> dict:
    """The small study: the embedded default with .test/config/config.yaml merged in as Snakemake
    merges a --configfile (blocks key by key, values and lists replaced), so that the whole DAG runs
    in a couple of minutes on 2 cores. A fresh copy: tests adjust it where they need."""
    config = copy.deepcopy(default_config())
    update_config(config, yaml.safe_load(SMALL_CONFIG.read_text()))
    return config


def run_snakemake(
    workdir: Path, config: dict, *args: str, check: bool = True, timeout: float = 1200
) -> subprocess.CompletedProcess:
    """Run ``snakemake`` on the repository's Snakefile in ``workdir`` with ``config``."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # scripts and `python -m` shell commands must find the venv that runs the tests
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(config_path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """The `Job stats` table of a dry run: rule -> count."""
    lines = result.stdout.splitlines()
    counts: dict[str, int] = {}
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:"))
    except StopIteration:
        return counts
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts
