"""bench/loss_curves.py on curves that bench/bench_difix.py writes (tiny model, CPU)."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import bench_difix  # noqa: E402
import loss_curves  # noqa: E402


def write_curve(path: Path, *options: str) -> Path:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench_difix.main(["--preset", "tiny", "--device", "cpu", "--resolution", "32", "--precisions", "no",
                          "--loss-curve", "4", "--reference", "none", *options])
    path.write_text(out.getvalue())
    return path


def test_departures_of_curves_from_a_reference(tmp_path):
    nchw = write_curve(tmp_path / "nchw.csv")
    channels_last = write_curve(tmp_path / "channels_last.csv", "--channels-last")
    reference = loss_curves.read_curve(nchw)
    curve = loss_curves.read_curve(channels_last)
    assert len(reference) == 4 and reference[-1] < reference[0]  # it trains
    assert max(abs(d) for d in loss_curves.departures(reference, curve)) < 1e-4  # the same maths

    shifted = [v * (1 - 0.01 * step) for step, v in enumerate(reference)]
    assert loss_curves.departures(reference, shifted) == pytest.approx([0, -0.01, -0.02, -0.03])
    lines = loss_curves.table("nchw", reference, {"shifted": shifted}).splitlines()
    assert lines[-1] == "| shifted | -1.00% | 3.00% (4) | n/a |"  # fewer than 50 steps: nothing late


def test_curves_of_other_lengths_or_formats_are_refused(tmp_path):
    paired = tmp_path / "paired.csv"
    paired.write_text("step,eager-nchw,tested_wrong\n1,0.5,0.5\n")
    with pytest.raises(SystemExit, match="paired.csv"):
        loss_curves.read_curve(paired)
    with pytest.raises(SystemExit, match="3 and 2 steps"):
        loss_curves.departures([1.0, 1.0, 1.0], [1.0, 1.0])
