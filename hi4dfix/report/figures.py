"""Charts of the study report: per-scene NVS metrics (bar charts) and the DiFix training loss curve."""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hi4dfix.report.plotting import new_figure, save_png
from hi4dfix.tables import MEAN, higher_is_better

METRIC_TITLES = {"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS"}
# Bars of one scene, left to right; raw (no DiFix) is context, baseline vs tuned is the comparison.
ARM_STYLES = (
    ("raw", "raw render (no DiFix)", "#b8b8b8"),
    ("baseline", "base DiFix", "#4c78a8"),
    ("tuned", "tuned DiFix", "#f58518"),
)
IMPROVED_COLOR, WORSE_COLOR = "#2e7d32", "#c62828"
# Weighted parts of the total loss in train_log.csv, with their legend labels.
LOSS_TERMS = {"l2": "L2 term", "lpips": "LPIPS term", "gram": "Gram term"}


@dataclass(frozen=True)
class MetricChartConfig:
    metrics: tuple[str, ...] = ("psnr", "ssim", "lpips")  # one panel each, from the delta table
    show_raw: bool = True  # grey bars of the raw renders, for context
    panel_width_in: float = 4.2
    panel_height_in: float = 3.6
    dpi: int = 110

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("report.metric_charts.metrics must name at least one metric")
        for metric in self.metrics:
            higher_is_better(metric)  # unknown metric -> clear error
        if self.dpi < 10:
            raise ValueError(f"report.metric_charts.dpi must be >= 10, got {self.dpi}")


@dataclass(frozen=True)
class LossCurveConfig:
    smooth_fraction: float = 0.05  # running-mean window as a fraction of the steps (0: no smoothing)
    log_scale_ratio: float = 50.0  # log y-axis when max/min loss exceeds this
    width_in: float = 7.0
    height_in: float = 3.8
    dpi: int = 110

    def __post_init__(self) -> None:
        if not 0.0 <= self.smooth_fraction < 1.0:
            raise ValueError(f"report.loss_curve.smooth_fraction must be in [0, 1), got {self.smooth_fraction}")
        if self.log_scale_ratio <= 1.0:
            raise ValueError(f"report.loss_curve.log_scale_ratio must be > 1, got {self.log_scale_ratio}")


def short_scene(scene: str) -> str:
    """Axis label of a scene: ``hi4d_pair15_fight`` -> ``pair15_fight``."""
    return scene.removeprefix("hi4d_")


def metric_title(metric: str) -> str:
    base = metric.removesuffix("_person")
    title = METRIC_TITLES.get(base, base.upper()) + (" (people)" if metric.endswith("_person") else "")
    return f"{title} {'↑' if higher_is_better(metric) else '↓'}"


def _metric_rows(deltas: pd.DataFrame, metric: str, source: str) -> pd.DataFrame:
    rows = deltas[deltas["metric"] == metric]
    if rows.empty:
        known = ", ".join(sorted(set(deltas["metric"])))
        raise ValueError(f"{source}: no rows for metric {metric!r} (the table has: {known})")
    scenes = rows[rows["scene"] != MEAN]
    means = rows[rows["scene"] == MEAN]
    return pd.concat([scenes, means], ignore_index=True)  # scenes first, the mean last


def _draw_metric_panel(ax, rows: pd.DataFrame, metric: str, arms: list[tuple[str, str, str]]) -> None:
    x = np.arange(len(rows), dtype=float)
    width = 0.8 / len(arms)
    known = rows[[arm for arm, _, _ in arms]].to_numpy(dtype=float)
    ax.set_title(metric_title(metric), fontsize=11)
    ax.set_xticks(x, [short_scene(s) if s != MEAN else "mean" for s in rows["scene"]], rotation=30, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if not np.isfinite(known).any():
        # The scenes' notes say why (the mean row's note only repeats that nothing was computed).
        notes = sorted({note for note, scene in zip(rows["note"], rows["scene"]) if note and scene != MEAN})
        text = "\n".join(textwrap.fill(note, 34) for note in notes) or "not computed"
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="#555555")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    for i, (arm, label, color) in enumerate(arms):
        offsets = x + (i - (len(arms) - 1) / 2) * width
        ax.bar(offsets, rows[arm].to_numpy(dtype=float), width, label=label, color=color)  # NaN: no bar
    finite = known[np.isfinite(known)]
    low, high = float(finite.min()), float(finite.max())
    span = (high - low) or max(abs(high), 1e-6)
    # Bars start near the data rather than at 0, so small deltas stay visible; the axis says where.
    bottom = max(0.0, low - 0.6 * span) if low >= 0 else low - 0.2 * span
    ax.set_ylim(bottom, high + 0.35 * span)
    if rows["scene"].iloc[-1] == MEAN and len(rows) > 1:
        ax.axvline(len(rows) - 1.5, color="#888888", linewidth=0.8, linestyle=":")
    digits = 2 if metric.startswith("psnr") else 3
    for xi, (_, row) in zip(x, rows.iterrows()):
        if math.isnan(row["delta"]):
            continue
        improved = bool(row["improved"]) if not pd.isna(row["improved"]) else None
        color = IMPROVED_COLOR if improved else WORSE_COLOR if improved is False else "#555555"
        top = np.nanmax([row[arm] for arm, _, _ in arms])
        label = f"{row['delta']:+.{digits}f}" if abs(row["delta"]) >= 0.5 * 10**-digits else f"{row['delta']:+.1e}"
        ax.annotate(f"Δ {label}", (xi, top), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7.5, color=color)


def metric_bars(deltas: pd.DataFrame, cfg: MetricChartConfig = MetricChartConfig(), source: str = "delta table") -> Figure:
    """One panel per metric: bars per reserved scene (and the mean) for the arms, Δ = tuned − baseline on top.

    ``deltas`` is a delta table (:func:`hi4dfix.tables.delta_table`); ``source`` names it in errors.
    """
    required = {"scene", "metric", "baseline", "tuned", "delta", "improved", "note"}
    missing = sorted(required - set(deltas.columns))
    if missing:
        raise ValueError(f"{source}: delta table lacks columns {missing}")
    arms = [style for style in ARM_STYLES if style[0] != "raw" or (cfg.show_raw and "raw" in deltas.columns)]
    figure = new_figure(cfg.panel_width_in * len(cfg.metrics), cfg.panel_height_in, cfg.dpi)
    axes = figure.subplots(1, len(cfg.metrics), squeeze=False)[0]
    for ax, metric in zip(axes, cfg.metrics):
        _draw_metric_panel(ax, _metric_rows(deltas, metric, source), metric, arms)
    # The legend of the first panel with bars (a "not computed" panel has none).
    handles, labels = next((pair for pair in (ax.get_legend_handles_labels() for ax in axes) if pair[0]), ([], []))
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    figure.suptitle("Novel views of the reserved scenes: base vs tuned DiFix", fontsize=12)
    return figure


def write_metric_bars(
    deltas: pd.DataFrame, path: str | os.PathLike, cfg: MetricChartConfig = MetricChartConfig(), source: str = "delta table"
) -> None:
    save_png(metric_bars(deltas, cfg, source), path, cfg.dpi)


def read_train_log(path: str | os.PathLike) -> pd.DataFrame:
    """``train_log.csv`` of :mod:`hi4dfix.difix.train`: one row per step, with at least ``step`` and ``loss``."""
    try:
        log = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: cannot read the training log ({err})") from err
    missing = [column for column in ("step", "loss") if column not in log.columns]
    if missing:
        raise ValueError(f"{path}: training log lacks columns {missing} (has {list(log.columns)})")
    if log.empty:
        raise ValueError(f"{path}: training log has no steps")
    return log.sort_values("step", kind="stable").reset_index(drop=True)


def smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean over ``window`` steps (shorter at the ends), so the curve does not lag."""
    if window <= 1:
        return values.astype(float)
    return pd.Series(values, dtype=float).rolling(window, center=True, min_periods=1).mean().to_numpy()


def loss_curve(log: pd.DataFrame, cfg: LossCurveConfig = LossCurveConfig(), title: str = "DiFix fine-tuning") -> Figure:
    """Total loss per step (raw and smoothed) and the weighted terms that are not constantly zero."""
    figure = new_figure(cfg.width_in, cfg.height_in, cfg.dpi)
    ax = figure.subplots()
    steps = log["step"].to_numpy()
    loss = log["loss"].to_numpy(dtype=float)
    window = max(1, int(round(cfg.smooth_fraction * len(loss))))
    ax.plot(steps, loss, color="#f58518", alpha=0.35 if window > 1 else 1.0, linewidth=1.0,
            marker="o" if len(loss) <= 20 else None, markersize=3, label="total loss")
    if window > 1:
        ax.plot(steps, smoothed(loss, window), color="#f58518", linewidth=2.0, label=f"total, mean of {window} steps")
    for (term, label), color in zip(LOSS_TERMS.items(), ("#4c78a8", "#54a24b", "#b279a2")):
        if term in log.columns:
            values = log[term].to_numpy(dtype=float)
            if np.nanmax(np.abs(values)) > 0 and not np.allclose(values, loss):
                ax.plot(steps, smoothed(values, window), color=color, linewidth=1.2, linestyle="--", label=label)
    positive = loss[np.isfinite(loss) & (loss > 0)]
    if len(positive) and positive.max() / positive.min() > cfg.log_scale_ratio:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    final = loss[np.isfinite(loss)]
    summary = f"{len(loss)} steps, final loss {final[-1]:.4g}" if len(final) else f"{len(loss)} steps"
    ax.set_title(f"{title}: {summary}", fontsize=11)
    return figure


def write_loss_curve(train_log_csv: str | os.PathLike, path: str | os.PathLike, cfg: LossCurveConfig = LossCurveConfig(),
                     title: str = "DiFix fine-tuning") -> None:
    save_png(loss_curve(read_train_log(train_log_csv), cfg, title), path, cfg.dpi)
