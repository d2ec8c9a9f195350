"""Running the workflow from tests: a copy of the config in a scratch directory, Snakemake's CLI."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def small_config() -> dict:
    """The embedded default, shrunk so that the whole DAG runs in a couple of minutes on 2 cores."""
    config = copy.deepcopy(default_config())
    config["data"]["synthetic"].update(num_frames=2, width=48, height=64)
    config["materialize"].update(max_frames=2)
    profile = config["render_profiles"]["imperfect"]
    profile.update(fit_steps=8, num_gaussians=300)
    config["difix"]["pretrain"].update(
        vae_steps=5, difix_steps=5, resolution="32x48", n_train=8, n_test=2, val_every=5, ckpt_every=5
    )
    # long side 48: the 48x64 frames are processed at 32x48 (WxH), below their own size, so that
    # a DiFix arm run at the native size instead of the tuning size would show in the logs
    config["difix"]["long_side"] = 48
    config["versions"]["v0"]["tuning"].update(steps=4, ckpt_every=2, val_every=2)
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
