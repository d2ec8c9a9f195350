"""Decisions across versions: each variant of an ablation grid against the grid's parent.

``compare.csv`` (:func:`compare_table`) is long and tidy, one row per variant x split x metric x scene
(scenes in name order, then ``mean``). A row compares the variant's **tuned** arm with the parent's tuned
arm on the same views, paired per view (scene, frame, camera), with the delta tables' inference
(:mod:`hi4dfix.stats`: within-scene t on batches of consecutive frames for a scene row, the exact sign-flip
test and t interval on the scene means for the mean row), on one of two splits:

``internal``
    the DiFix internal evaluation (``difix_eval`` test triplets, ``results/{version}/difix/eval.csv``):
    the split settings are chosen on (``stats.primary_split``);
``reserved``
    the reserved scenes' NVS (``nvs_eval``): the held-out measurement, reported beside the decision and
    never used to make it (choosing on it would fit the study's test scenes).

Columns:

``grid``, ``variant``, ``parent``, ``settings``, ``split``
    the grid, the variant's version, the parent version, the variant's axis values, and the split
``scene``, ``metric``
    as in the delta tables (the declared endpoint's metrics by default: ``stats.primary``, ``stats.secondary``)
``parent_mean``, ``variant_mean``
    each tuned arm's mean over the scene's views (mean row: over the scenes' means)
``delta``, ``ci_low``, ``ci_high``, ``n_frames``, ``n_views``, ``verdict``
    variant - parent, its interval and its unadjusted verdict (a family of one), as in the delta tables
``p_value``
    the test's two-sided p-value of no difference (never 0)
``p_holm``, ``verdict_holm``
    mean rows only: the p-value adjusted by Holm's method across the grid's comparisons of that metric
    (the family is every compared variant's mean row of one split and metric), and the verdict after it
    (:func:`holm_verdict`: ``too few scenes`` where the split's scenes cannot reach the level over that family)
``note``
    what is weak, as in the delta tables
``provenance``
    the provenance files of the numbers: the variant's and the parent's ``results/{version}/provenance_inputs.json``
``unit``, ``test``, ``min_p``
    what the interval treats as independent (``across 4 scenes``, ``within hi4d_pair02_dance only``), the
    test, and the smallest p-value it can give on those units (what Holm's family must stay under)

**Decision** (:func:`decision`): adopt a variant only when its primary endpoint (``stats.primary`` on
``stats.primary_split``) is ``improved`` after Holm, by at least ``stats.min_effect``, and no metric of that
split is ``worse`` unadjusted (mean or scene rows); never from the reserved scenes; otherwise say what is
missing (e.g. how many scenes would allow a decision). A variant that changes the training seed alone
(:func:`seed_only`) is a replicate, never adopted; a grid of such variants ends in no decision.

**Training seeds.** Both arms of every comparison train, so a version resting on one training seed gets
``too few seeds`` (:mod:`hi4dfix.stats`: a trained model's luck is common to every scene, no test over scenes
sees it) and the grid no decision. With ``tuning.seeds`` every version's seeds are read (the further seeds'
tuned CSVs and ``eval.csv``), seed paired with seed by their place in the list (``replicate``), and the tests take
scenes and seeds as units; a variant with another number of seeds than the parent is refused.

A variant is read and compared one at a time against the parent's views (read once): memory holds one
variant's views besides the rows. A variant whose internal views are not the parent's (another
``difix_eval`` or triplet sampling) has no internal comparison: its internal rows say so.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from hi4dfix.metrics import LPIPS_FLAG_COLUMN
from hi4dfix.stats import (
    DECIDED,
    EQUIVALENT,
    IMPROVED,
    INCONCLUSIVE,
    NOT_MEASURED,
    SIGN_FLIP,
    SIGN_FLIP_SEEDS,
    TOO_FEW_SCENES,
    TOO_FEW_SEEDS,
    UNTESTED,
    WORSE,
    BootstrapConfig,
    Estimate,
    holm,
    mean_estimate,
    scene_estimate,
    scenes_needed,
    verdict,
)
from hi4dfix.tables import (
    FEW_UNITS,
    LPIPS_NOT_CACHED,
    MEAN,
    TOO_FEW_SEEDS_NOTE,
    arm_views,
    endpoint_metrics,
    higher_is_better,
    interval_cell,
    lpips_not_cached,
    metric_digits,
    metric_title,
    read_eval_views,
    to_markdown,
    too_few_scenes_note,
)

COMPARE_COLUMNS = (
    "grid", "variant", "parent", "settings", "split", "scene", "metric", "parent_mean", "variant_mean", "delta",
    "ci_low", "ci_high", "n_frames", "n_views", "verdict", "p_value", "p_holm", "verdict_holm", "note", "provenance",
    "unit", "test", "min_p",
)  # fmt: skip
REPLICATE = "replicate"  # a training seed's place in its version's tuning.seeds (0: the first), paired across versions
VIEW_KEY = ["scene", "frame", "cam", REPLICATE]
TUNED = "tuned"
INTERNAL, RESERVED = "internal", "reserved"
SPLIT_TITLES = {
    INTERNAL: "internal evaluation (difix_eval test triplets): the split the decision is made on",
    RESERVED: "reserved scenes (nvs_eval): the held-out measurement, never used to decide",
}


@dataclass(frozen=True)
class VariantTables:
    """One compared variant: its version, axis values, tuned per-scene NVS CSVs (``scenes`` order), its
    provenance record and its internal evaluation (``eval.csv``; None: no internal comparison); with several
    training seeds (``tuning.seeds``) the further seeds' tuned CSVs and ``eval.csv`` files, in seed order."""

    name: str
    settings: str
    tuned_csvs: Sequence[str | os.PathLike]
    provenance: str = ""
    eval_csv: str | os.PathLike | None = None
    seed_csvs: Sequence[Sequence[str | os.PathLike]] = ()
    seed_eval_csvs: Sequence[str | os.PathLike] = ()

    @property
    def n_seeds(self) -> int:
        return 1 + len(self.seed_csvs)


def tuned_views(scenes: Sequence[str], csvs: Sequence[str | os.PathLike], seed_csvs=()) -> pd.DataFrame:
    """A version's tuned per-view NVS rows of every training seed, with its ``replicate`` (0 the first seed)."""
    runs = [csvs, *seed_csvs]
    return pd.concat(
        [arm_views(TUNED, scenes, paths).assign(**{REPLICATE: r}) for r, paths in enumerate(runs)], ignore_index=True
    )


def _lonely_views(parent: pd.DataFrame, variant: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables merged per view, and the views only one of them has."""
    merged = parent.merge(variant, on=VIEW_KEY, how="outer", suffixes=("_parent", "_variant"), indicator=True)
    return merged.drop(columns="_merge"), merged[merged["_merge"] != "both"]


def _paired(parent: pd.DataFrame, variant: pd.DataFrame, name: str, parent_name: str) -> pd.DataFrame:
    merged, lonely = _lonely_views(parent, variant)
    if len(lonely):
        first = lonely.iloc[0]
        raise ValueError(
            f"variant {name} and parent {parent_name} cover different views: {len(lonely)} view(s) in one only, "
            f"e.g. {first['scene']} frame {first['frame']} cam {first['cam']}; "
            "a comparison needs the same reserved views"
        )
    return merged


def internal_views(path: str | os.PathLike, seed_paths: Sequence[str | os.PathLike] = ()) -> pd.DataFrame:
    """The tuned arm's per-view rows (``scene, frame, cam``, metrics, ``replicate``) of a version's ``eval.csv``
    and of its further training seeds' (``seed_paths``, in seed order)."""
    parts = []
    for replicate, where in enumerate([path, *seed_paths]):
        views = read_eval_views(where)
        tuned = views[views["arm"] == TUNED].drop(columns="arm").reset_index(drop=True)
        if tuned.empty:
            raise ValueError(f"{where}: no rows of the {TUNED} arm")
        parts.append(tuned.assign(**{REPLICATE: replicate}))
    return pd.concat(parts, ignore_index=True)


def _check_seeds(name: str, n_seeds: int, parent_name: str, parent_seeds: int) -> None:
    if n_seeds != parent_seeds:
        raise ValueError(
            f"variant {name} has {n_seeds} training seed(s) and parent {parent_name} {parent_seeds}: a comparison "
            "pairs seed with seed (give both the same number of tuning.seeds)"
        )


def _not_measured_note(metric: str, views: pd.DataFrame) -> str:
    """Why ``metric`` has no comparison; LPIPS names its missing weights when the rows say so."""
    flags = [f"{LPIPS_FLAG_COLUMN}_{side}" for side in ("parent", "variant")]  # the merge's suffixes
    uncached = lpips_not_cached(views, metric, flags)
    return f"{metric} not measured in both versions" + (LPIPS_NOT_CACHED if uncached else "")


def _note(est: Estimate, scene: str, n_scenes: int, metric: str, views: pd.DataFrame) -> str:
    if not est.measured:
        return _not_measured_note(metric, views)
    notes = [TOO_FEW_SEEDS_NOTE] if est.n_seeds == 1 else []
    if scene == MEAN and est.n_scenes < n_scenes:
        notes.append(f"mean over {est.n_scenes} of {n_scenes} scenes")
    if scene == MEAN and est.n_scenes < 2:
        notes.append("one scene: within-scene evidence only, no claim about unseen scenes")
    if est.n_frames < 2 and scene != MEAN:
        notes.append("one frame: no within-scene variation to test against")
    elif scene != MEAN and est.n_frames < FEW_UNITS:
        notes.append(f"{est.n_frames} frames: too few to measure their autocorrelation, taken as independent")
    return "; ".join(notes)


def split_rows(
    split: str,
    views: pd.DataFrame | None,
    scenes: Sequence[str],
    metrics: Sequence[str] | None = None,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    missing_note: str = "",
) -> list[dict[str, Any]]:
    """The comparison rows of one split (scene rows, then the mean row, per metric) from ``views``, the
    parent's and the variant's rows merged per view (``{metric}_parent``, ``{metric}_variant``); None:
    no comparison, each row says why (``missing_note``). ``verdict``: unadjusted (a family of one)."""
    metrics = endpoint_metrics(bootstrap) if metrics is None else metrics
    rows = []
    for metric in metrics:
        good_up = higher_is_better(metric)
        min_effect = bootstrap.min_effect if metric == bootstrap.primary else 0.0
        if views is not None:
            a, b = views[f"{metric}_parent"].to_numpy(np.float64), views[f"{metric}_variant"].to_numpy(np.float64)
            difference = b - a
            # both arms train: each seed pairs with the same seed of the other version (one seed: too few)
            replicates = views[REPLICATE].to_numpy() if views[REPLICATE].nunique() > 1 else None
        for scene in [*sorted(set(scenes)), MEAN]:
            if views is None:
                est, parent_mean, variant_mean = NOT_MEASURED, math.nan, math.nan
            elif scene == MEAN:
                est = mean_estimate(
                    views["scene"].to_numpy(), views["frame"].to_numpy(), difference, bootstrap, replicates, True
                )
                by_scene = views.groupby("scene")
                parent_mean = float(by_scene[f"{metric}_parent"].mean().mean())
                variant_mean = float(by_scene[f"{metric}_variant"].mean().mean())
            else:
                mine = (views["scene"] == scene).to_numpy()
                est = scene_estimate(
                    views["frame"].to_numpy()[mine], difference[mine], bootstrap, scene,
                    None if replicates is None else replicates[mine], True,
                )  # fmt: skip
                parent_mean, variant_mean = (float(pd.Series(x[mine]).mean()) for x in (a, b))
            rows.append(
                {
                    "split": split,
                    "scene": scene,
                    "metric": metric,
                    "parent_mean": parent_mean,
                    "variant_mean": variant_mean,
                    "delta": est.delta,
                    "ci_low": est.ci_low,
                    "ci_high": est.ci_high,
                    "n_frames": est.n_frames,
                    "n_views": est.n_views,
                    "verdict": verdict(est, good_up, bootstrap.alpha, min_effect=min_effect),
                    "p_value": est.p_value,
                    "p_holm": math.nan,
                    "verdict_holm": "",
                    "note": missing_note if views is None else _note(est, scene, len(set(scenes)), metric, views),
                    "unit": est.unit,
                    "test": est.test,
                    "min_p": est.min_p if est.measured else math.nan,
                }
            )
    return rows


def variant_rows(
    grid: str,
    parent_name: str,
    variant: VariantTables,
    parent_views: pd.DataFrame,
    scenes: Sequence[str],
    metrics: Sequence[str] | None = None,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    parent_provenance: str = "",
    parent_internal: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """The rows of one variant: its internal split (when the parent's ``parent_internal`` views and the
    variant's ``eval_csv`` are given), then its reserved split; ``p_holm`` still empty."""
    _check_seeds(variant.name, variant.n_seeds, parent_name, int(parent_views[REPLICATE].nunique()))
    common = {
        "grid": grid,
        "variant": variant.name,
        "parent": parent_name,
        "settings": variant.settings,
        "provenance": "; ".join(p for p in (variant.provenance, parent_provenance) if p),
    }
    rows = []
    if parent_internal is not None and variant.eval_csv is not None:
        merged, lonely = _lonely_views(parent_internal, internal_views(variant.eval_csv, variant.seed_eval_csvs))
        note = ""
        if len(lonely):  # another difix_eval or triplet sampling: not the same test, so no comparison
            first = lonely.iloc[0]
            note = (
                f"internal evaluation on other views than {parent_name}'s ({len(lonely)} view(s) in one only, e.g. "
                f"{first['scene']} frame {first['frame']} cam {first['cam']}): not compared"
            )
        internal_scenes = sorted(set(parent_internal["scene"]))
        rows += split_rows(INTERNAL, None if note else merged, internal_scenes, metrics, bootstrap, note)
    views = _paired(parent_views, tuned_views(scenes, variant.tuned_csvs, variant.seed_csvs), variant.name, parent_name)
    rows += split_rows(RESERVED, views, scenes, metrics, bootstrap)
    return [{**common, **row} for row in rows]


def holm_verdict(unadjusted: str, p_holm: float, test: str, min_p: float, family: int, alpha: float) -> str:
    """A row's verdict after Holm over ``family`` comparisons: ``too few scenes`` where the sign-flip test
    cannot reach alpha over that family (``family * min_p >= alpha``); a change only where ``p_holm < alpha``;
    ``equivalent`` and the verdicts that need no test stay."""
    if unadjusted in UNTESTED:
        return unadjusted
    if test in (SIGN_FLIP, SIGN_FLIP_SEEDS) and family * min_p >= alpha:
        return TOO_FEW_SCENES
    if unadjusted in DECIDED:
        return unadjusted if p_holm < alpha else INCONCLUSIVE
    return unadjusted  # equivalent or inconclusive


def holm_verdicts(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """``p_holm`` and ``verdict_holm`` of the mean rows, one Holm family per split and metric (module doc)."""
    table = table.copy()
    alpha = 1.0 - confidence
    for split, metric in dict.fromkeys(zip(table["split"], table["metric"])):
        family = (table["scene"] == MEAN) & (table["split"] == split) & (table["metric"] == metric)
        adjusted = holm(table.loc[family, "p_value"].to_numpy())
        size = max(int(np.isfinite(adjusted).sum()), 1)
        table.loc[family, "p_holm"] = adjusted
        rows = table.loc[family, ["verdict", "test", "min_p"]]
        table.loc[family, "verdict_holm"] = [
            holm_verdict(v, p, t, m, size, alpha) for (v, t, m), p in zip(rows.itertuples(index=False), adjusted)
        ]
    return table


def compare_table(
    grid: str,
    parent_name: str,
    parent_csvs: Sequence[str | os.PathLike],
    variants: Iterable[VariantTables],
    scenes: Sequence[str],
    metrics: Sequence[str] | None = None,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    parent_provenance: str = "",
    parent_eval_csv: str | os.PathLike | None = None,
    parent_seed_csvs: Sequence[Sequence[str | os.PathLike]] = (),
    parent_seed_eval_csvs: Sequence[str | os.PathLike] = (),
) -> pd.DataFrame:
    """``compare.csv`` (module doc): every variant against the parent's tuned arm, Holm-adjusted; the
    internal split where ``parent_eval_csv`` (the parent's ``eval.csv``) is given. ``parent_seed_csvs``,
    ``parent_seed_eval_csvs``: the parent's further training seeds (as :class:`VariantTables`')."""
    parent_views = tuned_views(scenes, parent_csvs, parent_seed_csvs)
    parent_internal = internal_views(parent_eval_csv, parent_seed_eval_csvs) if parent_eval_csv is not None else None
    rows: list[dict[str, Any]] = []
    for variant in variants:  # one variant's views in memory at a time
        rows += variant_rows(
            grid, parent_name, variant, parent_views, scenes, metrics, bootstrap, parent_provenance, parent_internal
        )
    if not rows:
        raise ValueError(f"ablations.{grid}: no variant differs from the parent {parent_name}; nothing to compare")
    table = pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))
    table["n_frames"] = table["n_frames"].astype(np.int64)
    table["n_views"] = table["n_views"].astype(np.int64)
    return holm_verdicts(table, bootstrap.confidence)


def read_compare_csv(path: str | os.PathLike) -> pd.DataFrame:
    table = pd.read_csv(
        path,
        keep_default_na=False,
        na_values={
            c: ["", "nan", "NaN"]
            for c in ("delta", "ci_low", "ci_high", "p_value", "p_holm", "parent_mean", "variant_mean", "min_p")
        },
    )
    missing = [c for c in COMPARE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: compare table lacks columns {missing}")
    return table


# ---- reading: markdown, ranking, decision ------------------------------------------------------------


def ranking(table: pd.DataFrame, metric: str, split: str) -> pd.DataFrame:
    """The mean rows of ``metric`` on ``split``, best variant first (largest gain in the metric's good direction)."""
    rows = table[(table["scene"] == MEAN) & (table["metric"] == metric) & (table["split"] == split)].copy()
    sign = 1.0 if higher_is_better(metric) else -1.0
    rows["_gain"] = sign * rows["delta"].astype(np.float64)
    return rows.sort_values("_gain", ascending=False, na_position="last", kind="stable").drop(columns="_gain")


def ranking_split(table: pd.DataFrame, bootstrap: BootstrapConfig) -> str:
    """The split the variants are listed in order of: the declared ``stats.primary_split`` where the table
    has it, else the split it has (listing only: the reserved scenes never decide)."""
    return bootstrap.primary_split if (table["split"] == bootstrap.primary_split).any() else str(table["split"].iloc[0])


def _cell(row: Mapping[str, Any], digits: int) -> str:
    return interval_cell(row["delta"], row["ci_low"], row["ci_high"], digits)


def _p_cell(p: float) -> str:
    """A p-value to 3 significant digits (tests here never give 0)."""
    return "n/a" if math.isnan(p) else f"{p:.3g}"


def metric_measured(table: pd.DataFrame, metric: str, split: str | None = None) -> bool:
    """Whether any variant has a ``metric`` comparison (on ``split``; None: on either split)."""
    rows = table[(table["metric"] == metric) & ((table["split"] == split) if split else True)]
    return bool(rows["delta"].notna().any())


def _split_scenes(table: pd.DataFrame, split: str) -> list[str]:
    return sorted(set(table.loc[table["split"] == split, "scene"]) - {MEAN})


def harmed_on(table: pd.DataFrame, variant: str, split: str, metrics: Sequence[str]) -> list[str]:
    """The metrics on which ``variant`` is worse on ``split``, unadjusted (a harm check must not be weakened by
    a multiplicity adjustment): its mean row, or any scene row (within-scene evidence of harm counts too)."""
    rows = table[(table["variant"] == variant) & (table["split"] == split) & table["metric"].isin(metrics)]
    return list(dict.fromkeys(rows.loc[rows["verdict"] == WORSE, "metric"]))


SEED_SETTINGS = ("tuning.seed", "tuning.seeds")  # what trains a replicate of a setting, not another setting


def seed_only(settings: str) -> bool:
    """Whether a variant's settings (``Variant.describe``: ``path = label, ...``) change the training seed alone."""
    paths = [part.split(" = ", 1)[0].strip() for part in settings.split(", ") if " = " in part]
    return bool(paths) and all(path in SEED_SETTINGS for path in paths)


def decision(table: pd.DataFrame, bootstrap: BootstrapConfig) -> tuple[str | None, str]:
    """``(variant to adopt or None, why)``: adopt only a variant whose primary endpoint (``stats.primary`` on
    ``stats.primary_split``) is improved after Holm across the grid's variants by at least ``stats.min_effect``
    and that is worse on no metric there (unadjusted); never from the reserved scenes."""
    primary, split, parent = bootstrap.primary, bootstrap.primary_split, str(table["parent"].iloc[0])
    title, alpha = metric_title(primary), bootstrap.alpha
    if split == RESERVED:
        return None, (
            "stats.primary_split is the reserved scenes: they are the held-out measurement and never decide; "
            f"keep {parent}'s settings"
        )
    if not (table["split"] == split).any():
        return None, (
            f"no {split} evaluation was given (the declared split of the decision); the reserved scenes never "
            f"decide: keep {parent}'s settings"
        )
    if not metric_measured(table, primary, split):
        return None, f"the primary endpoint {title} was not measured on the {split} split: keep {parent}'s settings"
    replicates = sorted({str(v) for v, s in zip(table["variant"], table["settings"]) if seed_only(str(s))})
    if replicates and set(replicates) == {str(v) for v in table["variant"]}:
        return None, (
            f"no decision: every variant differs from {parent} in the training seed alone "
            f"({', '.join(replicates)}): replicates of one setting, whose differences are training noise, not a "
            f"setting to adopt (tuning.seeds trains them as one version's replicates). Keep {parent}'s settings"
        )
    means = ranking(table, primary, split)
    means = means[~means["variant"].astype(str).isin(replicates)]  # a seed is never a setting to adopt
    metrics = list(dict.fromkeys(table["metric"]))
    family = int(means["p_value"].notna().sum())
    n_scenes = len(_split_scenes(table, split))
    missing = []
    if (means["verdict_holm"] == TOO_FEW_SCENES).any():
        needed = scenes_needed(max(family, 1), alpha, bootstrap.n_resamples)
        over = f" after Holm over {family} variants" if family > 1 else ""
        missing.append(
            f"{n_scenes} {split} scene{'s' if n_scenes != 1 else ''}: no decision about unseen scenes; "
            f"{needed} scenes from other pairs would allow one at alpha {alpha:g}{over}"
        )
    if (table.loc[table["split"] == split, "verdict"] == TOO_FEW_SEEDS).any():
        missing.append(
            "1 training seed per version: a trained model's luck, common to every scene and the size of the "
            "effects, is not measured; tuning.seeds with 2 or more seeds (hi4dfix power says how many) would "
            "allow one"
        )
    if missing:
        return None, "; ".join(missing) + f". Keep {parent}'s settings"
    sign = 1.0 if higher_is_better(primary) else -1.0
    small, harmful = [], []
    for _, row in means.iterrows():
        if row["verdict_holm"] != IMPROVED:
            continue
        if sign * row["delta"] < bootstrap.min_effect:
            small.append(str(row["variant"]))
            continue
        harmed = harmed_on(table, str(row["variant"]), split, metrics)
        if harmed:
            harmful.append(f"{row['variant']} (worse on {', '.join(harmed)})")
            continue
        return str(row["variant"]), (
            f"{row['variant']} improves {title} over {parent} on the {split} evaluation after Holm across "
            f"{family} variants, by at least stats.min_effect = {bootstrap.min_effect:g}, and is worse on no "
            "metric there (unadjusted): adopt its settings for the next version"
        )
    why = [f"no variant improves {title} over {parent} on the {split} evaluation after Holm by at least "
           f"{bootstrap.min_effect:g} without harm"]  # fmt: skip
    if small:
        why.append(f"improved by less than stats.min_effect: {', '.join(small)}")
    if harmful:
        why.append(f"improved but worse elsewhere: {', '.join(harmful)}")
    equivalent = list(means.loc[means["verdict_holm"] == EQUIVALENT, "variant"])
    if equivalent:
        why.append(f"equivalent within ±{bootstrap.min_effect:g}: {', '.join(equivalent)}")
    return None, "; ".join(why) + f". Keep {parent}'s settings"


def decision_lines(table: pd.DataFrame, bootstrap: BootstrapConfig, references: Sequence[str] = ()) -> list[str]:
    """The decision section: variants in order of the primary endpoint on the declared split (:func:`ranking_split`),
    each with the primary's Holm verdict and every secondary metric's unadjusted verdict there and, after it, on
    the reserved scenes; and the decision (:func:`decision`)."""
    primary, parent = bootstrap.primary, str(table["parent"].iloc[0])
    metrics = list(dict.fromkeys(table["metric"]))
    split = ranking_split(table, bootstrap)
    means = table[table["scene"] == MEAN].set_index(["split", "variant", "metric"])
    ranked = ranking(table, primary, split) if primary in metrics else ranking(table, metrics[0], split)
    measured = {on: [m for m in metrics if metric_measured(table, m, on)] for on in (INTERNAL, RESERVED)}

    def verdicts(variant: str, on: str) -> str:
        cells = []
        for metric in measured[on]:  # the split's tables say why a metric is missing
            row = means.loc[(on, variant, metric)]
            shown = row["verdict_holm"] if metric == primary else row["verdict"]
            tag = " (primary, Holm)" if metric == primary else ""
            cells.append(f"{metric_title(metric)}{tag} {_cell(row, metric_digits(metric))} {shown or 'n/a'}")
        return "; ".join(cells) or "no metric measured"

    scenes = ", ".join(_split_scenes(table, split))
    lines = [
        f"Variants in order of the {metric_title(primary)} difference to {parent} (the declared primary endpoint, "
        f"stats.primary) on the {split} split ({scenes}); the primary's verdict after Holm across the grid's "
        "variants, the other metrics' unadjusted (the harm check)."
        + (" After each, its reserved scenes' verdicts: the held-out measurement, which neither ranks nor chooses."
           if split == INTERNAL else ""),
        "",
    ]  # fmt: skip
    for place, variant in enumerate(ranked["variant"], start=1):
        settings = means.loc[(split, variant, ranked["metric"].iloc[0]), "settings"]
        line = f"{place}. **{variant}** ({settings}): {verdicts(variant, split)}"
        if split == INTERNAL and (table["split"] == RESERVED).any():
            line += f". Reserved (held out): {verdicts(variant, RESERVED)}"
        lines.append(line)
    lines.append("")
    for reference in references:
        lines += [f"{reference} has the parent's own settings, so it is {parent} itself (the reference).", ""]
    chosen, why = decision(table, bootstrap)
    if chosen is not None and (RESERVED, chosen, primary) in means.index:
        held_out = means.loc[(RESERVED, chosen, primary)]
        why += (
            f". On the held-out reserved scenes it measures {_cell(held_out, metric_digits(primary))} "
            f"({held_out['verdict_holm'] or 'n/a'} after Holm)"
        )
    lines += [f"**Decision:** {why}.", ""]
    if primary in metrics and (table["split"] == split).any():
        losers = [v for v in ranked["variant"] if means.loc[(split, v, primary), "verdict_holm"] == WORSE]
        if losers:
            lines.append(f"Worse than {parent} on the {split} split after Holm on {metric_title(primary)}: "
                         f"{', '.join(losers)}.")  # fmt: skip
    return lines


def compare_markdown(table: pd.DataFrame, bootstrap: BootstrapConfig, references: Sequence[str] = ()) -> str:
    grid, parent = str(table["grid"].iloc[0]), str(table["parent"].iloc[0])
    level = f"{bootstrap.confidence * 100:g}%"
    n_variants = table["variant"].nunique()
    lines = [
        f"## Ablation grid {grid}: variants against {parent} (tuned DiFix against tuned DiFix)",
        "",
        f"Each variant's tuned arm against {parent}'s tuned arm on the same views, paired per view (scene, "
        f"frame, camera); the mean over scenes with its {level} interval. Intervals and tests: "
        f"{bootstrap.describe()}. p: the test's two-sided p-value of no difference (never 0). "
        f"**Holm**: p-values adjusted by Holm's step-down method across the grid's {n_variants} comparisons of each "
        f"metric on each split; a verdict holds after adjustment where the adjusted p < {bootstrap.alpha:g}, and "
        "is `too few scenes` where the split's scenes cannot reach that level, `too few seeds` where the versions "
        "rest on one training seed each. The decision is made on the "
        f"declared endpoint ({bootstrap.primary} on the {bootstrap.primary_split} split, smallest effect worth "
        f"adopting {bootstrap.min_effect:g}); the reserved scenes are the held-out measurement. Per-scene rows and "
        "provenance: compare.csv.",
        "",
    ]
    for split in (INTERNAL, RESERVED):
        if not (table["split"] == split).any():
            continue
        lines += [f"### {SPLIT_TITLES[split][0].upper()}{SPLIT_TITLES[split][1:]}", ""]
        lines += [f"Scenes: {', '.join(_split_scenes(table, split))}.", ""]
        for metric in dict.fromkeys(table["metric"]):
            rows = ranking(table, metric, split)
            notes = sorted({n for n in rows["note"] if n})
            if not metric_measured(table, metric, split):  # a table of n/a would only repeat this line
                lines += [f"**{metric_title(metric)}**: no comparison: {'; '.join(notes) or 'not measured'}.", ""]
                continue
            digits = metric_digits(metric)
            out = pd.DataFrame(
                {
                    "variant": rows["variant"].tolist(),
                    "settings": rows["settings"].tolist(),
                    f"{parent} tuned": rows["parent_mean"].to_numpy(np.float64),
                    "variant tuned": rows["variant_mean"].to_numpy(np.float64),
                    f"variant − {parent} [{level}]": [_cell(r, digits) for _, r in rows.iterrows()],
                    "interval": [u or "n/a" for u in rows["unit"]],
                    "verdict": rows["verdict"].tolist(),
                    "p": [_p_cell(p) for p in rows["p_value"]],
                    "p (Holm)": [_p_cell(p) for p in rows["p_holm"]],
                    "verdict (Holm)": rows["verdict_holm"].tolist(),
                }
            )
            primary = " (primary endpoint)" if metric == bootstrap.primary else ""
            lines += [f"**{metric_title(metric)}**{primary}", "", to_markdown(out, digits)]
            too_few = rows[rows["verdict_holm"] == TOO_FEW_SCENES]
            if len(too_few):
                n = len(_split_scenes(table, split))
                family = max(int(rows["p_value"].notna().sum()), 1)
                notes.append(too_few_scenes_note(n, family, bootstrap.alpha, bootstrap.n_resamples))
            if notes:
                lines += [f"- {note}" for note in dict.fromkeys(notes)] + [""]
    lines += ["### Decision", "", *decision_lines(table, bootstrap, references), ""]
    provenance = sorted({p for cell in table["provenance"] for p in str(cell).split("; ") if p})
    if provenance:
        lines += ["Provenance: " + ", ".join(f"`{p}`" for p in provenance), ""]
    return "\n".join(lines).rstrip("\n") + "\n"
