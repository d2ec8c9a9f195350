"""Logging set-up for workflow jobs: everything a job prints goes to its `log:` file."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from pathlib import Path
from typing import Iterator

GPU_PEAK_PREFIX = "GPU peak memory"


def cuda_peak_memory_message() -> str | None:
    """Peak GPU memory of this process on its current CUDA device, as one log line; None when
    the process did not use CUDA.

    Only looks: torch is not imported and CUDA is not initialised for this (a CPU job stays a
    CPU job). Snakemake's benchmark files record RSS, not GPU memory; bench/gpu/study.py
    parses these lines.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    device = torch.cuda.current_device()
    gib = float(2**30)
    allocated = torch.cuda.max_memory_allocated(device) / gib
    reserved = torch.cuda.max_memory_reserved(device) / gib
    return f"{GPU_PEAK_PREFIX} (cuda:{device}): max_allocated {allocated:.3f} GiB, max_reserved {reserved:.3f} GiB"


def log_to_stderr(logger: logging.Logger, level: int = logging.INFO) -> None:
    """Send ``logger``'s records to stderr as ``HH:MM:SS name: message``, at ``level``, and not on to
    the root logger: the set-up of the ``python -m`` entry points (train, pretrain), which also run
    outside a job's log. A second call only sets the level."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


@contextlib.contextmanager
def job_log(path: str | Path | None, brief_errors: tuple[type[BaseException], ...] = ()) -> Iterator[logging.Logger]:
    """Send Python logging, stdout and stderr to ``path`` for the duration of a job.

    Exceptions are logged with their traceback before they propagate, so the log file says why a
    job failed even when Snakemake only reports the exit status. An exception of a type in
    ``brief_errors`` (bad input, whose message names the file or setting) reaches the user as
    its message alone, without the traceback, which stays in the log: the job exits with
    status 1 and ``error: MESSAGE`` on stderr. A job that used CUDA ends its log with its peak
    GPU memory (:func:`cuda_peak_memory_message`).
    """
    logger = logging.getLogger("hi4dfix")
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        yield logger
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    brief: BaseException | None = None
    with open(path, "w", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            try:
                yield logger
            except BaseException as exc:
                logger.exception("job failed")
                if not isinstance(exc, brief_errors):
                    raise
                brief = exc
            finally:
                peak = cuda_peak_memory_message()
                if peak is not None:
                    logger.info(peak)
                root.removeHandler(handler)
    if brief is not None:
        # raised outside the except block and the redirection: stderr gets the message alone
        raise SystemExit(f"error: {brief}\n(traceback in {path})")


# ---- failed jobs, for the console ---------------------------------------------------------------

# Snakemake's record of a failed job names its log files so (snakemake 9)
_FAILED_JOB_LOGS = re.compile(r"^\s*log: (?P<logs>.+?) \(check log file\(s\) for error details\)\s*$")
# A Python exception line ("ValueError: ...", "hi4dfix.x.CheckpointError: ..."), a CLI's "error: ..."
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Interrupt)\b|error:|ERROR\b|Killed\b)")
# What a launcher adds after its child's own error (accelerate launch, torchrun): not the cause
_LAUNCHER_ERRORS = ("subprocess.CalledProcessError", "CalledProcessError", "torch.distributed.elastic")


def last_error_line(log: str | Path) -> str | None:
    """The line of a job log that says why it failed: the last exception or error line, passing
    over a launcher's own (accelerate's CalledProcessError after its child's traceback); None
    when there is none."""
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [line.strip() for line in lines if _ERROR_LINE.match(line.strip())]
    causes = [line for line in errors if not line.startswith(_LAUNCHER_ERRORS) and "ChildFailedError" not in line]
    return (causes or errors or [None])[-1]


def failed_job_reports(snakemake_logs: list[str | Path] | str | Path) -> list[str]:
    """For each job log that Snakemake's own logs name as a failed job's: its path and last error
    line (Snakemake prints the command and the log's path, not what the log says)."""
    paths = [snakemake_logs] if isinstance(snakemake_logs, (str, Path)) else list(snakemake_logs)
    job_logs: list[str] = []
    for path in paths:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            match = _FAILED_JOB_LOGS.match(line)
            if match:
                job_logs += [name for name in match["logs"].split(", ") if name not in job_logs]
    reports = []
    for job_log_path in job_logs:
        error = last_error_line(job_log_path)
        said = error if error is not None else "no error line; see the log's end"
        reports.append(f"failed job's log {job_log_path}: {said}")
    return reports
