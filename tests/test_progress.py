"""Progress lines: at a sensible interval, readable in files (no carriage returns), to log and console."""

import io
import logging
import sys

import pytest

from hi4dfix.progress import Progress, emit_line, format_duration, format_rate, progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_every_tenth_but_not_faster_than_the_gap():
    clock, lines = Clock(), []
    meter = Progress(100, "fit+render s", unit="frame", clock=clock, emit=lines.append, min_gap_s=2.0)
    for _ in range(100):
        clock.now += 1.0  # 1 frame/s: every tenth is 10 s apart
        meter.update()
    meter.close()
    # tenths 10..90 (100 is the closing line's)
    assert len(lines) == 10
    assert lines[0] == "fit+render s: 10/100 (10%), 1 frame/s, ETA 0:01:30"
    assert lines[-1] == "fit+render s: 100/100 (100%), 1 frame/s, took 0:01:40 (done)"
    assert not any("\r" in line for line in lines)


def test_a_fast_loop_prints_its_closing_line_only():
    clock, lines = Clock(), []
    meter = Progress(1000, "quick", clock=clock, emit=lines.append)
    for _ in range(1000):
        clock.now += 0.001
        meter.update()
    meter.close()
    meter.close()  # once
    assert lines == ["quick: 1000/1000 (100%), 1e+03 step/s, took 0:00:01 (done)"]


def test_a_slow_step_still_reports_every_every_s_with_loss_and_resume_start():
    clock, lines = Clock(), []
    meter = Progress(10_000, "tune v0", start=4000, clock=clock, emit=lines.append, every_s=30.0)
    for _ in range(3):
        clock.now += 20.0  # 20 s a step: far from the next tenth
        meter.update(loss=0.012345)
    # a line after 40 s (30 s passed at the second step), not after 20 or 60
    assert lines == ["tune v0: 4002/10000 (40%), 20 s/step, ETA 33:19:20, loss 0.01235"]


def test_unknown_total_and_formats():
    clock, lines = Clock(), []
    meter = Progress(None, "scan", clock=clock, emit=lines.append, every_s=5.0)
    clock.now = 6.0
    meter.update(3)
    assert lines == ["scan: 3 steps, 2 s/step"]
    assert format_duration(3725) == "1:02:05" and format_duration(float("nan")) == "?"
    assert format_rate(0.0, "view") == "? view/s"
    with pytest.raises(ValueError, match="total must be >= 0"):
        Progress(-1, "bad")


def test_progress_yields_every_item_and_counts_len():
    lines = []
    assert list(progress(range(5), "five", emit=lines.append)) == [0, 1, 2, 3, 4]
    assert lines and lines[-1].startswith("five: 5/5 (100%)")


def test_emit_line_goes_to_the_log_and_to_the_console_when_stderr_is_redirected(monkeypatch, caplog):
    console, log_file = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", console)
    monkeypatch.setattr(sys, "stderr", log_file)  # as job_log redirects it into the job's log
    with caplog.at_level(logging.INFO, logger="hi4dfix.progress"):
        emit_line("materialize s: 4/8 (50%)")
    assert "materialize s: 4/8 (50%)" in caplog.text
    assert console.getvalue().endswith(" materialize s: 4/8 (50%)\n")
    # not redirected: the logger's own handler shows it, the console gets no second copy
    monkeypatch.setattr(sys, "stderr", console)
    before = console.getvalue()
    with caplog.at_level(logging.INFO, logger="hi4dfix.progress"):
        emit_line("again")
    assert console.getvalue() == before
