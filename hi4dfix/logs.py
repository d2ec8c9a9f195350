"""Logging set-up for workflow jobs: everything a job prints goes to its `log:` file."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def job_log(path: str | Path | None) -> Iterator[logging.Logger]:
    """Send Python logging, stdout and stderr to ``path`` for the duration of a job.

    Exceptions are logged with their traceback before they propagate, so the log file says why a
    job failed even when Snakemake only reports the exit status.
    """
    logger = logging.getLogger("hi4dfix")
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        yield logger
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            try:
                yield logger
            except BaseException:
                logger.exception("job failed")
                raise
            finally:
                root.removeHandler(handler)
