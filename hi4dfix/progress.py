"""Progress of long steps as plain lines, where people look: the job's log and the console.

A line such as ``fit+render hi4d_pair15_fight: 12/40 (30%), 0.81/s, ETA 0:00:35, loss 0.0123`` goes
to the ``hi4dfix.progress`` logger (the job's log file, :func:`hi4dfix.logs.job_log`) and, when the
job redirected stderr into that file, also to the process's own stderr: the Snakemake console, or the
job's Slurm log. No carriage returns or bars: with jobs side by side and in log files, a line every
``every_s`` seconds or every ``every_fraction`` of the work stays readable.

Loops use :func:`progress` (an iterable); training loops one line each::

    meter = Progress(cfg.steps, "tune v0", start=start_step)   # before the loop
    meter.update(loss=values["total"])                         # after each step
    meter.close()                                              # after the loop: the closing line
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
LOGGER = logging.getLogger("hi4dfix.progress")
EVERY_S = 30.0  # at most this long without a line while work goes on
EVERY_FRACTION = 0.1  # a line at each tenth of the work...
MIN_GAP_S = 2.0  # ...unless the last line is younger than this (a fast loop prints a few lines, not ten)


def format_duration(seconds: float) -> str:
    """``0:01:05``; ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def format_rate(per_s: float, unit: str) -> str:
    """``3.2 step/s`` or, below one a second, ``4.1 s/step``: both read at a glance."""
    if per_s <= 0 or not math.isfinite(per_s):
        return f"? {unit}/s"
    return f"{per_s:.3g} {unit}/s" if per_s >= 1 else f"{1 / per_s:.3g} s/{unit}"


class Progress:
    """Steps done of ``total`` (``None``: unknown), their rate and the time left, as log lines at a
    sensible interval (module doc). ``start`` is where a resumed loop begins (counted as done, not in
    the rate). ``clock`` and ``emit`` are for tests: by default ``time.monotonic`` and :func:`emit_line`."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "step",
        start: int = 0,
        every_s: float = EVERY_S,
        every_fraction: float = EVERY_FRACTION,
        min_gap_s: float = MIN_GAP_S,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], None] | None = None,
    ) -> None:
        if total is not None and total < 0:
            raise ValueError(f"progress {desc!r}: total must be >= 0, got {total}")
        if every_s <= 0 or not 0 < every_fraction <= 1:
            raise ValueError(f"progress {desc!r}: every_s must be > 0 and every_fraction in (0, 1]")
        self.total, self.desc, self.unit = total, desc, unit
        self.start = self.done = start
        self.every_s, self.every_fraction, self.min_gap_s = every_s, every_fraction, min_gap_s
        self.clock, self.emit = clock, emit or emit_line
        self.t0 = self.last_t = clock()
        self.last_fraction_step = self._fraction_step()
        self.loss: float | None = None
        self.closed = False

    def _fraction_step(self) -> int:
        if not self.total:
            return 0
        return int(self.done / self.total / self.every_fraction + 1e-9)

    def line(self, final: bool = False) -> str:
        elapsed = self.clock() - self.t0
        rate = (self.done - self.start) / elapsed if elapsed > 0 else float("nan")
        if self.total is None:
            parts = [f"{self.done} {self.unit}s"]
        else:
            parts = [f"{self.done}/{self.total} ({100 * self.done / self.total if self.total else 100:.0f}%)"]
        parts.append(format_rate(rate, self.unit))
        if final:
            parts.append(f"took {format_duration(elapsed)}")
        elif self.total is not None:
            parts.append(f"ETA {format_duration((self.total - self.done) / rate if rate > 0 else float('nan'))}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        return f"{self.desc}: {', '.join(parts)}" + (" (done)" if final else "")

    def update(self, n: int = 1, loss: float | None = None) -> None:
        """``n`` more steps done (``loss``: the latest, shown on the line); a line when one is due."""
        self.done += n
        if loss is not None:
            self.loss = float(loss)
        now = self.clock()
        fraction_step = self._fraction_step()
        gap = now - self.last_t
        due = gap >= self.every_s or (fraction_step > self.last_fraction_step and gap >= self.min_gap_s)
        if due and not (self.total is not None and self.done >= self.total):  # the closing line says the end
            self.emit(self.line())
            self.last_t, self.last_fraction_step = now, fraction_step

    def close(self) -> None:
        """The closing line (steps done, rate, time taken); once."""
        if not self.closed:
            self.closed = True
            self.emit(self.line(final=True))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


def emit_line(line: str) -> None:
    """``line`` to the progress logger and, when stderr is redirected into a job's log, to the
    process's own stderr too (where Snakemake and Slurm show a job's output)."""
    if not LOGGER.hasHandlers():  # logging not set up (a command, a notebook): stderr alone
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        return
    LOGGER.info(line)
    console = sys.__stderr__
    if console is not None and sys.stderr is not console:
        try:
            console.write(f"{time.strftime('%H:%M:%S')} {line}\n")
            console.flush()
        except (OSError, ValueError):  # a closed console must not fail the job
            pass


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "step", **options) -> Iterator[T]:
    """``items``, reporting progress every so often (module doc); ``total`` defaults to ``len(items)``."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    meter = Progress(total, desc, unit=unit, **options)
    for item in items:
        yield item
        meter.update()
    meter.close()
