"""An ablation grid's decision for reading: the paired chart and the decision page (report items of
``compare.csv``, :mod:`hi4dfix.compare`); presentation only, the numbers and the decision come from compare."""

from __future__ import annotations

import html
import math
import os
from typing import Sequence

import numpy as np
import pandas as pd

from hi4dfix.compare import INTERNAL, RESERVED, decision_lines, metric_measured, ranking, ranking_split
from hi4dfix.report.figures import NO_VERDICT_COLOR
from hi4dfix.report.figures import VERDICT_COLORS as DELTA_VERDICT_COLORS
from hi4dfix.stats import (
    EQUIVALENT,
    IMPROVED,
    INCONCLUSIVE,
    NO_VERDICT,
    TOO_FEW_SCENES,
    TOO_FEW_SEEDS,
    WORSE,
    BootstrapConfig,
)
from hi4dfix.tables import MEAN, metric_title

# the delta charts' colours (one verdict, one colour in every figure), and the grid's "no decision"
VERDICT_COLORS = {
    **{v: DELTA_VERDICT_COLORS[v] for v in (IMPROVED, WORSE, EQUIVALENT, INCONCLUSIVE, TOO_FEW_SCENES, TOO_FEW_SEEDS)},
    NO_VERDICT: NO_VERDICT_COLOR,
}


def decision_html(
    table: pd.DataFrame, bootstrap: BootstrapConfig = BootstrapConfig(), references: Sequence[str] = ()
) -> str:
    """The decision section as a small HTML page (a report item)."""
    grid, parent = html.escape(str(table["grid"].iloc[0])), html.escape(str(table["parent"].iloc[0]))
    body = []
    for line in decision_lines(table, bootstrap, references):
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


PANELS_PER_ROW = 4


def paired_chart(table: pd.DataFrame, bootstrap: BootstrapConfig = BootstrapConfig(), dpi: int = 110):
    """A row of panels per split (internal first), one per metric measured in some version: each variant's
    mean paired difference to the parent with its interval, coloured by the Holm verdict; variants in the
    order of the primary endpoint on the declared split."""
    from matplotlib.ticker import MaxNLocator

    from hi4dfix.report.plotting import new_figure  # matplotlib: not at the workflow's DAG build

    metrics = list(dict.fromkeys(table["metric"]))
    metrics = [m for m in metrics if metric_measured(table, m)] or metrics  # compare.md says why a metric is missing
    splits = [split for split in (INTERNAL, RESERVED) if (table["split"] == split).any()]
    rank_by = bootstrap.primary if bootstrap.primary in metrics else metrics[0]
    order = list(ranking(table, rank_by, ranking_split(table, bootstrap))["variant"])
    parent = str(table["parent"].iloc[0])
    # at most PANELS_PER_ROW metrics side by side (a split's panels wrap onto more rows): readable at page width
    columns = min(len(metrics), PANELS_PER_ROW)
    wraps = math.ceil(len(metrics) / columns)
    height = (0.9 + 0.32 * len(order)) * len(splits) * wraps + 0.6
    figure = new_figure(3.6 * columns + 2.0, height, dpi)
    all_axes = figure.subplots(len(splits) * wraps, columns, sharey=True, squeeze=False)
    grid_axes = [list(all_axes[i * wraps : (i + 1) * wraps].flat) for i in range(len(splits))]
    y = np.arange(len(order))[::-1]
    for split, axes in zip(splits, grid_axes):
        for ax in axes[len(metrics) :]:
            ax.set_visible(False)  # the last row's empty places
        for ax, metric in zip(axes, metrics):
            chosen = (table["scene"] == MEAN) & (table["metric"] == metric) & (table["split"] == split)
            rows = table[chosen].set_index("variant").reindex(order)
            for yi, (_, row) in zip(y, rows.iterrows()):
                color = VERDICT_COLORS.get(row["verdict_holm"], VERDICT_COLORS[NO_VERDICT])
                if math.isnan(row["delta"]):
                    continue
                if math.isnan(row["ci_low"]):  # no interval (one frame): the point alone
                    ax.plot(row["delta"], yi, "o", color=color, markersize=4)
                    continue
                ax.errorbar(
                    row["delta"], yi, xerr=[[row["delta"] - row["ci_low"]], [row["ci_high"] - row["delta"]]],
                    fmt="o", color=color, capsize=3, markersize=4,
                )  # fmt: skip
            if rows["delta"].isna().all():
                ax.text(0.5, 0.5, "not measured\nin both versions", transform=ax.transAxes, ha="center", va="center")
            ax.axvline(0.0, color="#333333", linewidth=0.8)
            primary = " (primary)" if metric == bootstrap.primary else ""
            ax.set_title(f"{split}: {metric_title(metric)}{primary}", fontsize=9)
            ax.set_xlabel(f"variant − {parent}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(5))  # small differences' long tick labels must not overlap
            ax.grid(axis="x", alpha=0.3)
        for ax in axes[::columns]:
            ax.set_yticks(y, order)
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


def write_paired_chart(
    table: pd.DataFrame, path: str | os.PathLike, bootstrap: BootstrapConfig = BootstrapConfig(), dpi: int = 110
) -> None:
    from hi4dfix.report.plotting import save_png

    save_png(paired_chart(table, bootstrap, dpi), path, dpi)
