"""Result tables: per-scene metric tables, baseline-vs-tuned delta tables, and a version comparison.

* per-scene table: a row per (frame, cam) with :data:`hi4dfix.metrics.METRIC_COLUMNS` (plus any other
  keys the rows carry, e.g. ``lpips_computed``) and a final row with frame = cam = ``"mean"``. Means skip
  NaN, so person metrics average over the views where people are visible.
* delta table: a row per scene and metric, then a ``mean`` row per metric; ``delta = tuned - baseline``;
  ``improved`` is nullable (NA when either side is NaN) and ``note`` says what was not computed.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from hi4dfix.io import atomic_path
from hi4dfix.metrics import LPIPS_FLAG_COLUMN, METRIC_COLUMNS

MEAN = "mean"
KEY_COLUMNS = ("frame", "cam")
DELTA_COLUMNS = ("scene", "metric", "baseline", "tuned", "delta", "improved", "note")
DEFAULT_DELTA_METRICS = ("psnr", "ssim", "lpips")


def higher_is_better(metric: str) -> bool:
    """Direction of a metric: PSNR and SSIM up, LPIPS down (``*_person`` variants alike)."""
    base = metric.removesuffix("_person")
    if base in ("psnr", "ssim"):
        return True
    if base == "lpips":
        return False
    raise ValueError(f"unknown metric {metric!r}: expected psnr, ssim or lpips (optionally with _person)")


# --------------------------------------------------------------------------------------------------
# Per-scene tables


def per_scene_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows of ``{frame, cam, psnr, ..., lpips_person, ...}`` -> table sorted by (frame, cam) plus a mean row."""
    if not rows:
        raise ValueError("per_scene_table needs at least one (frame, cam) row")
    required = set(KEY_COLUMNS) | set(METRIC_COLUMNS)
    for i, row in enumerate(rows):
        missing = required - set(row)
        if missing:
            raise ValueError(f"per-scene row {i} lacks {sorted(missing)}: {dict(row)}")
    df = pd.DataFrame([dict(r) for r in rows])
    keys = list(zip(df["frame"], df["cam"]))
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"per-scene rows repeat (frame, cam): {dupes}")
    if (df["frame"].astype(str) == MEAN).any() or (df["cam"].astype(str) == MEAN).any():
        raise ValueError("per-scene rows already contain a 'mean' row")
    df = df.sort_values(list(KEY_COLUMNS), kind="stable").reset_index(drop=True)
    other = [c for c in df.columns if c not in KEY_COLUMNS and c not in METRIC_COLUMNS]
    df = df[[*KEY_COLUMNS, *METRIC_COLUMNS, *other]]
    for col in METRIC_COLUMNS:
        df[col] = df[col].astype(np.float64)
    return _append_mean_row(df)


def _append_mean_row(df: pd.DataFrame) -> pd.DataFrame:
    mean_row: dict[str, Any] = {"frame": MEAN, "cam": MEAN}
    for col in df.columns:
        if col in KEY_COLUMNS:
            continue
        if col in METRIC_COLUMNS:
            mean_row[col] = float(df[col].mean(skipna=True)) if df[col].notna().any() else math.nan
        elif pd.api.types.is_bool_dtype(df[col]):
            mean_row[col] = bool(df[col].all())  # e.g. lpips_computed: true only if computed everywhere
        elif pd.api.types.is_numeric_dtype(df[col]):
            mean_row[col] = float(df[col].mean(skipna=True)) if df[col].notna().any() else math.nan
        else:
            mean_row[col] = None
    keys = df[list(KEY_COLUMNS)].astype(object)
    body = pd.concat([keys, df.drop(columns=list(KEY_COLUMNS))], axis=1)
    return pd.concat([body, pd.DataFrame([mean_row])[body.columns]], ignore_index=True)


def scene_mean(table: pd.DataFrame) -> pd.Series:
    """The ``mean`` row of a per-scene table."""
    hit = table[table["frame"].astype(str) == MEAN]
    if len(hit) != 1:
        raise ValueError(f"per-scene table has {len(hit)} 'mean' rows, expected exactly 1")
    return hit.iloc[0]


def write_csv(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write any table as CSV, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def read_per_scene_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a per-scene table written by :func:`write_csv`; frame/cam become int except on the mean row."""
    try:
        df = pd.read_csv(path, dtype={"frame": str, "cam": str}, keep_default_na=True)
    except (FileNotFoundError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: cannot read per-scene metrics table ({err})") from err
    missing = [c for c in (*KEY_COLUMNS, *METRIC_COLUMNS) if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: per-scene metrics table lacks columns {missing}")
    for col in KEY_COLUMNS:
        df[col] = [MEAN if v == MEAN else int(v) for v in df[col]]
        df[col] = df[col].astype(object)
    if LPIPS_FLAG_COLUMN in df.columns:
        df[LPIPS_FLAG_COLUMN] = df[LPIPS_FLAG_COLUMN].astype(str).str.lower().map({"true": True, "false": False})
    try:
        scene_mean(df)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return df


# --------------------------------------------------------------------------------------------------
# Delta tables


def _lpips_flag(summary: pd.Series) -> bool | None:
    if LPIPS_FLAG_COLUMN not in summary.index or pd.isna(summary[LPIPS_FLAG_COLUMN]):
        return None
    return bool(summary[LPIPS_FLAG_COLUMN])


def _missing_note(metric: str, arms: Iterable[tuple[str, float, bool | None]]) -> str:
    missing = [name for name, value, _ in arms if math.isnan(value)]
    if not missing:
        return ""
    note = f"{metric} not computed for {' and '.join(missing)}"
    if metric.startswith("lpips") and any(flag is False for name, _, flag in arms if name in missing):
        note += " (LPIPS AlexNet weights not cached)"
    return note


def _improved(metric: str, delta: float) -> Any:
    if math.isnan(delta):
        return pd.NA
    return bool(delta > 0) if higher_is_better(metric) else bool(delta < 0)


def delta_table(
    baseline: Mapping[str, pd.DataFrame],
    tuned: Mapping[str, pd.DataFrame],
    metrics: Sequence[str] = DEFAULT_DELTA_METRICS,
    raw: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Compare the scene means of two arms (e.g. stock DiFix vs fine-tuned DiFix) scene by scene.

    ``raw`` (optional) is the no-DiFix arm, shown as a ``raw`` column for context. The ``mean`` row of a
    metric averages the scenes where both baseline and tuned are known (the note says how many).
    """
    if set(baseline) != set(tuned):
        raise ValueError(
            f"baseline and tuned cover different scenes: only baseline {sorted(set(baseline) - set(tuned))}, "
            f"only tuned {sorted(set(tuned) - set(baseline))}"
        )
    if not baseline:
        raise ValueError("delta_table needs at least one scene")
    if raw is not None and set(baseline) - set(raw):
        raise ValueError(f"raw arm lacks scenes {sorted(set(baseline) - set(raw))}")
    for metric in metrics:
        higher_is_better(metric)  # fail early on an unknown metric
    scenes = sorted(baseline)
    arms = {"baseline": baseline, "tuned": tuned, **({"raw": raw} if raw is not None else {})}
    summaries = {arm: {s: scene_mean(tables[s]) for s in scenes} for arm, tables in arms.items()}

    rows: list[dict[str, Any]] = []
    for metric in metrics:
        per_scene: list[dict[str, Any]] = []
        for scene in scenes:
            values = {}
            for arm in arms:
                if metric not in summaries[arm][scene].index:
                    raise ValueError(f"{arm} table of scene {scene!r} has no {metric!r} column")
                values[arm] = float(summaries[arm][scene][metric])
            delta = values["tuned"] - values["baseline"]
            note = _missing_note(
                metric,
                [(arm, values[arm], _lpips_flag(summaries[arm][scene])) for arm in ("baseline", "tuned")],
            )
            per_scene.append(
                {"scene": scene, "metric": metric, **values, "delta": delta, "improved": _improved(metric, delta), "note": note}
            )
        rows.extend(per_scene)
        rows.append(_mean_delta_row(metric, per_scene, with_raw=raw is not None))

    columns = ["scene", "metric", *(["raw"] if raw is not None else []), "baseline", "tuned", "delta", "improved", "note"]
    df = pd.DataFrame(rows)[columns]
    df["improved"] = df["improved"].astype("boolean")
    return df


def delta_table_from_csvs(
    scenes: Sequence[str],
    arm_csvs: Mapping[str, Sequence[str | os.PathLike]],
    metrics: Sequence[str] = DEFAULT_DELTA_METRICS,
) -> pd.DataFrame:
    """:func:`delta_table` from the per-scene NVS CSVs of the arms ``raw``, ``base`` and
    ``tuned`` (one path per scene, in ``scenes`` order)."""
    missing = sorted({"raw", "base", "tuned"} - set(arm_csvs))
    if missing:
        raise ValueError(f"delta table: no per-scene CSVs for arms {missing}")
    tables = {}
    for arm in ("raw", "base", "tuned"):
        paths = list(arm_csvs[arm])
        if len(paths) != len(scenes):
            raise ValueError(f"delta table: {len(paths)} {arm} CSVs for {len(scenes)} scenes")
        tables[arm] = {scene: read_per_scene_csv(path) for scene, path in zip(scenes, paths)}
    return delta_table(baseline=tables["base"], tuned=tables["tuned"], metrics=metrics, raw=tables["raw"])


def _mean_delta_row(metric: str, per_scene: list[dict[str, Any]], with_raw: bool) -> dict[str, Any]:
    paired = [r for r in per_scene if not (math.isnan(r["baseline"]) or math.isnan(r["tuned"]))]

    def mean(key: str) -> float:
        known = [r[key] for r in paired if not math.isnan(r[key])]
        return float(np.mean(known)) if known else math.nan

    baseline, tuned = mean("baseline"), mean("tuned")
    delta = tuned - baseline
    if not paired:
        note = f"{metric} not computed"
    elif len(paired) < len(per_scene):
        note = f"mean over {len(paired)} of {len(per_scene)} scenes"
    else:
        note = ""
    row = {"scene": MEAN, "metric": metric, "baseline": baseline, "tuned": tuned, "delta": delta}
    if with_raw:
        row["raw"] = mean("raw")
    row.update(improved=_improved(metric, delta), note=note)
    return row


def read_delta_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a delta table written by :func:`write_csv`, restoring the nullable ``improved`` column."""
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values={c: [""] for c in ("raw", "baseline", "tuned", "delta")})
    except (FileNotFoundError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: cannot read delta table ({err})") from err
    missing = [c for c in DELTA_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: delta table lacks columns {missing}")
    df["improved"] = df["improved"].astype(str).str.lower().map({"true": True, "false": False}).astype("boolean")
    df["scene"] = df["scene"].astype(str)
    df["note"] = df["note"].astype(str)
    return df


# --------------------------------------------------------------------------------------------------
# Version comparison


def versions_table(deltas: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per version: its mean baseline, tuned, delta and improved for every metric, side by side."""
    if not deltas:
        raise ValueError("versions_table needs at least one version's delta table")
    metric_order: list[str] = []
    rows = []
    for version, table in deltas.items():
        means = table[table["scene"].astype(str) == MEAN]
        row: dict[str, Any] = {"version": version, "n_scenes": int(table.loc[table["scene"] != MEAN, "scene"].nunique())}
        for _, mean_row in means.iterrows():
            metric = mean_row["metric"]
            if metric not in metric_order:
                metric_order.append(metric)
            for key in ("baseline", "tuned", "delta", "improved"):
                row[f"{metric}_{key}"] = mean_row[key]
        rows.append(row)
    columns = ["version", "n_scenes"] + [f"{m}_{k}" for m in metric_order for k in ("baseline", "tuned", "delta", "improved")]
    df = pd.DataFrame(rows).reindex(columns=columns)
    for metric in metric_order:
        df[f"{metric}_improved"] = df[f"{metric}_improved"].astype("boolean")
    return df


# --------------------------------------------------------------------------------------------------
# Markdown


def _format_cell(value: Any, digits: int) -> str:
    if value is None or value is pd.NA:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned, NaN/NA shown as ``n/a``."""
    header = [str(c) for c in table.columns]
    align = ["---:" if pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c]) else "---" for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for values in table.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(_format_cell(v, digits) for v in values) + " |")
    return "\n".join(lines) + "\n"
