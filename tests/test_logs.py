"""hi4dfix.logs: job logs, and the peak GPU memory line a job that used CUDA ends its log with."""

import sys
import types
from pathlib import Path

import pytest

from hi4dfix import logs


def fake_torch(initialised: bool, allocated_gib: float = 3.5, reserved_gib: float = 4.0):
    gib = 2**30
    cuda = types.SimpleNamespace(
        is_initialized=lambda: initialised,
        current_device=lambda: 0,
        max_memory_allocated=lambda device: int(allocated_gib * gib),
        max_memory_reserved=lambda device: int(reserved_gib * gib),
    )
    return types.SimpleNamespace(cuda=cuda)


def test_peak_message_when_cuda_was_used(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(True))
    message = logs.cuda_peak_memory_message()
    assert message == "GPU peak memory (cuda:0): max_allocated 3.500 GiB, max_reserved 4.000 GiB"


def test_no_peak_message_without_cuda_and_torch_is_never_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(False))
    assert logs.cuda_peak_memory_message() is None
    monkeypatch.delitem(sys.modules, "torch")
    assert logs.cuda_peak_memory_message() is None
    assert "torch" not in sys.modules


def test_job_log_ends_with_the_peak_when_cuda_was_used(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(True, allocated_gib=1.25, reserved_gib=2.0))
    path = tmp_path / "job.log"
    with logs.job_log(path) as log:
        log.info("working")
    lines = path.read_text().splitlines()
    assert "working" in lines[0]
    assert lines[-1].endswith("GPU peak memory (cuda:0): max_allocated 1.250 GiB, max_reserved 2.000 GiB")


def test_job_log_of_a_failed_cuda_job_still_ends_with_the_peak(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(True))
    path = tmp_path / "job.log"
    with pytest.raises(RuntimeError):
        with logs.job_log(path):
            raise RuntimeError("broken")
    text = path.read_text()
    assert "job failed" in text and "RuntimeError: broken" in text
    assert text.rstrip().splitlines()[-1].endswith("max_allocated 3.500 GiB, max_reserved 4.000 GiB")


def test_job_log_of_a_cpu_job_has_no_peak_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(False))
    path = tmp_path / "job.log"
    with logs.job_log(path) as log:
        log.info("cpu only")
    assert logs.GPU_PEAK_PREFIX not in path.read_text()


def test_tuning_logs_its_peak_gpu_memory_only_where_cuda_was_used(tmp_path, capfd, monkeypatch):
    """hi4dfix.difix.train runs under accelerate, not job_log: it logs the peak itself at the end."""
    from hi4dfix.difix.train import train
    from hi4dfix.difix.train_config import TrainConfig
    from triplet_fixtures import SyntheticConfig, write_synthetic_triplets

    small = SyntheticConfig(height=32, width=48, max_view_shift=3)
    triplets = write_synthetic_triplets(tmp_path / "synthetic", n_train=2, n_test=1, seed=1, cfg=small)

    def run(name: str) -> str:
        out = tmp_path / name
        train(TrainConfig(triplets=str(triplets), output=str(out / "tuned.pkl"), output_dir=str(out / "run"),
                          steps=1, resolution="32x48", val_every=0, ckpt_every=0))
        return capfd.readouterr().err

    assert logs.GPU_PEAK_PREFIX not in run("cpu")  # a CPU run has nothing to report
    monkeypatch.setattr(logs, "cuda_peak_memory_message", lambda: "GPU peak memory (cuda:0): probe")
    assert "GPU peak memory (cuda:0): probe" in run("gpu")


def test_last_error_line_is_the_cause_not_the_launchers_exit(tmp_path):
    log = tmp_path / "tune.log"
    log.write_text(
        "12:00:01 hi4dfix.difix.train: last good model of this tuning: work/abc/model.pkl\n"
        "Traceback (most recent call last):\n"
        '  File "train.py", line 1, in <module>\n'
        "hi4dfix.difix.checkpoint.CheckpointError: base.pkl is not a Difix checkpoint: it is text\n"
        "Traceback (most recent call last):\n"
        "subprocess.CalledProcessError: Command '['python', '-m', 'x']' returned non-zero exit status 1.\n"
    )
    assert logs.last_error_line(log) == (
        "hi4dfix.difix.checkpoint.CheckpointError: base.pkl is not a Difix checkpoint: it is text"
    )
    log.write_text("working\nstill working\n")
    assert logs.last_error_line(log) is None
    assert logs.last_error_line(tmp_path / "missing.log") is None


def test_failed_job_reports_name_each_failed_jobs_log_and_its_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Snakemake names job logs relative to its working directory
    Path("logs").mkdir()
    Path("logs/a.log").write_text("ValueError: the cause\n")
    Path("logs/b.log").write_text("nothing said\n")
    snakemake_log = tmp_path / "run.snakemake.log"
    snakemake_log.write_text(
        "Error in rule a:\n    jobid: 1\n    log: logs/a.log (check log file(s) for error details)\n"
        "Error in rule b:\n    log: logs/b.log (check log file(s) for error details)\n"
        "rule c:\n    log: logs/c.log\n"
    )
    assert logs.failed_job_reports([snakemake_log]) == [
        "failed job's log logs/a.log: ValueError: the cause",
        "failed job's log logs/b.log: no error line; see the log's end",
    ]
