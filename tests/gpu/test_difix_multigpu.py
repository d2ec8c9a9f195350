"""DiFix tuning on two GPUs through the rule's launcher (accelerate, one process per GPU),
killed mid-run like a preempted job and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from triplet_fixtures import SyntheticConfig, write_synthetic_triplets

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"),
]


def launch_args(triplets: Path, output: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "hi4dfix.difix.launch", "--gpus", "2", "--",
        "--triplets", str(triplets), "--output", str(output), "--output-dir", str(run_dir),
        "--steps", "40", "--ckpt-every", "4", "--val-every", "20", "--resolution", "64x96",
        "--mixed-precision", "bf16", "--seed", "5",
    ]


def test_two_gpu_tuning_is_killed_and_resumes(tmp_path):
    triplets = write_synthetic_triplets(
        tmp_path / "syn", n_train=8, n_test=2, seed=0, cfg=SyntheticConfig(height=64, width=96)
    )
    run_dir, output = tmp_path / "run", tmp_path / "tuned.pkl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    args = launch_args(triplets, output, run_dir)

    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    first = run_dir / "checkpoints" / "model_4.pkl"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers, as a preempted job
    proc.wait()
    assert first.exists(), proc.stderr.read().decode()[-3000:]
    assert not output.exists(), "the first run finished before it could be killed"

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--multi_gpu" in done.stdout and "--num_processes 2" in done.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_processes"] == 2
    assert 4 <= summary["resumed_from_step"] < 40
    payload = torch.load(output, map_location="cpu", weights_only=True)
    assert payload["hi4dfix_train_state"]["step"] == 40
    assert all(torch.isfinite(v).all() for v in payload["state_dict_unet"].values())
