"""Compare loss curves written by ``bench_difix.py --loss-curve N --reference none`` with one of them.

    python bench/loss_curves.py fp32_exact.csv eager_bf16.csv compiled_nchw.csv compiled_cl.csv

The first file is the reference (e.g. exact float32, eager). Prints a markdown table: for each
other curve its relative departure from the reference at step 2 (the first step after an
update), its largest departure and where, and its largest departure from step 50 on.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def read_curve(path: Path) -> list[float]:
    """The ``tested`` column of a ``--reference none`` CSV (the summary line, if any, is skipped)."""
    with path.open(newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if row.get("tested")]
    if not rows:
        raise SystemExit(f"{path}: no 'tested' losses (write it with --loss-curve N --reference none)")
    return [float(row["tested"]) for row in rows]


def departures(reference: list[float], curve: list[float]) -> list[float]:
    if len(curve) != len(reference):
        raise SystemExit(f"curves of {len(reference)} and {len(curve)} steps cannot be compared")
    return [(b - a) / a for a, b in zip(reference, curve)]


def table(reference_name: str, reference: list[float], curves: dict[str, list[float]]) -> str:
    lines = [
        f"| run | step 2 vs {reference_name} | largest departure (step) | largest from step 50 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, curve in curves.items():
        rel = departures(reference, curve)
        worst = max(range(len(rel)), key=lambda i: abs(rel[i]))
        late = f"{max(abs(r) for r in rel[49:]):.2%}" if len(rel) >= 50 else "n/a"
        second = f"{rel[1]:+.2%}" if len(rel) > 1 else "n/a"
        lines.append(f"| {name} | {second} | {abs(rel[worst]):.2%} ({worst + 1}) | {late} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("curves", type=Path, nargs="+")
    args = parser.parse_args(argv)
    reference = read_curve(args.reference)
    curves = {path.stem: read_curve(path) for path in args.curves}
    print(table(args.reference.stem, reference, curves))
    return 0


if __name__ == "__main__":
    sys.exit(main())
