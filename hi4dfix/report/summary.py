"""The short summary at the end of the main job: one screenful instead of the full-width delta tables.

The primary comparisons' mean rows (tuned − base, tuned − raw, base − raw and, with the control arm,
tuned − control and control − base) per metric, with their intervals and verdicts; the internal
evaluation's tuned − base; where the tables, the report and the logs are. The workflow's ``onsuccess``
handler prints :func:`run_summary`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from hi4dfix.plan import Paths
from hi4dfix.tables import MEAN, metric_digits, metric_title, read_delta_csv

STUDY_COMPARISON = "tuned_vs_base"
MAX_EXTRA_DIGITS = 3  # an interval narrower than the metric's digits gets up to this many more


def interval_digits(metric: str, delta: float, low: float, high: float) -> int:
    """The metric's usual decimals (:func:`hi4dfix.tables.metric_digits`), more where fewer would print an
    interval's ends or its estimate alike (``+1.51 [+1.51, +1.51]`` for 1.5052-1.5135): the width shows."""
    digits = metric_digits(metric)
    values = [v for v in (low, delta, high) if math.isfinite(v)]
    for extra in range(MAX_EXTRA_DIGITS + 1):
        shown = [f"{v:+.{digits + extra}f}" for v in values]
        if len(set(shown)) == len(set(values)):
            return digits + extra
    return digits + MAX_EXTRA_DIGITS


def format_interval(metric: str, delta: float, low: float, high: float) -> str:
    """``+0.30 [+0.19, +0.38]``, with :func:`interval_digits`; ``n/a`` for a missing estimate."""
    if not math.isfinite(delta):
        return "n/a"
    digits = interval_digits(metric, delta, low, high)
    return f"{delta:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def _comparison_label(name: str) -> str:
    b, a = name.split("_vs_")
    return f"{b} − {a}"


# Least widths of the summary's columns (metric title, comparison, interval); a longer entry widens its column
# for every line, so that the columns stay aligned whatever the titles (``flicker (flow-warped) (people) ↓``).
MIN_WIDTHS = (14, 18, 30)
COLUMN_GAP = 2


def _mean_rows(table: pd.DataFrame, comparisons: Iterable[str] | None) -> pd.DataFrame:
    means = table[table["scene"].astype(str) == MEAN]
    if comparisons is not None:
        means = means[means["comparison"].isin(list(comparisons))]
    return means


def column_widths(tables: Iterable[pd.DataFrame], comparisons: Iterable[str] | None = None) -> tuple[int, int, int]:
    """Widths of the title, comparison and interval columns that fit every mean row of ``tables`` (at least
    :data:`MIN_WIDTHS`), so that several tables' lines (the NVS and internal evaluation) align with each other."""
    comparisons = None if comparisons is None else list(comparisons)
    widths = list(MIN_WIDTHS)
    for table in tables:
        for row in _mean_rows(table, comparisons).itertuples():
            cells = (metric_title(row.metric), _comparison_label(row.comparison),
                     format_interval(row.metric, row.delta, row.ci_low, row.ci_high))  # fmt: skip
            widths = [max(width, len(cell) + COLUMN_GAP) for width, cell in zip(widths, cells)]
    return widths[0], widths[1], widths[2]


def mean_row_lines(
    table: pd.DataFrame, comparisons: Iterable[str] | None = None, widths: tuple[int, int, int] | None = None
) -> list[str]:
    """A line per metric and comparison of the table's mean rows (all its comparisons unless given), in columns of
    ``widths`` (default :func:`column_widths` of this table); a metric no arm has is one line saying why."""
    comparisons = None if comparisons is None else list(comparisons)
    title_width, label_width, cell_width = widths or column_widths([table], comparisons)
    means = _mean_rows(table, comparisons)
    lines = []
    for metric in dict.fromkeys(means["metric"]):
        rows = means[means["metric"] == metric]
        title = metric_title(metric)
        if rows["delta"].isna().all():
            why = "; ".join(dict.fromkeys(n for n in rows["note"] if n)) or "no values"
            lines.append(f"  {title}: not computed ({why})")
            continue
        for i, row in enumerate(rows.itertuples()):
            cell = format_interval(metric, row.delta, row.ci_low, row.ci_high)
            label = _comparison_label(row.comparison)
            shown = title if i == 0 else ""
            lines.append(f"  {shown:<{title_width}}{label:<{label_width}}{cell:<{cell_width}}{row.verdict}")
    return lines


def main_job_summary(results_dir: str | os.PathLike, version: str) -> str:
    """One screenful about ``version``: its delta table's mean rows (every comparison), the internal
    evaluation's tuned − base, and where the tables, the report and the logs are."""
    paths = Paths(str(results_dir))
    deltas_csv = paths.deltas(version)
    table = read_delta_csv(deltas_csv)
    scenes = sorted(set(table["scene"]) - {MEAN})
    eval_csv = Path(paths.eval_deltas(version))
    evaluation = read_delta_csv(eval_csv) if eval_csv.exists() else None
    # one set of column widths for both tables, so that their lines align
    widths = column_widths([t for t in (table, evaluation) if t is not None], [STUDY_COMPARISON])
    lines = [
        f"{version}: novel views of {len(scenes)} reserved scenes, tuned − base: mean over scenes [interval], verdict",
        *mean_row_lines(table, [STUDY_COMPARISON], widths),
    ]
    if evaluation is not None:
        eval_scenes = ", ".join(sorted(set(evaluation["scene"]) - {MEAN}))
        lines.append(f"{version}: internal evaluation ({eval_scenes}), tuned − base")
        lines += mean_row_lines(evaluation, [STUDY_COMPARISON], widths)
    lines += [
        f"  every comparison, per scene and with notes: {paths.deltas(version, 'md')}"
        + (f", {paths.eval_deltas(version, 'md')}" if eval_csv.exists() else ""),
        f"  report: snakemake --report {paths.report_html(version)} {deltas_csv}",
    ]
    return "\n".join(lines)


def run_summary(
    results_dir: str | os.PathLike, versions: Iterable[str], since: float | None = None, detailed: int = 2
) -> str:
    """What the ``onsuccess`` handler prints: :func:`main_job_summary` of each version whose ``deltas.csv``
    exists (and, with ``since``, a time stamp, was written since then: this run's), up to ``detailed`` of
    them; beyond that a line each (tuned − base per metric), so a grid's run stays a screenful."""
    paths = Paths(str(results_dir))
    made = []
    for version in versions:
        path = Path(paths.deltas(version))
        if path.exists() and (since is None or path.stat().st_mtime >= since):
            made.append(version)
    if not made:
        return ""
    if len(made) <= detailed:
        parts = [main_job_summary(results_dir, version) for version in made]
    else:
        parts = [f"{len(made)} versions' delta tables, tuned − base (mean over scenes):"]
        for version in made:
            table = read_delta_csv(paths.deltas(version))
            rows = table[(table["scene"] == MEAN) & (table["comparison"] == STUDY_COMPARISON)].dropna(subset=["delta"])
            cells = [
                f"{row.metric} {format_interval(row.metric, row.delta, row.ci_low, row.ci_high)} {row.verdict}"
                for row in rows.itertuples()
            ]
            parts.append(f"  {version}: " + ("; ".join(cells) or "no metric computed"))
        parts.append(f"  per version: {paths.deltas('VERSION', 'md')}; all mean rows: {paths.versions_table()}")
    parts.append(f"  job logs: {paths.log('RULE', '...')}")
    return "\n".join(parts) + "\n"
