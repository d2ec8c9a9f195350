"""Result tables: per-scene metric tables, delta tables with bootstrap intervals, a version comparison.

* per-scene table: a row per (frame, cam) with :data:`hi4dfix.metrics.METRIC_COLUMNS` (plus any other
  keys the rows carry, e.g. ``lpips_computed``) and a final row with frame = cam = ``"mean"``. Means skip
  NaN, so person metrics average over the views where people are visible.
* per-view table (:func:`nvs_views`, :func:`read_eval_views`): the arms' per-view rows in one long table,
  ``arm, scene, frame, cam`` and the metric columns.
* delta table (:func:`delta_table`; ``deltas.csv``, ``difix/eval_deltas.csv``): long and tidy, one row per
  scene x metric x comparison, scenes in name order then a ``mean`` row, for each metric. Columns:

  ``scene``
      scene name, or ``mean`` for the mean over scenes
  ``metric``
      ``psnr``, ``ssim`` or ``lpips`` (or a ``*_person`` variant)
  ``comparison``
      ``tuned_vs_base`` (the study's question), ``tuned_vs_raw`` or ``base_vs_raw``: arm b vs arm a; with
      the control arm also ``tuned_vs_control`` (in-domain data against as many more steps on the base's
      own data) and ``control_vs_base`` (what the extra steps alone do)
  ``raw``, ``base``, ``tuned`` (and ``control`` when the study has the control arm)
      each arm's mean: over the scene's views (NaN skipped; the per-scene CSV's mean row), and for the
      ``mean`` row the mean over scenes of those scene means
  ``delta``
      the mean paired difference b - a: over the scene's views measured in both arms; for the ``mean`` row
      the mean over scenes of the scenes' deltas (every scene weighs the same)
  ``ci_low``, ``ci_high``
      its bootstrap interval (:mod:`hi4dfix.stats`: frames resampled within the scene; scenes, then frames
      within each drawn scene for the ``mean`` row; percentile interval at the configured confidence)
  ``n_frames``, ``n_views``
      the frames and views the delta rests on (summed over scenes in the ``mean`` row)
  ``verdict``
      ``improved`` or ``worse`` where the interval excludes 0 on the metric's good or bad side (PSNR and
      SSIM up is good, LPIPS down), else ``inconclusive``; empty where the metric was not computed
  ``note``
      what is missing or weak: metric not computed and why, scenes left out of the mean, a single frame,
      or fewer than :data:`hi4dfix.stats.FEW_UNITS` frames (scenes for the mean row), where the
      bootstrap interval is known to be too narrow

  ``deltas.csv`` also has ``refit`` (the arms of the comparison that ``nvs.mode: difix3d+`` refit, or
  ``none``; :func:`hi4dfix.evaluate.with_refit_column`), ``provenance`` and ``provenance_sha256`` (the
  record of what made its numbers; :mod:`hi4dfix.provenance`).
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from hi4dfix.io import atomic_path
from hi4dfix.metrics import (
    DEFAULT_DELTA_METRICS,
    LPIPS_FLAG_COLUMN,
    METRIC_COLUMNS,
    higher_is_better,
    metric_digits,
    metric_title,
)
from hi4dfix.stats import (
    FEW_UNITS,
    NO_VERDICT,
    VERDICTS,
    BootstrapConfig,
    Estimate,
    mean_estimate,
    scene_estimate,
    verdict,
)

MEAN = "mean"
KEY_COLUMNS = ("frame", "cam")
ARMS = ("raw", "base", "tuned")  # every study's arms: no DiFix, base DiFix, tuned DiFix
# The base trained as long as `tuned`, with its settings, on the base's own out-of-domain data (difix.control).
CONTROL = "control"
CONTROL_ARMS = (*ARMS, CONTROL)
COMPARISONS = (("tuned", "base"), ("tuned", "raw"), ("base", "raw"))  # (b, a): delta = b - a
# With the control arm: in-domain data against more steps, and what more steps alone do.
CONTROL_COMPARISONS = (("tuned", CONTROL), (CONTROL, "base"))
VIEW_COLUMNS = ("arm", "scene", "frame", "cam")
DELTA_COLUMNS = (
    "scene", "metric", "comparison", *ARMS, "delta", "ci_low", "ci_high", "n_frames", "n_views", "verdict", "note",
)  # fmt: skip
def study_arms(control: bool) -> tuple[str, ...]:
    """The arms of a study: raw, base and tuned, and the control arm when it is on."""
    return CONTROL_ARMS if control else ARMS


def arm_comparisons(arms: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The (b, a) comparisons of a set of arms: the three of every study, then the control arm's two."""
    return COMPARISONS + (CONTROL_COMPARISONS if CONTROL in arms else ())


def delta_columns(arms: Sequence[str]) -> tuple[str, ...]:
    """The delta table's columns for these arms: ``control`` after ``tuned`` when the study has it."""
    if CONTROL not in arms:
        return DELTA_COLUMNS
    at = DELTA_COLUMNS.index("tuned") + 1
    return (*DELTA_COLUMNS[:at], CONTROL, *DELTA_COLUMNS[at:])


def table_arms(table: pd.DataFrame) -> tuple[str, ...]:
    """The arms of a delta table (its arm-mean columns)."""
    return study_arms(CONTROL in table.columns)


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


def _parse_lpips_flags(df: pd.DataFrame) -> None:
    """The LPIPS flag column, where present, as booleans (CSV holds the text True/False)."""
    if LPIPS_FLAG_COLUMN in df.columns:
        df[LPIPS_FLAG_COLUMN] = df[LPIPS_FLAG_COLUMN].astype(str).str.lower().map({"true": True, "false": False})


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
    _parse_lpips_flags(df)
    try:
        scene_mean(df)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return df


# --------------------------------------------------------------------------------------------------
# Per-view metrics of the arms


def nvs_views(scenes: Sequence[str], arm_csvs: Mapping[str, Sequence[str | os.PathLike]]) -> pd.DataFrame:
    """The per-view rows of the per-scene NVS CSVs of every arm (one path per scene, in ``scenes`` order),
    as one long table: ``arm, scene, frame, cam`` and the metric columns (mean rows left out). The arms
    are raw, base and tuned, and control where ``arm_csvs`` has it."""
    missing = sorted(set(ARMS) - set(arm_csvs))
    if missing:
        raise ValueError(f"delta table: no per-scene CSVs for arms {missing}")
    unknown = sorted(set(arm_csvs) - set(CONTROL_ARMS))
    if unknown:
        raise ValueError(f"delta table: unknown arms {unknown} (known: {', '.join(CONTROL_ARMS)})")
    arms = study_arms(CONTROL in arm_csvs)
    return pd.concat([arm_views(arm, scenes, arm_csvs[arm]) for arm in arms], ignore_index=True)


def arm_views(arm: str, scenes: Sequence[str], paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One arm's per-view rows (``arm, scene, frame, cam``, metrics) from its per-scene CSVs (one per scene)."""
    paths = list(paths)
    if len(paths) != len(scenes):
        raise ValueError(f"{len(paths)} {arm} CSVs for {len(scenes)} scenes")
    parts = []
    for scene, path in zip(scenes, paths):
        table = read_per_scene_csv(path)
        table = table[table["frame"].astype(str) != MEAN].copy()
        for col in KEY_COLUMNS:
            table[col] = table[col].astype(np.int64)
        table.insert(0, "scene", scene)
        table.insert(0, "arm", arm)
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


def read_eval_views(path: str | os.PathLike) -> pd.DataFrame:
    """``eval.csv`` of the internal DiFix evaluation (rows ``arm, id = scene/cam/frame``, metrics) as
    the long per-view table of :func:`nvs_views`."""
    try:
        df = pd.read_csv(path, dtype={"arm": str, "id": str})
    except (FileNotFoundError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: cannot read the DiFix evaluation table ({err})") from err
    missing = [c for c in ("arm", "id", *METRIC_COLUMNS) if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: DiFix evaluation table lacks columns {missing}")
    ids = df["id"].str.extract(r"^(?P<scene>[^/]+)/(?P<cam>\d+)/(?P<frame>\d+)$")
    bad = df.loc[ids["scene"].isna(), "id"]
    if len(bad):
        raise ValueError(f"{path}: id {bad.iloc[0]!r} is not of the form scene/cam/frame")
    views = pd.DataFrame(
        {
            "arm": df["arm"],
            "scene": ids["scene"],
            "frame": ids["frame"].astype(np.int64),
            "cam": ids["cam"].astype(np.int64),
        }
    )
    for col in KEY_COLUMNS:  # evaluate_difix also writes them: they must agree with the id
        if col in df.columns and not (df[col].astype(np.int64) == views[col]).all():
            where = df.loc[df[col].astype(np.int64) != views[col], "id"].iloc[0]
            raise ValueError(f"{path}: row {where!r} has a {col} that differs from its id")
    _parse_lpips_flags(df)
    return pd.concat([views, df.drop(columns=["arm", "id", *[c for c in KEY_COLUMNS if c in df.columns]])], axis=1)


# --------------------------------------------------------------------------------------------------
# Delta tables


def comparison_name(b: str, a: str) -> str:
    """``tuned_vs_base``: the comparison of arm ``b`` against arm ``a`` (delta = b - a)."""
    return f"{b}_vs_{a}"


COMPARISON_NAMES = tuple(comparison_name(b, a) for b, a in COMPARISONS)
CONTROL_COMPARISON_NAMES = tuple(comparison_name(b, a) for b, a in CONTROL_COMPARISONS)


def _check_views(views: pd.DataFrame, metrics: Sequence[str], source: str) -> tuple[str, ...]:
    """Checks the per-view table; returns its arms (raw, base, tuned and, if present, control)."""
    missing = [c for c in (*VIEW_COLUMNS, *metrics) if c not in views.columns]
    if missing:
        raise ValueError(f"{source}: per-view metrics lack columns {missing}")
    if views.empty:
        raise ValueError(f"{source}: no per-view metrics")
    arms = set(views["arm"])
    if arms not in (set(ARMS), set(CONTROL_ARMS)):
        raise ValueError(f"{source}: arms {sorted(arms)}, expected {list(ARMS)} or {list(CONTROL_ARMS)}")
    expected = study_arms(CONTROL in arms)
    keyed = views.set_index(list(VIEW_COLUMNS)).index
    if keyed.has_duplicates:
        raise ValueError(
            f"{source}: views repeat (arm, scene, frame, cam): {sorted(set(keyed[keyed.duplicated()]))[:5]}"
        )
    by_arm = {
        arm: set(map(tuple, group[["scene", "frame", "cam"]].to_numpy().tolist()))
        for arm, group in views.groupby("arm")
    }
    reference = by_arm[expected[0]]
    for arm in expected[1:]:
        if by_arm[arm] != reference:
            only = sorted(by_arm[arm] ^ reference)[:5]
            raise ValueError(
                f"{source}: arms {expected[0]} and {arm} cover different views (scene, frame, cam), e.g. {only}"
            )
    return expected


LPIPS_NOT_CACHED = " (LPIPS AlexNet weights not cached)"  # appended to a note on a missing LPIPS


def lpips_not_cached(views: pd.DataFrame, metric: str, flag_columns: Sequence[str] = (LPIPS_FLAG_COLUMN,)) -> bool:
    """Whether LPIPS is missing because its weights were not cached: some row's flag in ``flag_columns``
    (those ``views`` has) says so."""
    if not metric.startswith("lpips"):
        return False
    flags = [column for column in flag_columns if column in views.columns]
    return any(bool((views[column] == False).any()) for column in flags)  # noqa: E712 (elementwise: flags)


def _not_computed_note(metric: str, values: pd.DataFrame, views: pd.DataFrame) -> str:
    """``values``: views by arm. Names every arm without a value, so a scene's comparisons share the note."""
    arms = [arm for arm in CONTROL_ARMS if arm in values.columns and values[arm].isna().all()]
    if not arms:  # each arm has values, never at the same views
        return f"{metric}: no view measured in both arms"
    note = f"{metric} not computed for {' and '.join([', '.join(arms[:-1]), arms[-1]] if len(arms) > 1 else arms)}"
    if lpips_not_cached(views[views["arm"].isin(arms)], metric):
        note += LPIPS_NOT_CACHED
    return note


def _scene_note(metric: str, b: str, a: str, values: pd.DataFrame, views: pd.DataFrame, est: Estimate) -> str:
    """Why a scene's comparison is missing or weak; ``values`` holds the scene's views by arm."""
    if values[a].isna().all() or values[b].isna().all():
        return _not_computed_note(metric, values, views)
    notes = []
    one_sided = int((values[a].isna() != values[b].isna()).sum())
    if one_sided:
        notes.append(f"{one_sided} views measured in only one arm left out")
    if est.n_frames == 1:
        notes.append("one frame: the bootstrap cannot see frame-to-frame variation")
    elif est.n_frames < FEW_UNITS:
        notes.append(f"{est.n_frames} frames: too few for the interval to cover as much as it says")
    return "; ".join(notes)


def _mean_note(metric: str, est: Estimate, wide: pd.DataFrame, views: pd.DataFrame) -> str:
    if not est.measured:
        return _not_computed_note(metric, wide, views)
    notes = []
    n_scenes = wide.index.get_level_values("scene").nunique()
    if est.n_scenes < n_scenes:
        notes.append(f"mean over {est.n_scenes} of {n_scenes} scenes")
    if est.n_scenes == 1:
        notes.append(
            "one scene of one frame: no variation to resample"
            if est.n_frames == 1
            else "one scene: the interval covers frame-to-frame variation only"
        )
    elif est.n_scenes < FEW_UNITS:
        notes.append(f"{est.n_scenes} scenes: too few for the interval to cover as much as it says")
    return "; ".join(notes)


def _delta_row(
    scene: str,
    metric: str,
    b: str,
    a: str,
    arms: Sequence[str],
    arm_means: Mapping[str, float],
    est: Estimate,
    note: str,
) -> dict[str, Any]:
    return {
        "scene": scene,
        "metric": metric,
        "comparison": comparison_name(b, a),
        **{arm: arm_means[arm] for arm in arms},
        "delta": est.delta,
        "ci_low": est.ci_low,
        "ci_high": est.ci_high,
        "n_frames": est.n_frames,
        "n_views": est.n_views,
        "verdict": verdict(est, higher_is_better(metric)),
        "note": note,
    }


def delta_table(
    views: pd.DataFrame,
    metrics: Sequence[str] = DEFAULT_DELTA_METRICS,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    source: str = "per-view metrics",
) -> pd.DataFrame:
    """The delta table (see the module doc) of the long per-view table ``views`` (:func:`nvs_views`,
    :func:`read_eval_views`): every arm must cover the same (scene, frame, cam) views. With a ``control``
    arm the table gains its column and the comparisons ``tuned_vs_control`` and ``control_vs_base``."""
    for metric in metrics:
        higher_is_better(metric)  # fail early on an unknown metric
    arms = _check_views(views, metrics, source)
    comparisons = arm_comparisons(arms)
    scenes = sorted(set(views["scene"]))
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        wide = views.pivot(index=["scene", "frame", "cam"], columns="arm", values=metric).astype(np.float64)
        scene_means = wide.groupby(level="scene").mean()  # per arm, NaN skipped: the per-scene CSVs' mean rows
        for scene in scenes:
            values = wide.loc[scene]
            frames = values.index.get_level_values("frame").to_numpy()
            scene_views = views[views["scene"] == scene]
            for b, a in comparisons:
                est = scene_estimate(frames, (values[b] - values[a]).to_numpy(), bootstrap, scene)
                note = _scene_note(metric, b, a, values, scene_views, est)
                rows.append(_delta_row(scene, metric, b, a, arms, scene_means.loc[scene], est, note))
        mean_arms = {
            arm: float(scene_means[arm].mean()) if scene_means[arm].notna().any() else math.nan for arm in arms
        }
        scene_of = wide.index.get_level_values("scene").to_numpy()
        frame_of = wide.index.get_level_values("frame").to_numpy()
        for b, a in comparisons:
            est = mean_estimate(scene_of, frame_of, (wide[b] - wide[a]).to_numpy(), bootstrap)
            rows.append(_delta_row(MEAN, metric, b, a, arms, mean_arms, est, _mean_note(metric, est, wide, views)))
    table = pd.DataFrame(rows, columns=list(delta_columns(arms)))
    table["n_frames"] = table["n_frames"].astype(np.int64)
    table["n_views"] = table["n_views"].astype(np.int64)
    return table


def delta_table_from_csvs(
    scenes: Sequence[str],
    arm_csvs: Mapping[str, Sequence[str | os.PathLike]],
    metrics: Sequence[str] = DEFAULT_DELTA_METRICS,
    bootstrap: BootstrapConfig = BootstrapConfig(),
) -> pd.DataFrame:
    """:func:`delta_table` of the per-scene NVS CSVs of the arms ``raw``, ``base`` and ``tuned`` (and ``control``)."""
    return delta_table(nvs_views(scenes, arm_csvs), metrics, bootstrap, source="per-scene NVS CSVs")


def read_delta_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a delta table written by :func:`write_csv`: empty verdicts and notes stay empty strings. A
    ``control`` column (a study with the control arm) is kept."""
    numeric = (*CONTROL_ARMS, "delta", "ci_low", "ci_high")
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values={c: ["", "nan", "NaN"] for c in numeric})
    except (FileNotFoundError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: cannot read delta table ({err})") from err
    missing = [c for c in DELTA_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: delta table lacks columns {missing}")
    for col in ("scene", "metric", "comparison", "verdict", "note"):
        df[col] = df[col].astype(str)
    for col in numeric:
        if col in df.columns:
            df[col] = df[col].astype(np.float64)
    unknown = sorted(set(df["verdict"]) - {*VERDICTS, NO_VERDICT})
    if unknown:
        raise ValueError(f"{path}: unknown verdicts {unknown}")
    arms = table_arms(df)
    names = {comparison_name(b, a) for b, a in arm_comparisons(arms)}
    strange = sorted(set(df["comparison"]) - names)
    if strange:
        raise ValueError(f"{path}: comparisons {strange} do not belong to the arms {', '.join(arms)}")
    return df[list(delta_columns(arms))]


# --------------------------------------------------------------------------------------------------
# Version comparison


def versions_table(deltas: Mapping[str, pd.DataFrame], parents: Mapping[str, str | None] | None = None) -> pd.DataFrame:
    """Every version's mean rows (one per metric and comparison), with ``version``, ``parent`` (the version it
    extends, empty for none) and ``n_scenes`` first; a ``control`` column when any version has the control arm
    (empty for those without it)."""
    if not deltas:
        raise ValueError("versions_table needs at least one version's delta table")
    parents = parents or {}
    parts = []
    for version, table in deltas.items():
        means = table[table["scene"].astype(str) == MEAN].copy()
        means.insert(0, "n_scenes", int(table.loc[table["scene"] != MEAN, "scene"].nunique()))
        means.insert(0, "parent", parents.get(version) or "")
        means.insert(0, "version", version)
        parts.append(means)
    control = any(CONTROL in table.columns for table in deltas.values())
    columns = [c for c in delta_columns(study_arms(control)) if c != "scene"]
    return pd.concat(parts, ignore_index=True)[["version", "parent", "n_scenes", *columns]]


# --------------------------------------------------------------------------------------------------
# Markdown


def _format_cell(value: Any, digits: int) -> str:
    if value is None or value is pd.NA:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, str) and not value:
        return "n/a"
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned, NaN/NA and empty text shown as ``n/a``."""
    header = [str(c).replace("|", "\\|") for c in table.columns]
    align = [
        "---:" if pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c]) else "---"
        for c in table.columns
    ]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for values in table.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(_format_cell(v, digits) for v in values) + " |")
    return "\n".join(lines) + "\n"


def _delta_cell(row: pd.Series, digits: int) -> str:
    if math.isnan(row["delta"]):
        return "n/a"
    return f"{row['delta']:+.{digits}f} [{row['ci_low']:+.{digits}f}, {row['ci_high']:+.{digits}f}]"


def _grouped_notes(rows: pd.DataFrame) -> list[str]:
    """``- where: note`` per distinct note; a scene whose every comparison has it is named alone."""
    lines = []
    n_comparisons = rows["comparison"].nunique()
    for note, group in rows[rows["note"] != ""].groupby("note", sort=False):
        where = []
        for scene, comparisons in group.groupby("scene", sort=False)["comparison"]:
            whole = len(comparisons) == n_comparisons
            where.append(scene if whole else f"{scene} ({', '.join(comparisons)})")
        lines.append(f"- {', '.join(where)}: {note}")
    return lines


def delta_markdown(table: pd.DataFrame, bootstrap: BootstrapConfig, title: str = "") -> str:
    """The delta table for reading: a table per metric, a row per scene (then the mean), for every
    comparison ``b − a [interval]`` and its verdict (the control arm's two where the table has them); the
    notes below; a preface says how it was made."""
    arms = table_arms(table)
    names = [comparison_name(b, a) for b, a in arm_comparisons(arms)]
    level = f"{bootstrap.confidence * 100:g}%"
    lines = [f"## {title}", ""] if title else []
    lines += [
        f"Mean paired difference b − a per scene with its {level} interval, and a verdict: improved or worse "
        "where the interval excludes 0 on the metric's good or bad side, else inconclusive. "
        f"Intervals: {bootstrap.describe()}.",
        "",
    ]
    for metric in dict.fromkeys(table["metric"]):
        rows = table[table["metric"] == metric]
        if rows["delta"].isna().all() and rows[list(arms)].isna().all(axis=None):  # a table of n/a says nothing more
            why = "; ".join(dict.fromkeys(n for n in rows["note"] if n)) or "not computed"
            lines += [f"**{metric_title(metric)}**: no scene has it: {why}.", ""]
            continue
        digits = metric_digits(metric)
        first = rows.drop_duplicates("scene")
        out = pd.DataFrame(
            {"scene": first["scene"].tolist(), "frames": first["n_frames"].tolist(), "views": first["n_views"].tolist()}
        )
        for arm in arms:
            out[arm] = first[arm].to_numpy(dtype=np.float64)
        for name in names:
            chosen = rows[rows["comparison"] == name].set_index("scene").reindex(out["scene"])
            b, a = name.split("_vs_")
            out[f"{b} − {a} [{level}]"] = [_delta_cell(r, digits) for _, r in chosen.iterrows()]
            out[f"{b} vs {a}"] = chosen["verdict"].tolist()
        lines += [f"**{metric_title(metric)}**", "", to_markdown(out, digits)]
        notes = _grouped_notes(rows)
        if notes:
            lines += [*notes, ""]
    return "\n".join(lines).rstrip("\n") + "\n"
