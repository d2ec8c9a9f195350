"""Decisions across versions: each variant of an ablation grid against the grid's parent.

``compare.csv`` (:func:`compare_table`) is long and tidy, one row per variant x split x metric x scene
(scenes in name order, then ``mean``). A row compares the variant's **tuned** arm with the parent's tuned
arm on the same views, paired per view (scene, frame, camera), with the paired cluster bootstrap of the
delta tables (:mod:`hi4dfix.stats`, the same seeds: common random numbers across variants), on one of two
splits:

``internal``
    the DiFix internal evaluation (``difix_eval`` test triplets, ``results/{version}/difix/eval.csv``):
    the split settings are chosen on, so the decision ranks the variants here;
``reserved``
    the reserved scenes' NVS (``nvs_eval``): the held-out measurement, reported beside the decision and
    never used to make it (choosing on it would fit the study's test scenes).

Columns:

``grid``, ``variant``, ``parent``, ``settings``, ``split``
    the grid, the variant's version, the parent version, the variant's axis values, and the split
``scene``, ``metric``
    as in the delta tables
``parent_mean``, ``variant_mean``
    each tuned arm's mean over the scene's views (mean row: over the scenes' means)
``delta``, ``ci_low``, ``ci_high``, ``n_frames``, ``n_views``, ``verdict``
    variant - parent, its interval and verdict, as in the delta tables
``p_value``
    the two-sided bootstrap p-value of no difference (:func:`hi4dfix.stats.bootstrap_p_value`)
``p_holm``, ``verdict_holm``
    mean rows only: the p-value adjusted by Holm's method across the grid's comparisons of that metric
    (the family is every compared variant's mean row of one split and metric), and the verdict where it survives
    (the unadjusted verdict where ``p_holm`` < 1 - confidence, else ``inconclusive``)
``note``
    what is weak, as in the delta tables
``provenance``
    the provenance files of the numbers: the variant's and the parent's ``results/{version}/provenance.json``

A variant is read and compared one at a time against the parent's views (read once): memory holds one
variant's views besides the rows. A variant whose internal views are not the parent's (another
``difix_eval`` or triplet sampling) has no internal comparison: its internal rows say so.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from hi4dfix.metrics import LPIPS_FLAG_COLUMN
from hi4dfix.stats import (
    FEW_UNITS,
    IMPROVED,
    INCONCLUSIVE,
    NO_VERDICT,
    NOT_MEASURED,
    WORSE,
    BootstrapConfig,
    Estimate,
    bootstrap_p_value,
    holm,
    mean_distribution,
    mean_estimate,
    scene_distribution,
    scene_estimate,
    verdict,
)
from hi4dfix.tables import (
    DEFAULT_DELTA_METRICS,
    LPIPS_NOT_CACHED,
    MEAN,
    arm_views,
    higher_is_better,
    lpips_not_cached,
    metric_digits,
    metric_title,
    read_eval_views,
    to_markdown,
)

COMPARE_COLUMNS = (
    "grid", "variant", "parent", "settings", "split", "scene", "metric", "parent_mean", "variant_mean", "delta",
    "ci_low", "ci_high", "n_frames", "n_views", "verdict", "p_value", "p_holm", "verdict_holm", "note", "provenance",
)  # fmt: skip
VIEW_KEY = ["scene", "frame", "cam"]
TUNED = "tuned"
INTERNAL, RESERVED = "internal", "reserved"
SPLIT_TITLES = {
    INTERNAL: "internal evaluation (difix_eval test triplets): the split the decision is made on",
    RESERVED: "reserved scenes (nvs_eval): the held-out measurement, never used to decide",
}
VERDICT_COLORS = {IMPROVED: "#2e7d32", WORSE: "#c62828", INCONCLUSIVE: "#757575", NO_VERDICT: "#555555"}


@dataclass(frozen=True)
class VariantTables:
    """One compared variant: its version, axis values, tuned per-scene NVS CSVs (``scenes`` order), its
    provenance record and its internal evaluation (``eval.csv``; None: no internal comparison)."""

    name: str
    settings: str
    tuned_csvs: Sequence[str | os.PathLike]
    provenance: str = ""
    eval_csv: str | os.PathLike | None = None


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


def internal_views(path: str | os.PathLike) -> pd.DataFrame:
    """The tuned arm's per-view rows (``scene, frame, cam``, metrics) of a version's ``eval.csv``."""
    views = read_eval_views(path)
    tuned = views[views["arm"] == TUNED].drop(columns="arm").reset_index(drop=True)
    if tuned.empty:
        raise ValueError(f"{path}: no rows of the {TUNED} arm")
    return tuned


def _not_measured_note(metric: str, views: pd.DataFrame) -> str:
    """Why ``metric`` has no comparison; LPIPS names its missing weights when the rows say so."""
    flags = [f"{LPIPS_FLAG_COLUMN}_{side}" for side in ("parent", "variant")]  # the merge's suffixes
    uncached = lpips_not_cached(views, metric, flags)
    return f"{metric} not measured in both versions" + (LPIPS_NOT_CACHED if uncached else "")


def _note(est: Estimate, scene: str, n_scenes: int, metric: str, views: pd.DataFrame) -> str:
    if not est.measured:
        return _not_measured_note(metric, views)
    units, unit = (est.n_scenes, "scenes") if scene == MEAN else (est.n_frames, "frames")
    if scene == MEAN and est.n_scenes < n_scenes:
        return f"mean over {est.n_scenes} of {n_scenes} scenes"
    if units < 2 and scene == MEAN:  # frames are still resampled within the one scene
        few = f"; {est.n_frames} frames: too few for it to cover as much as it says" if est.n_frames < FEW_UNITS else ""
        return f"one scene: the interval resamples its frames only, so it cannot see variation between scenes{few}"
    if units < 2:
        return "one frame: the bootstrap cannot see variation"
    if units < FEW_UNITS:
        return f"{units} {unit}: too few for the interval to cover as much as it says"
    return ""


def split_rows(
    split: str,
    views: pd.DataFrame | None,
    scenes: Sequence[str],
    metrics: Sequence[str] = DEFAULT_DELTA_METRICS,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    missing_note: str = "",
) -> list[dict[str, Any]]:
    """The comparison rows of one split (scene rows, then the mean row, per metric) from ``views``, the
    parent's and the variant's rows merged per view (``{metric}_parent``, ``{metric}_variant``); None:
    no comparison, each row says why (``missing_note``)."""
    rows = []
    for metric in metrics:
        good_up = higher_is_better(metric)
        if views is not None:
            a, b = views[f"{metric}_parent"].to_numpy(np.float64), views[f"{metric}_variant"].to_numpy(np.float64)
            difference = b - a
        for scene in [*sorted(set(scenes)), MEAN]:
            if views is None:
                est, statistics, parent_mean, variant_mean = NOT_MEASURED, np.empty(0), math.nan, math.nan
            elif scene == MEAN:
                args = (views["scene"].to_numpy(), views["frame"].to_numpy(), difference, bootstrap)
                est, statistics = mean_estimate(*args), mean_distribution(*args)
                by_scene = views.groupby("scene")
                parent_mean = float(by_scene[f"{metric}_parent"].mean().mean())
                variant_mean = float(by_scene[f"{metric}_variant"].mean().mean())
            else:
                mine = (views["scene"] == scene).to_numpy()
                args = (views["frame"].to_numpy()[mine], difference[mine], bootstrap, scene)
                est, statistics = scene_estimate(*args), scene_distribution(*args)
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
                    "verdict": verdict(est, good_up),
                    "p_value": bootstrap_p_value(statistics) if est.measured else math.nan,
                    "p_holm": math.nan,
                    "verdict_holm": "",
                    "note": missing_note if views is None else _note(est, scene, len(set(scenes)), metric, views),
                }
            )
    return rows


def variant_rows(
    grid: str,
    parent_name: str,
    variant: VariantTables,
    parent_views: pd.DataFrame,
    scenes: Sequence[str],
    metrics: Sequence[str] = DEFAULT_DELTA_METRICS,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    parent_provenance: str = "",
    parent_internal: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """The rows of one variant: its internal split (when the parent's ``parent_internal`` views and the
    variant's ``eval_csv`` are given), then its reserved split; ``p_holm`` still empty."""
    common = {
        "grid": grid,
        "variant": variant.name,
        "parent": parent_name,
        "settings": variant.settings,
        "provenance": "; ".join(p for p in (variant.provenance, parent_provenance) if p),
    }
    rows = []
    if parent_internal is not None and variant.eval_csv is not None:
        merged, lonely = _lonely_views(parent_internal, internal_views(variant.eval_csv))
        note = ""
        if len(lonely):  # another difix_eval or triplet sampling: not the same test, so no comparison
            first = lonely.iloc[0]
            note = (
                f"internal evaluation on other views than {parent_name}'s ({len(lonely)} view(s) in one only, e.g. "
                f"{first['scene']} frame {first['frame']} cam {first['cam']}): not compared"
            )
        internal_scenes = sorted(set(parent_internal["scene"]))
        rows += split_rows(INTERNAL, None if note else merged, internal_scenes, metrics, bootstrap, note)
    views = _paired(parent_views, arm_views(TUNED, scenes, variant.tuned_csvs), variant.name, parent_name)
    rows += split_rows(RESERVED, views, scenes, metrics, bootstrap)
    return [{**common, **row} for row in rows]


def holm_verdicts(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """``p_holm`` and ``verdict_holm`` of the mean rows, one Holm family per split and metric (module doc)."""
    table = table.copy()
    alpha = 1.0 - confidence
    for split, metric in dict.fromkeys(zip(table["split"], table["metric"])):
        family = (table["scene"] == MEAN) & (table["split"] == split) & (table["metric"] == metric)
        adjusted = holm(table.loc[family, "p_value"].to_numpy())
        table.loc[family, "p_holm"] = adjusted
        survives = [
            v if v in (IMPROVED, WORSE) and p < alpha else (INCONCLUSIVE if v else NO_VERDICT)
            for v, p in zip(table.loc[family, "verdict"], adjusted)
        ]
        table.loc[family, "verdict_holm"] = survives
    return table


def compare_table(
    grid: str,
    parent_name: str,
    parent_csvs: Sequence[str | os.PathLike],
    variants: Iterable[VariantTables],
    scenes: Sequence[str],
    metrics: Sequence[str] = DEFAULT_DELTA_METRICS,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    parent_provenance: str = "",
    parent_eval_csv: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """``compare.csv`` (module doc): every variant against the parent's tuned arm, Holm-adjusted; the
    internal split where ``parent_eval_csv`` (the parent's ``eval.csv``) is given."""
    parent_views = arm_views(TUNED, scenes, parent_csvs)
    parent_internal = internal_views(parent_eval_csv) if parent_eval_csv is not None else None
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
            for c in ("delta", "ci_low", "ci_high", "p_value", "p_holm", "parent_mean", "variant_mean")
        },
    )
    missing = [c for c in COMPARE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: compare table lacks columns {missing}")
    return table


# ---- reading: markdown, ranking, chart -------------------------------------------------------------


def decision_split(table: pd.DataFrame) -> str:
    """The split the decision ranks on: the internal evaluation when the table has it, else the reserved scenes."""
    return INTERNAL if (table["split"] == INTERNAL).any() else RESERVED


def ranking(table: pd.DataFrame, metric: str, split: str) -> pd.DataFrame:
    """The mean rows of ``metric`` on ``split``, best variant first (largest gain in the metric's good direction)."""
    rows = table[(table["scene"] == MEAN) & (table["metric"] == metric) & (table["split"] == split)].copy()
    sign = 1.0 if higher_is_better(metric) else -1.0
    rows["_gain"] = sign * rows["delta"].astype(np.float64)
    return rows.sort_values("_gain", ascending=False, na_position="last", kind="stable").drop(columns="_gain")


def _cell(row: Mapping[str, Any], digits: int) -> str:
    if math.isnan(row["delta"]):
        return "n/a"
    return f"{row['delta']:+.{digits}f} [{row['ci_low']:+.{digits}f}, {row['ci_high']:+.{digits}f}]"


def _p_cell(p: float) -> str:
    """A p-value to 3 significant digits; bootstrap p-values of 0 are below 1 / n_resamples."""
    return "n/a" if math.isnan(p) else f"{p:.3g}"


def _measured(table: pd.DataFrame, metric: str, split: str | None = None) -> bool:
    """Whether any variant has a ``metric`` comparison (on ``split``; None: on either split)."""
    rows = table[(table["metric"] == metric) & ((table["split"] == split) if split else True)]
    return bool(rows["delta"].notna().any())


def _split_scenes(table: pd.DataFrame, split: str) -> list[str]:
    return sorted(set(table.loc[table["split"] == split, "scene"]) - {MEAN})


def decision_lines(table: pd.DataFrame, rank_by: str, references: Sequence[str] = ()) -> list[str]:
    """The decision section: variants ranked by ``rank_by`` on the decision split (:func:`decision_split`),
    each with every metric's Holm verdict there and, after it, on the reserved scenes; and a one-line
    recommendation made on the decision split alone."""
    metrics = list(dict.fromkeys(table["metric"]))
    parent = str(table["parent"].iloc[0])
    split = decision_split(table)
    means = table[table["scene"] == MEAN].set_index(["split", "variant", "metric"])
    ranked = ranking(table, rank_by, split)
    measured = {on: [m for m in metrics if _measured(table, m, on)] for on in (INTERNAL, RESERVED)}

    def verdicts(variant: str, on: str) -> str:
        cells = []
        for metric in measured[on]:  # the split's tables say why a metric is missing
            row = means.loc[(on, variant, metric)]
            cells.append(f"{metric_title(metric)} {_cell(row, metric_digits(metric))} {row['verdict_holm'] or 'n/a'}")
        return "; ".join(cells) or "no metric measured"

    if split == INTERNAL:
        lines = [
            f"Variants ranked by the {metric_title(rank_by)} difference to {parent} on the internal evaluation "
            f"({', '.join(_split_scenes(table, INTERNAL))}: difix_eval, the split settings are chosen on); "
            "verdicts after Holm adjustment. After each, its reserved scenes' verdicts: the held-out "
            "measurement, which neither ranks nor chooses.",
            "",
        ]
    else:
        lines = [
            f"Variants ranked by the {metric_title(rank_by)} difference to {parent} on the reserved scenes (no "
            "internal evaluation was given: confirm a choice on the internal split before adopting it); "
            "verdicts after Holm adjustment:",
            "",
        ]
    for place, variant in enumerate(ranked["variant"], start=1):
        settings = means.loc[(split, variant, rank_by), "settings"]
        line = f"{place}. **{variant}** ({settings}): {verdicts(variant, split)}"
        if split == INTERNAL:
            line += f". Reserved (held out): {verdicts(variant, RESERVED)}"
        lines.append(line)
    lines.append("")
    for reference in references:
        lines += [f"{reference} has the parent's own settings, so it is {parent} itself (the reference).", ""]
    winners = [
        v for v in ranked["variant"]
        if means.loc[(split, v, rank_by), "verdict_holm"] == IMPROVED
        and not any(means.loc[(split, v, m), "verdict_holm"] == WORSE for m in metrics)
    ]  # fmt: skip
    losers = [v for v in ranked["variant"] if means.loc[(split, v, rank_by), "verdict_holm"] == WORSE]
    on = "the internal evaluation" if split == INTERNAL else "the reserved scenes"
    if winners:
        held_out = means.loc[(RESERVED, winners[0], rank_by)]
        lines.append(
            f"**Decision:** {winners[0]} improves {metric_title(rank_by)} over {parent} on {on} after Holm "
            "adjustment and is worse on no metric there: adopt its settings for the next version."
            + (
                f" On the held-out reserved scenes it measures {_cell(held_out, metric_digits(rank_by))} "
                f"({held_out['verdict_holm'] or 'n/a'} after Holm)."
                if split == INTERNAL
                else ""
            )
        )
        lines.append("")
    else:
        frames = int(ranked["n_frames"].max()) if len(ranked) else 0
        lines.append(
            f"**Decision:** no variant improves {metric_title(rank_by)} over {parent} on {on} after Holm "
            f"adjustment: keep {parent}'s settings; the intervals rest on {frames} frames, so more frames or "
            "scenes would be needed to see a smaller effect."
        )
        lines.append("")
    if losers:
        lines.append(
            f"Worse than {parent} on {on} after Holm adjustment on {metric_title(rank_by)}: {', '.join(losers)}."
        )
    return lines


def compare_markdown(
    table: pd.DataFrame, bootstrap: BootstrapConfig, rank_by: str = "psnr", references: Sequence[str] = ()
) -> str:
    grid, parent = str(table["grid"].iloc[0]), str(table["parent"].iloc[0])
    level = f"{bootstrap.confidence * 100:g}%"
    n_variants = table["variant"].nunique()
    lines = [
        f"## Ablation grid {grid}: variants against {parent} (tuned DiFix against tuned DiFix)",
        "",
        f"Each variant's tuned arm against {parent}'s tuned arm on the same views, paired per view (scene, "
        f"frame, camera); the mean over scenes with its {level} interval. Intervals: {bootstrap.describe()}. "
        f"p: two-sided bootstrap p-value of no difference (0: below 1/{bootstrap.n_resamples}). "
        f"**Holm**: p-values adjusted by Holm's step-down method across the grid's {n_variants} comparisons of each "
        f"metric on each split; a verdict holds after adjustment where the adjusted p < {1 - bootstrap.confidence:g}. "
        "The decision ranks on the internal evaluation (difix_eval); the reserved scenes are the held-out "
        "measurement. Per-scene rows and provenance: compare.csv.",
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
            if not _measured(table, metric, split):  # a table of n/a would only repeat this line
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
                    "verdict": rows["verdict"].tolist(),
                    "p": [_p_cell(p) for p in rows["p_value"]],
                    "p (Holm)": [_p_cell(p) for p in rows["p_holm"]],
                    "verdict (Holm)": rows["verdict_holm"].tolist(),
                }
            )
            lines += [f"**{metric_title(metric)}**", "", to_markdown(out, digits)]
            if notes:
                lines += [f"- {note}" for note in notes] + [""]
    lines += ["### Decision", "", *decision_lines(table, rank_by, references), ""]
    provenance = sorted({p for cell in table["provenance"] for p in str(cell).split("; ") if p})
    if provenance:
        lines += ["Provenance: " + ", ".join(f"`{p}`" for p in provenance), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def decision_html(table: pd.DataFrame, rank_by: str = "psnr", references: Sequence[str] = ()) -> str:
    """The decision section as a small HTML page (a report item)."""
    grid, parent = html.escape(str(table["grid"].iloc[0])), html.escape(str(table["parent"].iloc[0]))
    body = []
    for line in decision_lines(table, rank_by, references):
        text = html.escape(line).replace("**", "")
        if line[:1].isdigit():
            body.append(f"<li>{text.split('. ', 1)[1]}</li>")
        elif line:
            body.append(f"<p>{text}</p>")
    items = "".join(b for b in body if b.startswith("<li>"))
    paragraphs = [b for b in body if not b.startswith("<li>")]
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{grid}: decision</title></head><body>"
        f"<h2>Ablation grid {grid}: decision against {parent}</h2>{paragraphs[0]}<ol>{items}</ol>"
        + "".join(paragraphs[1:])
        + "</body></html>\n"
    )


def paired_chart(table: pd.DataFrame, rank_by: str = "psnr", dpi: int = 110):
    """A row of panels per split (internal first), one per metric measured in some version: each variant's
    mean paired difference to the parent with its interval, coloured by the Holm verdict; variants in the
    order of the ``rank_by`` ranking on the decision split."""
    from hi4dfix.report.plotting import new_figure  # matplotlib: not at the workflow's DAG build

    metrics = list(dict.fromkeys(table["metric"]))
    metrics = [m for m in metrics if _measured(table, m)] or metrics  # compare.md says why a metric is missing
    splits = [split for split in (INTERNAL, RESERVED) if (table["split"] == split).any()]
    order = list(ranking(table, rank_by, decision_split(table))["variant"])
    parent = str(table["parent"].iloc[0])
    height = (0.9 + 0.32 * len(order)) * len(splits) + 0.6
    figure = new_figure(3.6 * len(metrics) + 2.0, height, dpi)
    grid_axes = figure.subplots(len(splits), len(metrics), sharey=True, squeeze=False)
    y = np.arange(len(order))[::-1]
    for split, axes in zip(splits, grid_axes):
        for ax, metric in zip(axes, metrics):
            chosen = (table["scene"] == MEAN) & (table["metric"] == metric) & (table["split"] == split)
            rows = table[chosen].set_index("variant").reindex(order)
            for yi, (_, row) in zip(y, rows.iterrows()):
                color = VERDICT_COLORS.get(row["verdict_holm"], VERDICT_COLORS[NO_VERDICT])
                if not math.isnan(row["delta"]):
                    ax.errorbar(
                        row["delta"], yi, xerr=[[row["delta"] - row["ci_low"]], [row["ci_high"] - row["delta"]]],
                        fmt="o", color=color, capsize=3, markersize=4,
                    )  # fmt: skip
            if rows["delta"].isna().all():
                ax.text(0.5, 0.5, "not measured\nin both versions", transform=ax.transAxes, ha="center", va="center")
            ax.axvline(0.0, color="#333333", linewidth=0.8)
            ax.set_title(f"{split}: {metric_title(metric)}", fontsize=9)
            ax.set_xlabel(f"variant − {parent}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(axis="x", alpha=0.3)
        axes[0].set_yticks(y, order)
    handles = [
        grid_axes[0][0].errorbar([], [], xerr=[], fmt="o", color=color, label=f"{name} (Holm)")
        for name, color in VERDICT_COLORS.items()
        if name
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=7, frameon=False)
    figure.suptitle(
        f"{table['grid'].iloc[0]}: paired differences to {parent} (tuned arms, mean over scenes; "
        "internal: decides, reserved: held out)",
        fontsize=9,
    )
    return figure


def write_paired_chart(table: pd.DataFrame, path: str | os.PathLike, rank_by: str = "psnr", dpi: int = 110) -> None:
    from hi4dfix.report.plotting import save_png

    save_png(paired_chart(table, rank_by, dpi), path, dpi)
