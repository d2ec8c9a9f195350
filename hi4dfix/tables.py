"""Result tables: per-scene metric tables, delta tables with intervals, tests and verdicts, a version comparison.

* per-scene table: a row per (frame, cam) with :data:`hi4dfix.metrics.METRIC_COLUMNS` (plus any other
  keys the rows carry, e.g. ``lpips_computed``) and a final row with frame = cam = ``"mean"``. Means skip
  NaN, so person metrics average over the views where people are visible.
* per-view table (:func:`nvs_views`, :func:`read_eval_views`): the arms' per-view rows in one long table,
  ``arm, scene, frame, cam`` and the metric columns.
* delta table (:func:`delta_table`; ``deltas.csv``, ``difix/eval_deltas.csv``): long and tidy, one row per
  scene x metric x comparison, scenes in name order then a ``mean`` row, for each metric (default: the
  declared endpoint's, ``stats.primary`` and ``stats.secondary``, person-region ones included). Columns:

  ``scene``
      scene name, or ``mean`` for the mean over scenes
  ``metric``
      ``psnr``, ``ssim`` or ``lpips`` (or a ``*_person`` variant)
  ``comparison``
      ``tuned_vs_base`` (the study's question), ``tuned_vs_raw`` or ``base_vs_raw``: arm b vs arm a; with
      the control arm also ``tuned_vs_control`` (in-domain data against as many more steps on fresh
      out-of-domain data) and ``control_vs_base`` (what those extra steps do)
  ``raw``, ``base``, ``tuned`` (and ``control`` when the study has the control arm)
      each arm's mean: over the scene's views (NaN skipped; the per-scene CSV's mean row), and for the
      ``mean`` row the mean over scenes of those scene means
  ``delta``
      the mean paired difference b - a: over the scene's views measured in both arms; for the ``mean`` row
      the mean over scenes of the scenes' deltas (every scene weighs the same)
  ``ci_low``, ``ci_high``
      its interval (:mod:`hi4dfix.stats`): for a scene row the t interval of batches of consecutive frames
      (evidence within that scene only); for the ``mean`` row the t interval on the scene means (across
      scenes; with one scene, that scene's within-scene interval)
  ``n_frames``, ``n_views``
      the frames and views the delta rests on (summed over scenes in the ``mean`` row)
  ``verdict``
      ``improved`` or ``worse`` where the row's Holm-adjusted p (``p_holm``) is below ``1 - confidence`` on
      the metric's good or bad side (PSNR and SSIM up is good, LPIPS down); ``equivalent`` where the interval
      lies inside ``±stats.min_effect`` (the primary metric only); ``too few scenes`` on a mean row whose
      scenes cannot reach the level (one scene, or ``2 / 2^S`` times the family size not below alpha: the note
      says how many scenes would); ``too few seeds`` on a comparison with an arm that trains in the study
      (tuned, control) resting on one training seed (:mod:`hi4dfix.stats`: a trained model's luck is
      common to every scene, so no test over scenes sees it); ``too few frames`` on a one-frame scene row;
      else ``inconclusive``; empty where the metric was not computed
  ``note``
      what is missing or weak: metric not computed and why, scenes left out of the mean, a single frame,
      frames too few to measure their autocorrelation, too few scenes for a verdict
  ``unit``
      what the interval and test treat as independent: ``across 4 scenes``, ``within hi4d_pair02_dance only
      (5 batches of ~22 frames)``
  ``test``
      ``sign-flip`` (exact over the scene means) or ``t on batch means`` (within one scene); with training
      seeds ``sign-flip and t over scenes x seeds`` or ``t on batch means and across seeds``
  ``p_value``, ``p_holm``
      the test's two-sided p-value of no difference (never 0), and Holm's adjustment across the comparisons
      of the row's group (one scene, or the mean row, of one metric): the family the verdict is made in

  With several training seeds (``tuning.seeds``: per-view rows with a ``seed`` column) every estimate of a
  comparison with a trained arm takes the seed level (:func:`hi4dfix.stats.mean_estimate`'s ``replicates``:
  the scenes x seeds table, scenes and seeds both units) and the table gains ``seeds`` (the seeds the
  comparison rests on: each seed of a trained arm is paired with the same seed of the other, or with the
  one run of raw or base) and ``seed_sd`` (the standard
  deviation across seeds of the row's difference: of the scene's per-seed means, or for the ``mean`` row of
  each seed's mean over scenes; NaN with one seed).

  ``deltas.csv`` also has ``refit`` (the arms of the comparison that ``nvs.mode: difix3d+`` refit, or
  ``none``; :func:`hi4dfix.evaluate.with_refit_column`) and ``provenance`` (the path of the record of
  what made its numbers, sealed after the table and hashing it; :mod:`hi4dfix.provenance`).
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from hi4dfix.arms import (
    ARMS,
    COMPARISONS,
    CONTROL,
    CONTROL_ARMS,
    CONTROL_COMPARISONS,
    arm_comparisons,
    extra_arms_of,
    study_arms,
)
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
    holm,
    mean_estimate,
    scene_estimate,
    scenes_needed,
    verdict,
)

MEAN = "mean"
TRAINED_ARMS = ("tuned", CONTROL)  # the arms trained in the study: one run per training seed
SEED = "seed"  # a per-view row's training seed (arms that train, several tuning.seeds); NaN for raw and base
SEED_COLUMNS = ("seeds", "seed_sd")  # a delta table's seed spread (several seeds only)
KEY_COLUMNS = ("frame", "cam")
VIEW_COLUMNS = ("arm", "scene", "frame", "cam")
DELTA_COLUMNS = (
    "scene", "metric", "comparison", *ARMS, "delta", "ci_low", "ci_high", "n_frames", "n_views", "verdict", "note",
    "unit", "test", "p_value", "p_holm",
)  # fmt: skip


def delta_columns(arms: Sequence[str]) -> tuple[str, ...]:
    """The delta table's columns for these arms: ``control`` after ``tuned`` when the study has it, then the
    extra arms (``difix.extra_arms``) in order."""
    later = (*((CONTROL,) if CONTROL in arms else ()), *extra_arms_of(arms))
    at = DELTA_COLUMNS.index("tuned") + 1
    return (*DELTA_COLUMNS[:at], *later, *DELTA_COLUMNS[at:])


def table_arms(table: pd.DataFrame) -> tuple[str, ...]:
    """The arms of a delta table (its arm-mean columns: raw, base, tuned, then any up to ``delta``)."""
    columns = list(table.columns)
    later = columns[columns.index("tuned") + 1 : columns.index("delta")] if "delta" in columns else []
    return study_arms(CONTROL in later, extra_arms_of(later))


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


def nvs_views(
    scenes: Sequence[str],
    arm_csvs: Mapping[str, Sequence[str | os.PathLike]],
    seed_csvs: Mapping[str, Mapping[int, Sequence[str | os.PathLike]]] | None = None,
    first_seed: int = 0,
) -> pd.DataFrame:
    """The per-view rows of the per-scene NVS CSVs of every arm (one path per scene, in ``scenes`` order),
    as one long table: ``arm, scene, frame, cam`` and the metric columns (mean rows left out). The arms
    are raw, base and tuned, control where ``arm_csvs`` has it, then any extra arms in ``arm_csvs`` order.
    ``seed_csvs``: the further training seeds' CSVs of the arms that train (arm -> seed -> one per scene);
    given, the table has a ``seed`` column (``first_seed`` for ``arm_csvs``' trained arms, NaN for the
    others)."""
    missing = sorted(set(ARMS) - set(arm_csvs))
    if missing:
        raise ValueError(f"delta table: no per-scene CSVs for arms {missing}")
    arms = study_arms(CONTROL in arm_csvs, extra_arms_of(list(arm_csvs)))
    parts = [arm_views(arm, scenes, arm_csvs[arm]) for arm in arms]
    if seed_csvs:
        for arm, part in zip(arms, parts):
            part[SEED] = float(first_seed) if arm in seed_csvs else math.nan
        for arm, by_seed in seed_csvs.items():
            if arm not in TRAINED_ARMS or arm not in arms:
                raise ValueError(f"delta table: seed CSVs for arm {arm!r}, which does not train")
            for seed, paths in by_seed.items():
                part = arm_views(arm, scenes, paths)
                part[SEED] = float(seed)
                parts.append(part)
    return pd.concat(parts, ignore_index=True)


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


def read_seeded_eval_views(paths: Mapping[int, str | os.PathLike]) -> pd.DataFrame:
    """The internal evaluation of several training seeds (seed -> its ``eval.csv``, the first seed first):
    :func:`read_eval_views` with a ``seed`` column on the arms that train; raw and base, which every seed's
    file repeats, are taken once (from the first). One seed: :func:`read_eval_views` as it is."""
    items = list(paths.items())
    if len(items) == 1:
        return read_eval_views(items[0][1])
    parts = []
    for index, (seed, path) in enumerate(items):
        views = read_eval_views(path)
        trains = views["arm"].isin(TRAINED_ARMS)  # raw, base and extra arms do not train
        views[SEED] = np.where(trains, float(seed), math.nan)
        parts.append(views if index == 0 else views[trains])
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Delta tables


def comparison_name(b: str, a: str) -> str:
    """``tuned_vs_base``: the comparison of arm ``b`` against arm ``a`` (delta = b - a)."""
    return f"{b}_vs_{a}"


COMPARISON_NAMES = tuple(comparison_name(b, a) for b, a in COMPARISONS)
CONTROL_COMPARISON_NAMES = tuple(comparison_name(b, a) for b, a in CONTROL_COMPARISONS)


def _check_views(views: pd.DataFrame, metrics: Sequence[str], source: str) -> tuple[str, ...]:
    """Checks the per-view table; returns its arms (raw, base, tuned, control if present, then the extra arms
    in the order they first appear)."""
    missing = [c for c in (*VIEW_COLUMNS, *metrics) if c not in views.columns]
    if missing:
        raise ValueError(f"{source}: per-view metrics lack columns {missing}")
    if views.empty:
        raise ValueError(f"{source}: no per-view metrics")
    arms = list(dict.fromkeys(views["arm"]))
    if not set(ARMS) <= set(arms):
        raise ValueError(
            f"{source}: arms {sorted(arms)}, expected {list(ARMS)} or {list(CONTROL_ARMS)} (and any extra arms)"
        )
    expected = study_arms(CONTROL in arms, extra_arms_of(arms))
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
    present = list(values.columns)
    ordered = study_arms(CONTROL in present, extra_arms_of(present))
    arms = [arm for arm in ordered if arm in present and values[arm].isna().all()]
    if not arms:  # each arm has values, never at the same views
        return f"{metric}: no view measured in both arms"
    note = f"{metric} not computed for {' and '.join([', '.join(arms[:-1]), arms[-1]] if len(arms) > 1 else arms)}"
    if lpips_not_cached(views[views["arm"].isin(arms)], metric):
        note += LPIPS_NOT_CACHED
    return note


def trains(b: str, a: str) -> bool:
    """Whether the comparison of ``b`` against ``a`` has an arm trained in the study (its seeds are units)."""
    return b in TRAINED_ARMS or a in TRAINED_ARMS


TOO_FEW_SEEDS_NOTE = (
    "1 training seed: the trained model's luck, common to every scene, is not measured; tuning.seeds with 2 or "
    "more seeds allows a verdict (hi4dfix power says how many)"
)


def _scene_note(metric: str, b: str, a: str, values: pd.DataFrame, views: pd.DataFrame, est: Estimate) -> str:
    """Why a scene's comparison is missing or weak; ``values`` holds the scene's views by arm."""
    if values[a].isna().all() or values[b].isna().all():
        return _not_computed_note(metric, values, views)
    notes = [TOO_FEW_SEEDS_NOTE] if est.n_seeds == 1 else []
    one_sided = int((values[a].isna() != values[b].isna()).sum())
    if one_sided:
        notes.append(f"{one_sided} views measured in only one arm left out")
    if est.n_frames == 1:
        notes.append("one frame: no within-scene variation to test against")
    elif est.n_frames < FEW_UNITS:
        notes.append(f"{est.n_frames} frames: too few to measure their autocorrelation, taken as independent")
    return "; ".join(notes)


def too_few_scenes_note(n_scenes: int, family: int, alpha: float, n_resamples: int = 2000) -> str:
    """Why ``n_scenes`` scenes give no verdict, and how many would."""
    needed = scenes_needed(family, alpha, n_resamples)
    over = f" after Holm over {family} comparisons" if family > 1 else ""
    return (
        f"{n_scenes} scene{'s' if n_scenes != 1 else ''}: the scene-level sign-flip test cannot reach "
        f"alpha {alpha:g}{over}; {needed} scenes would allow a verdict"
    )


def _mean_note(metric: str, est: Estimate, wide: pd.DataFrame, views: pd.DataFrame, family: int, cfg) -> str:
    if not est.measured:
        return _not_computed_note(metric, wide, views)
    notes = []
    n_scenes = wide.index.get_level_values("scene").nunique()
    if est.n_scenes < n_scenes:
        notes.append(f"mean over {est.n_scenes} of {n_scenes} scenes")
    if est.n_scenes == 1:
        notes.append("one scene: within-scene evidence only, no claim about unseen scenes")
    if est.n_scenes == 1 or family * est.min_p >= cfg.alpha:
        notes.append(too_few_scenes_note(est.n_scenes, family, cfg.alpha, cfg.n_resamples))
    if est.n_seeds == 1:
        notes.append(TOO_FEW_SEEDS_NOTE)
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
        "verdict": NO_VERDICT,  # set with the family's Holm adjustment
        "note": note,
        "unit": est.unit,
        "test": est.test,
        "p_value": est.p_value,
        "p_holm": math.nan,
    }


def _family_verdicts(rows: list[dict[str, Any]], estimates: list[Estimate], cfg: BootstrapConfig) -> None:
    """Holm across one row group's comparisons (one scene or the mean row, one metric), then the verdicts."""
    adjusted = holm([row["p_value"] for row in rows])
    family = int(np.isfinite(adjusted).sum())
    for row, est, p in zip(rows, estimates, adjusted):
        row["p_holm"] = float(p)
        min_effect = cfg.min_effect if row["metric"] == cfg.primary else 0.0
        row["verdict"] = verdict(est, higher_is_better(row["metric"]), cfg.alpha, float(p), max(family, 1), min_effect)


def endpoint_metrics(cfg: BootstrapConfig) -> tuple[str, ...]:
    """The metrics of the declared endpoint (``stats.primary`` and ``stats.secondary``): whole-frame ones
    first, each beside its person-region variant's place (psnr, ssim, lpips, then the ``_person`` ones)."""
    wanted = {cfg.primary, *cfg.secondary}
    order = [*DEFAULT_DELTA_METRICS, *(f"{m}_person" for m in DEFAULT_DELTA_METRICS)]
    return tuple(m for m in order if m in wanted) + tuple(sorted(wanted - set(order)))


def delta_table(
    views: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    source: str = "per-view metrics",
) -> pd.DataFrame:
    """The delta table (see the module doc) of the long per-view table ``views`` (:func:`nvs_views`,
    :func:`read_eval_views`): every arm must cover the same (scene, frame, cam) views. With a ``control``
    arm the table gains its column and the comparisons ``tuned_vs_control`` and ``control_vs_base``.
    ``metrics``: default the declared endpoint's (:func:`endpoint_metrics`)."""
    metrics = endpoint_metrics(bootstrap) if metrics is None else tuple(metrics)
    for metric in metrics:
        higher_is_better(metric)  # fail early on an unknown metric
    if SEED in views.columns and views[SEED].nunique() > 1:
        return _seeded_delta_table(views, metrics, bootstrap, source)
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
            group, estimates = [], []
            for b, a in comparisons:
                est = scene_estimate(frames, (values[b] - values[a]).to_numpy(), bootstrap, scene, trained=trains(b, a))
                note = _scene_note(metric, b, a, values, scene_views, est)
                group.append(_delta_row(scene, metric, b, a, arms, scene_means.loc[scene], est, note))
                estimates.append(est)
            _family_verdicts(group, estimates, bootstrap)
            rows += group
        mean_arms = {
            arm: float(scene_means[arm].mean()) if scene_means[arm].notna().any() else math.nan for arm in arms
        }
        scene_of = wide.index.get_level_values("scene").to_numpy()
        frame_of = wide.index.get_level_values("frame").to_numpy()
        estimates = [
            mean_estimate(scene_of, frame_of, (wide[b] - wide[a]).to_numpy(), bootstrap, trained=trains(b, a))
            for b, a in comparisons
        ]
        family = max(sum(est.measured for est in estimates), 1)
        group = [
            _delta_row(
                MEAN, metric, b, a, arms, mean_arms, est, _mean_note(metric, est, wide, views, family, bootstrap)
            )
            for (b, a), est in zip(comparisons, estimates)
        ]
        _family_verdicts(group, estimates, bootstrap)
        rows += group
    table = pd.DataFrame(rows, columns=list(delta_columns(arms)))
    table["n_frames"] = table["n_frames"].astype(np.int64)
    table["n_views"] = table["n_views"].astype(np.int64)
    return table


def _seed_means(pairs: pd.DataFrame) -> pd.Series:
    """Each seed's mean difference over scenes (each scene's per-seed mean first, every scene weighs the same)."""
    return pairs.dropna(subset=["diff"]).groupby([SEED, "scene"])["diff"].mean().groupby(level=SEED).mean()


def _seed_spread(pairs: pd.DataFrame) -> dict[str, Any]:
    """``seeds`` and ``seed_sd`` of paired differences (:func:`paired_differences`)."""
    means = _seed_means(pairs) if pairs[SEED].notna().any() else pd.Series(dtype=np.float64)
    return {"seeds": max(len(means), 1), "seed_sd": float(means.std(ddof=1)) if len(means) > 1 else math.nan}


def paired_differences(views: pd.DataFrame, metric: str, b: str, a: str) -> pd.DataFrame:
    """Per-view differences ``b - a`` of ``metric`` with the row's training seed (``scene, frame, cam, seed,
    diff``): two arms that train pair seed with seed; an arm with one run (raw, base) pairs with every seed
    of the other; neither trains: ``seed`` NaN."""
    key = ["scene", "frame", "cam"]
    parts = {arm: views.loc[views["arm"] == arm, [*key, SEED, metric]] for arm in (b, a)}
    trains = {arm: bool(part[SEED].notna().any()) for arm, part in parts.items()}
    for arm in (b, a):
        if not (trains[b] and trains[a]) and not trains[arm]:
            parts[arm] = parts[arm].drop(columns=SEED)
    on = [*key, SEED] if trains[b] and trains[a] else key
    merged = parts[b].merge(parts[a], on=on, suffixes=("_b", "_a"))
    if SEED not in merged.columns:
        merged[SEED] = math.nan
    merged["diff"] = merged[f"{metric}_b"].astype(np.float64) - merged[f"{metric}_a"].astype(np.float64)
    return merged[[*key, SEED, "diff"]]


def _replicates(pairs: pd.DataFrame) -> np.ndarray | None:
    return pairs[SEED].to_numpy() if pairs[SEED].notna().any() else None


def _seeded_delta_table(
    views: pd.DataFrame, metrics: Sequence[str], bootstrap: BootstrapConfig, source: str
) -> pd.DataFrame:
    """:func:`delta_table` of views with several training seeds (module doc: ``seeds``, ``seed_sd``)."""
    keyed = views.set_index([*VIEW_COLUMNS, SEED]).index
    if keyed.has_duplicates:
        raise ValueError(
            f"{source}: views repeat (arm, scene, frame, cam, seed): {list(keyed[keyed.duplicated()])[:5]}"
        )
    # every arm on the same views, whatever its seeds: checked on the seed-averaged views
    averaged = views.groupby(list(VIEW_COLUMNS), as_index=False, sort=False)[list(metrics)].mean()
    arms = _check_views(averaged, metrics, source)
    comparisons = arm_comparisons(arms)
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        wide = averaged.pivot(index=["scene", "frame", "cam"], columns="arm", values=metric).astype(np.float64)
        scene_means = wide.groupby(level="scene").mean()
        pairs = {(b, a): paired_differences(views, metric, b, a) for b, a in comparisons}
        for scene in sorted(set(views["scene"])):
            group, estimates = [], []
            for b, a in comparisons:
                mine = pairs[b, a][pairs[b, a]["scene"] == scene]
                est = scene_estimate(
                    mine["frame"].to_numpy(), mine["diff"].to_numpy(), bootstrap, scene, _replicates(mine), trains(b, a)
                )
                note = _scene_note(metric, b, a, wide.loc[scene], views[views["scene"] == scene], est)
                row = _delta_row(scene, metric, b, a, arms, scene_means.loc[scene], est, note)
                group.append({**row, **_seed_spread(mine)})
                estimates.append(est)
            _family_verdicts(group, estimates, bootstrap)
            rows += group
        mean_arms = {
            arm: float(scene_means[arm].mean()) if scene_means[arm].notna().any() else math.nan for arm in arms
        }
        estimates = [
            mean_estimate(
                p["scene"].to_numpy(),
                p["frame"].to_numpy(),
                p["diff"].to_numpy(),
                bootstrap,
                _replicates(p),
                trains(b, a),
            )
            for (b, a), p in pairs.items()
        ]
        family = max(sum(est.measured for est in estimates), 1)
        group = [
            {
                **_delta_row(
                    MEAN, metric, b, a, arms, mean_arms, est, _mean_note(metric, est, wide, views, family, bootstrap)
                ),
                **_seed_spread(pairs[b, a]),
            }
            for (b, a), est in zip(comparisons, estimates)
        ]
        _family_verdicts(group, estimates, bootstrap)
        rows += group
    table = pd.DataFrame(rows, columns=[*delta_columns(arms), *SEED_COLUMNS])
    for column in ("n_frames", "n_views", "seeds"):
        table[column] = table[column].astype(np.int64)
    return table


def delta_table_from_csvs(
    scenes: Sequence[str],
    arm_csvs: Mapping[str, Sequence[str | os.PathLike]],
    metrics: Sequence[str] | None = None,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    seed_csvs: Mapping[str, Mapping[int, Sequence[str | os.PathLike]]] | None = None,
    first_seed: int = 0,
) -> pd.DataFrame:
    """:func:`delta_table` of the per-scene NVS CSVs of the arms ``raw``, ``base`` and ``tuned`` (and ``control``);
    ``seed_csvs``, ``first_seed``: further training seeds (:func:`nvs_views`)."""
    views = nvs_views(scenes, arm_csvs, seed_csvs, first_seed)
    return delta_table(views, metrics, bootstrap, source="per-scene NVS CSVs")


def read_delta_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a delta table written by :func:`write_csv`: empty verdicts and notes stay empty strings. A
    ``control`` column (a study with the control arm) and extra arms' columns are kept."""
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
        extra = extra_arms_of(header[header.index("tuned") + 1 : header.index("delta")]) if "delta" in header else ()
        numeric = (*CONTROL_ARMS, *extra, "delta", "ci_low", "ci_high", "p_value", "p_holm")
        df = pd.read_csv(path, keep_default_na=False, na_values={c: ["", "nan", "NaN"] for c in numeric})
    except (FileNotFoundError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: cannot read delta table ({err})") from err
    missing = [c for c in DELTA_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: delta table lacks columns {missing}")
    for col in ("scene", "metric", "comparison", "verdict", "note", "unit", "test"):
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
    extends, empty for none) and ``n_scenes`` first; a ``control`` column when any version has the control arm,
    and a column per extra arm any version has (empty for those without it)."""
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
    extra = dict.fromkeys(arm for table in deltas.values() for arm in extra_arms_of(table_arms(table)))
    columns = [c for c in delta_columns(study_arms(control, list(extra))) if c != "scene"]
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


MAX_DIGITS = 6  # an interval narrower than 1e-6 prints as a point


def interval_digits(low: float, high: float, digits: int) -> int:
    """Decimals that show an interval's width: at least ``digits``, and enough for two significant digits
    of ``high - low`` (1.5052 to 1.5135 prints as [+1.5052, +1.5135], not [+1.51, +1.51]); at most
    :data:`MAX_DIGITS`."""
    width = high - low
    if not (math.isfinite(width) and width > 0):
        return digits
    return int(min(max(digits, math.ceil(-math.log10(width)) + 1), max(MAX_DIGITS, digits)))


def interval_cell(delta: float, low: float, high: float, digits: int) -> str:
    """``+1.5094 [+1.5052, +1.5135]``: an estimate and its interval with the digits that show its width;
    ``+0.30 [n/a]`` where there is no interval, ``n/a`` where nothing was measured."""
    if math.isnan(delta):
        return "n/a"
    if math.isnan(low) or math.isnan(high):
        return f"{delta:+.{digits}f} [n/a]"
    d = interval_digits(low, high, digits)
    return f"{delta:+.{d}f} [{low:+.{d}f}, {high:+.{d}f}]"


def _delta_cell(row: pd.Series, digits: int) -> str:
    return interval_cell(row["delta"], row["ci_low"], row["ci_high"], digits)


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


def _seed_line(mean_rows: pd.DataFrame, digits: int) -> str:
    """The mean rows' spread across training seeds, one sentence."""
    parts = [
        f"{r['comparison'].replace('_vs_', ' − ')}: {int(r['seeds'])} seeds, SD {_format_cell(r['seed_sd'], digits)}"
        for _, r in mean_rows.iterrows()
    ]
    return "Across training seeds (SD of each seed's mean over scenes; the tests take scenes and seeds as units): " + (
        "; ".join(parts) + "."
    )


def delta_markdown(table: pd.DataFrame, bootstrap: BootstrapConfig, title: str = "") -> str:
    """The delta table for reading: a table per metric, a row per scene (then the mean), for every
    comparison ``b − a [interval]`` and its verdict (the control arm's two where the table has them); the
    notes below; a preface says how it was made."""
    arms = table_arms(table)
    names = [comparison_name(b, a) for b, a in arm_comparisons(arms)]
    level = f"{bootstrap.confidence * 100:g}%"
    lines = [f"## {title}", ""] if title else []
    lines += [
        f"Mean paired difference b − a per scene with its {level} interval, and a verdict (Holm across the "
        "comparisons of a row): improved or worse where the test's p < "
        f"{bootstrap.alpha:g} on the metric's good or bad side; equivalent where the interval lies inside "
        f"±{bootstrap.min_effect:g} ({bootstrap.primary} only); too few scenes where the scenes cannot reach that "
        "level; too few seeds where an arm trained in the study rests on one training seed; else inconclusive. "
        "A scene row is evidence within that scene only; the mean row speaks for "
        f"scenes. Intervals: {bootstrap.describe()}.",
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
            {
                "scene": first["scene"].tolist(),
                "interval": [unit or "n/a" for unit in first["unit"]],
                "frames": first["n_frames"].tolist(),
                "views": first["n_views"].tolist(),
            }
        )
        for arm in arms:
            out[arm] = first[arm].to_numpy(dtype=np.float64)
        for name in names:
            chosen = rows[rows["comparison"] == name].set_index("scene").reindex(out["scene"])
            b, a = name.split("_vs_")
            out[f"{b} − {a} [{level}]"] = [_delta_cell(r, digits) for _, r in chosen.iterrows()]
            out[f"{b} vs {a}"] = chosen["verdict"].tolist()
        lines += [f"**{metric_title(metric)}**", "", to_markdown(out, digits)]
        if "seeds" in rows.columns:
            lines += [_seed_line(rows[rows["scene"] == MEAN], digits), ""]
        notes = _grouped_notes(rows)
        if notes:
            lines += [*notes, ""]
    return "\n".join(lines).rstrip("\n") + "\n"
