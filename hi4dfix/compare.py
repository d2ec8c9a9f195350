"""Decisions across versions: each variant of an ablation grid against the grid's parent.

``compare.csv`` (:func:`compare_table`) is long and tidy, one row per variant x metric x scene (scenes
in name order, then ``mean``). A row compares the variant's **tuned** arm with the parent's tuned arm on
the same reserved views, paired per view (scene, frame, camera), with the paired cluster bootstrap of
the delta tables (:mod:`hi4dfix.stats`, the same seeds: common random numbers across variants). Columns:

``grid``, ``variant``, ``parent``, ``settings``
    the grid, the variant's version, the parent version, and the variant's axis values
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
    (the family is every compared variant's mean row of one metric), and the verdict where it survives
    (the unadjusted verdict where ``p_holm`` < 1 - confidence, else ``inconclusive``)
``note``
    what is weak, as in the delta tables
``provenance``
    the provenance files of the numbers: the variant's and the parent's ``results/{version}/provenance.json``

A variant is read and compared one at a time against the parent's views (read once): memory holds one
variant's views besides the rows.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from hi4dfix.stats import (
    FEW_UNITS,
    IMPROVED,
    INCONCLUSIVE,
    NO_VERDICT,
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
    MEAN,
    arm_views,
    higher_is_better,
    metric_digits,
    metric_title,
    to_markdown,
)

COMPARE_COLUMNS = (
    "grid", "variant", "parent", "settings", "scene", "metric", "parent_mean", "variant_mean", "delta", "ci_low",
    "ci_high", "n_frames", "n_views", "verdict", "p_value", "p_holm", "verdict_holm", "note", "provenance",
)  # fmt: skip
VIEW_KEY = ["scene", "frame", "cam"]
TUNED = "tuned"
VERDICT_COLORS = {IMPROVED: "#2e7d32", WORSE: "#c62828", INCONCLUSIVE: "#757575", NO_VERDICT: "#555555"}


@dataclass(frozen=True)
class VariantTables:
    """One compared variant: its version, axis values and tuned per-scene NVS CSVs (``scenes`` order)."""

    name: str
    settings: str
    tuned_csvs: Sequence[str | os.PathLike]
    provenance: str = ""


def provenance_path(version: str, results: str = "results") -> str:
    return f"{results}/{version}/provenance.json"


def _paired(parent: pd.DataFrame, variant: pd.DataFrame, name: str, parent_name: str) -> pd.DataFrame:
    merged = parent.merge(variant, on=VIEW_KEY, how="outer", suffixes=("_parent", "_variant"), indicator=True)
    lonely = merged[merged["_merge"] != "both"]
    if len(lonely):
        first = lonely.iloc[0]
        raise ValueError(
            f"variant {name} and parent {parent_name} cover different views: {len(lonely)} view(s) in one only, "
            f"e.g. {first['scene']} frame {first['frame']} cam {first['cam']}; "
            "a comparison needs the same reserved views"
        )
    return merged.drop(columns="_merge")


def _note(est: Estimate, scene: str, n_scenes: int, metric: str) -> str:
    if not est.measured:
        return f"{metric} not measured in both versions"
    units, unit = (est.n_scenes, "scenes") if scene == MEAN else (est.n_frames, "frames")
    if scene == MEAN and est.n_scenes < n_scenes:
        return f"mean over {est.n_scenes} of {n_scenes} scenes"
    if units < 2:
        return f"one {unit[:-1]}: the bootstrap cannot see variation"
    if units < FEW_UNITS:
        return f"{units} {unit}: too few for the interval to cover as much as it says"
    return ""


def variant_rows(
    grid: str,
    parent_name: str,
    variant: VariantTables,
    parent_views: pd.DataFrame,
    scenes: Sequence[str],
    metrics: Sequence[str] = DEFAULT_DELTA_METRICS,
    bootstrap: BootstrapConfig = BootstrapConfig(),
    parent_provenance: str = "",
) -> list[dict[str, Any]]:
    """The rows of one variant (scene rows, then the mean row, per metric); ``p_holm`` still empty."""
    views = _paired(parent_views, arm_views(TUNED, scenes, variant.tuned_csvs), variant.name, parent_name)
    provenance = "; ".join(p for p in (variant.provenance, parent_provenance) if p)
    rows = []
    for metric in metrics:
        good_up = higher_is_better(metric)
        a, b = views[f"{metric}_parent"].to_numpy(np.float64), views[f"{metric}_variant"].to_numpy(np.float64)
        difference = b - a
        for scene in [*sorted(set(scenes)), MEAN]:
            if scene == MEAN:
                args = (views["scene"].to_numpy(), views["frame"].to_numpy(), difference, bootstrap)
                est, statistics = mean_estimate(*args), mean_distribution(*args)
                by_scene = views.groupby("scene")
                parent_mean = float(by_scene[f"{metric}_parent"].mean().mean())
                variant_mean = float(by_scene[f"{metric}_variant"].mean().mean())
            else:
                mine = (views["scene"] == scene).to_numpy()
                args = (views["frame"].to_numpy()[mine], difference[mine], bootstrap, scene)
                est, statistics = scene_estimate(*args), scene_distribution(*args)
                parent_mean, variant_mean = float(np.nanmean(a[mine])), float(np.nanmean(b[mine]))
            rows.append(
                {
                    "grid": grid,
                    "variant": variant.name,
                    "parent": parent_name,
                    "settings": variant.settings,
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
                    "note": _note(est, scene, len(set(scenes)), metric),
                    "provenance": provenance,
                }
            )
    return rows


def holm_verdicts(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """``p_holm`` and ``verdict_holm`` of the mean rows, one Holm family per metric (see the module doc)."""
    table = table.copy()
    alpha = 1.0 - confidence
    for metric in dict.fromkeys(table["metric"]):
        family = (table["scene"] == MEAN) & (table["metric"] == metric)
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
) -> pd.DataFrame:
    """``compare.csv`` (module doc): every variant against the parent's tuned arm, Holm-adjusted."""
    parent_views = arm_views(TUNED, scenes, parent_csvs)
    rows: list[dict[str, Any]] = []
    for variant in variants:  # one variant's views in memory at a time
        rows += variant_rows(grid, parent_name, variant, parent_views, scenes, metrics, bootstrap, parent_provenance)
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


def ranking(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The mean rows of ``metric``, best variant first (largest gain in the metric's good direction)."""
    rows = table[(table["scene"] == MEAN) & (table["metric"] == metric)].copy()
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


def decision_lines(table: pd.DataFrame, rank_by: str, references: Sequence[str] = ()) -> list[str]:
    """The decision section: variants ranked by ``rank_by``, each with every metric's Holm verdict, and a
    one-line recommendation."""
    metrics = list(dict.fromkeys(table["metric"]))
    parent = str(table["parent"].iloc[0])
    means = table[table["scene"] == MEAN].set_index(["variant", "metric"])
    ranked = ranking(table, rank_by)
    lines = [
        f"Variants ranked by the {metric_title(rank_by)} difference to {parent} (mean over the reserved scenes); "
        "verdicts after Holm adjustment:",
        "",
    ]
    for place, variant in enumerate(ranked["variant"], start=1):
        parts = []
        for metric in metrics:
            row = means.loc[(variant, metric)]
            parts.append(f"{metric_title(metric)} {_cell(row, metric_digits(metric))} {row['verdict_holm'] or 'n/a'}")
        lines.append(f"{place}. **{variant}** ({means.loc[(variant, rank_by), 'settings']}): " + "; ".join(parts))
    lines.append("")
    for reference in references:
        lines += [f"{reference} has the parent's own settings, so it is {parent} itself (the reference).", ""]
    winners = [
        v for v in ranked["variant"]
        if means.loc[(v, rank_by), "verdict_holm"] == IMPROVED
        and not any(means.loc[(v, m), "verdict_holm"] == WORSE for m in metrics)
    ]  # fmt: skip
    losers = [v for v in ranked["variant"] if means.loc[(v, rank_by), "verdict_holm"] == WORSE]
    if winners:
        lines.append(
            f"**Decision:** {winners[0]} improves {metric_title(rank_by)} over {parent} after Holm adjustment "
            "and is worse on no metric: adopt its settings for the next version."
        )
        lines.append("")
    else:
        frames = int(ranked["n_frames"].max()) if len(ranked) else 0
        lines.append(
            f"**Decision:** no variant improves {metric_title(rank_by)} over {parent} after Holm adjustment: keep "
            f"{parent}'s settings; the intervals rest on {frames} frames, so more frames or scenes would be needed "
            "to see a smaller effect."
        )
        lines.append("")
    if losers:
        lines.append(f"Worse than {parent} after Holm adjustment on {metric_title(rank_by)}: {', '.join(losers)}.")
    return lines


def compare_markdown(
    table: pd.DataFrame, bootstrap: BootstrapConfig, rank_by: str = "psnr", references: Sequence[str] = ()
) -> str:
    grid, parent = str(table["grid"].iloc[0]), str(table["parent"].iloc[0])
    level = f"{bootstrap.confidence * 100:g}%"
    n_variants = table["variant"].nunique()
    scenes = sorted(set(table["scene"]) - {MEAN})
    lines = [
        f"## Ablation grid {grid}: variants against {parent} (tuned DiFix against tuned DiFix)",
        "",
        f"Each variant's tuned arm against {parent}'s tuned arm on the same reserved views ({', '.join(scenes)}), "
        f"paired per view (scene, frame, camera); the mean over scenes with its {level} interval. "
        f"Intervals: {bootstrap.describe()}. p: two-sided bootstrap p-value of no difference (0: below "
        f"1/{bootstrap.n_resamples}). "
        f"**Holm**: p-values adjusted by Holm's step-down method across the grid's {n_variants} comparisons of each "
        f"metric; a verdict holds after adjustment where the adjusted p < {1 - bootstrap.confidence:g}. "
        "Per-scene rows and provenance: compare.csv.",
        "",
    ]
    for metric in dict.fromkeys(table["metric"]):
        rows = ranking(table, metric)
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
        notes = sorted({n for n in rows["note"] if n})
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
    """A panel per metric: each variant's mean paired difference to the parent with its interval, coloured
    by the Holm verdict; variants in the order of the ``rank_by`` ranking."""
    from hi4dfix.report.plotting import new_figure  # matplotlib: not at the workflow's DAG build

    metrics = list(dict.fromkeys(table["metric"]))
    order = list(ranking(table, rank_by)["variant"])
    parent = str(table["parent"].iloc[0])
    height = 1.2 + 0.32 * len(order)
    figure = new_figure(3.6 * len(metrics) + 2.0, height, dpi)
    axes = figure.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    y = np.arange(len(order))[::-1]
    for ax, metric in zip(axes, metrics):
        rows = table[(table["scene"] == MEAN) & (table["metric"] == metric)].set_index("variant").reindex(order)
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
        ax.set_title(f"{metric_title(metric)}", fontsize=9)
        ax.set_xlabel(f"variant − {parent}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, order)
    handles = [
        axes[0].errorbar([], [], xerr=[], fmt="o", color=color, label=f"{name} (Holm)")
        for name, color in VERDICT_COLORS.items()
        if name
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=7, frameon=False)
    figure.suptitle(
        f"{table['grid'].iloc[0]}: paired differences to {parent} (tuned arms, mean over scenes)", fontsize=9
    )
    return figure


def write_paired_chart(table: pd.DataFrame, path: str | os.PathLike, rank_by: str = "psnr", dpi: int = 110) -> None:
    from hi4dfix.report.plotting import save_png

    save_png(paired_chart(table, rank_by, dpi), path, dpi)
