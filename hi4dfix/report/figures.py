"""Charts of the study report: per-scene NVS metrics with paired intervals, and the DiFix
training loss curve."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from hi4dfix.arms import ARMS, COMPARISONS, CONTROL_COMPARISONS, arm_comparisons, extra_arm_title
from hi4dfix.metrics import PERSON_SUFFIX, higher_is_better, metric_title
from hi4dfix.report.plotting import MAX_SIZE_PX, new_figure, save_png
from hi4dfix.stats import EQUIVALENT, IMPROVED, INCONCLUSIVE, TOO_FEW_FRAMES, TOO_FEW_SCENES, TOO_FEW_SEEDS, WORSE
from hi4dfix.tables import MEAN, comparison_name, table_arms

# Bars of one scene, left to right; raw (no DiFix) is context, base vs tuned is the study's comparison;
# the control (the base trained as long on fresh non-human data) sits between them, when the study has it.
ARM_STYLES = (
    ("raw", "raw render (no DiFix)", "#b8b8b8"),
    ("base", "base DiFix", "#4c78a8"),
    ("control", "control: base tuned on new non-human data", "#72b7b2"),
    ("tuned", "tuned DiFix", "#f58518"),
)
# Paired differences b - a: a marker per comparison, a colour per verdict.
COMPARISON_MARKERS = {
    comparison_name(b, a): marker
    for (b, a), marker in zip(COMPARISONS + CONTROL_COMPARISONS, ("o", "s", "^", "D", "v"))
}
# Extra arms (difix.extra_arms): a colour each, and their two comparisons' markers, in config order.
EXTRA_ARM_COLORS = ("#54a24b", "#b279a2", "#9d755d", "#e45756", "#eeca3b")
EXTRA_MARKERS = ("P", "X", "*", "h", "<", ">", "p", "d")


def arm_styles(arms) -> list[tuple[str, str, str]]:
    """(arm, label, colour) of these arms: the study's own, then each extra arm's."""
    extra = [arm for arm in arms if arm not in {style[0] for style in ARM_STYLES}]
    own = [style for style in ARM_STYLES if style[0] in arms]
    colours = [EXTRA_ARM_COLORS[i % len(EXTRA_ARM_COLORS)] for i in range(len(extra))]
    return own + [(arm, extra_arm_title(arm), colour) for arm, colour in zip(extra, colours)]


def comparison_marker(name: str, names) -> str:
    """The marker of a comparison: the study's fixed ones, then the extra arms' in order."""
    if name in COMPARISON_MARKERS:
        return COMPARISON_MARKERS[name]
    extra = [n for n in names if n not in COMPARISON_MARKERS]
    return EXTRA_MARKERS[extra.index(name) % len(EXTRA_MARKERS)]


VERDICT_COLORS = {
    IMPROVED: "#2e7d32",
    WORSE: "#c62828",
    EQUIVALENT: "#1565c0",
    INCONCLUSIVE: "#757575",
    # hi4dfix.stats: no test could reach a verdict; pale, and each its own hue so the legend tells them apart
    TOO_FEW_SCENES: "#b0bec5",
    TOO_FEW_FRAMES: "#bcaaa4",
    TOO_FEW_SEEDS: "#ce93d8",
}
NO_VERDICT_COLOR = "#555555"
# Weighted parts of the total loss in train_log.csv, with their legend labels.
LOSS_TERMS = {"l2": "L2 term", "lpips": "LPIPS term", "gram": "Gram term"}
CONTROL_LOSS_COLOR = ARM_STYLES[2][2]  # the control arm's colour in the bar charts
DELTA_TABLE_COLUMNS = ("scene", "metric", "comparison", *ARMS, "delta", "ci_low", "ci_high", "verdict", "note")


@dataclass(frozen=True)
class MetricChartConfig:
    # one column of panels each; None: every metric of the delta table, in its order (new metrics show up)
    metrics: tuple[str, ...] | None = None
    show_raw: bool = True  # the raw renders' means, for context
    panel_width_in: float = 4.2
    panel_height_in: float = 3.3  # each of the two rows: arm means, paired differences
    dpi: int = 110

    def __post_init__(self) -> None:
        if self.metrics is not None and not self.metrics:
            raise ValueError("report.metric_charts.metrics must name at least one metric (or be left out: all)")
        for metric in self.metrics or ():
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


def _metric_rows(deltas: pd.DataFrame, metric: str, source: str) -> pd.DataFrame:
    """A metric's rows of the delta table, scenes in table order then the mean, comparisons as columns
    ``delta@C``, ``ci_low@C``, ``ci_high@C``, ``verdict@C`` beside the arm means and the notes (the
    control arm's column and comparisons where the table has them)."""
    arms = table_arms(deltas)
    rows = deltas[deltas["metric"] == metric]
    if rows.empty:
        known = ", ".join(sorted(set(deltas["metric"])))
        raise ValueError(f"{source}: no rows for metric {metric!r} (the table has: {known})")
    scenes = [s for s in dict.fromkeys(rows["scene"]) if s != MEAN] + ([MEAN] if (rows["scene"] == MEAN).any() else [])
    out = rows.drop_duplicates("scene").set_index("scene").loc[scenes, list(arms)]
    out["note"] = rows.groupby("scene")["note"].agg(lambda notes: "; ".join(dict.fromkeys(n for n in notes if n)))
    for name in _comparison_names(arms):
        chosen = rows[rows["comparison"] == name].set_index("scene").reindex(scenes)
        for key in ("delta", "ci_low", "ci_high", "verdict"):
            out[f"{key}@{name}"] = chosen[key]
        if "seed_sd" in chosen.columns:  # several training seeds (tuning.seeds): their spread
            out[f"seed_sd@{name}"] = chosen["seed_sd"]
    return out.reset_index()


def _comparison_names(arms) -> list[str]:
    """The comparisons of these arms, in the order of the chart's markers."""
    return [comparison_name(b, a) for b, a in arm_comparisons(arms)]


def _scene_ticks(ax, rows: pd.DataFrame, labels: bool) -> np.ndarray:
    x = np.arange(len(rows), dtype=float)
    names = [short_scene(s) if s != MEAN else "mean" for s in rows["scene"]]
    ax.set_xticks(x, names if labels else [""] * len(names), rotation=30, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if rows["scene"].iloc[-1] == MEAN and len(rows) > 1:
        ax.axvline(len(rows) - 1.5, color="#888888", linewidth=0.8, linestyle=":")
    return x


PRIMARY_MARK = "primary endpoint"  # second line of the primary metric's panel title (stats.primary)
PRIMARY_COLOR = "#8e24aa"


def chart_title(metric: str, primary: str | None = None) -> str:
    """A panel's title: the metric's (``PSNR (dB) (people) ↑``), and a second line on the primary endpoint's."""
    return f"{metric_title(metric)}\n{PRIMARY_MARK}" if metric == primary else metric_title(metric)


def _draw_arm_panel(ax, rows: pd.DataFrame, metric: str, arms: list[tuple[str, str, str]], labels: bool,
                    primary: str | None = None) -> None:  # fmt: skip
    """A dot per arm and scene (and the mean): the arms' means, side by side. Dots, not bars: the axis is
    zoomed to the data (a bar's length from a cut-off axis would exaggerate the gaps). The primary endpoint's
    panel has a second title line and a coloured frame."""
    if metric == primary:
        ax.set_title(chart_title(metric, primary), fontsize=11, fontweight="bold", color=PRIMARY_COLOR)
        for spine in ax.spines.values():
            spine.set(edgecolor=PRIMARY_COLOR, linewidth=1.6)
    else:
        ax.set_title(chart_title(metric), fontsize=11)
    x = _scene_ticks(ax, rows, labels=labels)
    step = 0.6 / len(arms)
    for i, (arm, label, color) in enumerate(arms):
        offsets = x + (i - (len(arms) - 1) / 2) * step
        ax.plot(offsets, rows[arm].to_numpy(dtype=float), "o", color=color, markersize=6, label=label, gid=arm)
    ax.set_ylabel("arm mean (axis zoomed, not from 0)", fontsize=9)


def _draw_difference_panel(ax, rows: pd.DataFrame, metric: str, names: list[str]) -> None:
    """The paired differences per scene (three, five with the control arm) with their intervals:
    marker = comparison, colour = verdict."""
    x = _scene_ticks(ax, rows, labels=True)
    ax.axhline(0.0, color="#333333", linewidth=0.8)
    step = 0.8 / len(names)
    for i, name in enumerate(names):
        marker = comparison_marker(name, names)
        for xi, (_, row) in zip(x + (i - (len(names) - 1) / 2) * step, rows.iterrows()):
            delta, low, high = row[f"delta@{name}"], row[f"ci_low@{name}"], row[f"ci_high@{name}"]
            if pd.isna(delta):
                continue
            color = VERDICT_COLORS.get(row[f"verdict@{name}"], NO_VERDICT_COLOR)
            ax.errorbar(
                [xi],
                [delta],
                yerr=[[delta - low], [high - delta]],
                fmt=marker,
                color=color,
                markersize=4.5,
                elinewidth=1.4,
                capsize=2.5,
                gid=f"{row['scene']}@{name}",
            )
            seed_sd = row.get(f"seed_sd@{name}", np.nan)
            if pd.notna(seed_sd):  # ± the SD across training seeds, thin and grey beside the interval
                ax.errorbar(
                    [xi + 0.06],
                    [delta],
                    yerr=[[seed_sd], [seed_sd]],
                    fmt="none",
                    color="#777777",
                    elinewidth=0.8,
                    capsize=1.5,
                    gid=f"{row['scene']}@{name}@seeds",
                )
    ax.set_ylabel(f"paired difference b − a ({'↑' if higher_is_better(metric) else '↓'} better)", fontsize=9)


LEGEND_HEADINGS = ("Arm means (top)", "Paired differences b − a (bottom)", "Colour: verdict of the interval")
VERDICT_LABELS = {
    IMPROVED: "improved (excludes 0, good side)",
    WORSE: "worse (excludes 0, bad side)",
    EQUIVALENT: "equivalent (inside ±stats.min_effect)",
    INCONCLUSIVE: "inconclusive (test does not reach alpha)",
    TOO_FEW_SCENES: "too few scenes (no test can reach alpha)",
    TOO_FEW_FRAMES: "too few frames (no test can reach alpha)",
    TOO_FEW_SEEDS: "too few seeds (one training seed: its luck unmeasured)",
}


def _heading(text: str) -> Line2D:
    return Line2D([], [], linestyle="", label=text)


def _legend_handles(arm_axes, names: list[str]) -> list:
    """Under a heading each: the arms (from the first panel with dots), the comparisons' markers and the
    verdicts' colours."""
    arms, _ = next((pair for pair in (ax.get_legend_handles_labels() for ax in arm_axes) if pair[0]), ([], []))
    handles = [_heading(LEGEND_HEADINGS[0]), *arms, _heading(LEGEND_HEADINGS[1])]
    for name in names:
        b, a = name.split("_vs_")
        marker = comparison_marker(name, names)
        handles.append(Line2D([], [], color="#333333", marker=marker, linestyle="", label=f"{b} − {a}"))
    handles.append(_heading(LEGEND_HEADINGS[2]))
    for verdict_name, color in VERDICT_COLORS.items():
        handles.append(Line2D([], [], color=color, linewidth=3, label=VERDICT_LABELS[verdict_name]))
    return handles


def chart_order(metrics: list[str], primary: str | None = None) -> list[str]:
    """``metrics`` with each person-region metric right after its whole-frame one (``psnr``, ``psnr_person``,
    ``ssim``, ...; pairs in the order their first member comes), and the pair of the primary endpoint first,
    the primary leading it."""
    pairs: dict[str, list[str]] = {}
    for metric in metrics:
        pairs.setdefault(metric.removesuffix(PERSON_SUFFIX), []).append(metric)
    groups = [sorted(group, key=lambda m: m.endswith(PERSON_SUFFIX)) for group in pairs.values()]
    if primary is not None:
        groups.sort(key=lambda group: primary not in group)  # stable: the others keep their order
        groups = [sorted(group, key=lambda m: m != primary) for group in groups]
    return [metric for group in groups for metric in group]


def chart_metrics(deltas: pd.DataFrame, cfg: MetricChartConfig, primary: str | None = None) -> list[str]:
    """The metrics charted: the config's, in its order, or every metric of the table in :func:`chart_order`
    (a person-region metric beside its whole-frame one, the primary endpoint's pair first)."""
    return list(cfg.metrics) if cfg.metrics else chart_order(list(dict.fromkeys(deltas["metric"])), primary)


def panel_grid(
    panels: int, cfg: MetricChartConfig, legend_in: float, max_size_px: tuple[int, int] = MAX_SIZE_PX
) -> tuple[int, int]:
    """(blocks, columns): the panels wrapped into blocks of two rows (arm means, differences) of at most
    ``columns`` each, the shape whose figure fits ``max_size_px`` at the highest resolution (the report's
    PNGs are capped: one long row of 11 metrics would be drawn at a third of the dpi)."""
    best = (1, max(1, panels))
    best_dpi = 0.0
    for blocks in range(1, max(1, panels) + 1):
        columns = -(-max(1, panels) // blocks)
        if (blocks - 1) * columns >= max(1, panels):  # a block would be empty
            continue
        width = cfg.panel_width_in * columns + legend_in
        height = 2 * blocks * cfg.panel_height_in + 0.6
        dpi = min(max_size_px[0] / width, max_size_px[1] / height)
        if dpi > best_dpi + 1e-9:
            best, best_dpi = (blocks, columns), dpi
    return best


def _not_computed_line(rows: pd.DataFrame, metric: str) -> str:
    # the scenes' notes say why (the mean row's only repeats it)
    notes = sorted({note for note, scene in zip(rows["note"], rows["scene"]) if note and scene != MEAN})
    return f"{metric_title(metric)} not shown: {'; '.join(notes) or 'no arm has values'}"


def metric_bars(
    deltas: pd.DataFrame,
    cfg: MetricChartConfig = MetricChartConfig(),
    source: str = "delta table",
    primary: str | None = None,
) -> Figure:
    """A column per metric (:func:`chart_metrics`: the person-region ones beside their whole-frame ones), wrapped
    into blocks (:func:`panel_grid`). Top of a block: a dot per arm's mean per reserved scene (and the mean), on
    an axis zoomed to the data. Bottom: the paired differences tuned − base, tuned − raw and base − raw (and,
    with the control arm, tuned − control and control − base) with their intervals, a marker per comparison,
    coloured by verdict (improved, worse, inconclusive). A metric that no arm has (LPIPS without its weights)
    gets no panels but one line of text saying why. Without a ``control`` column the chart has no control dot
    or marker. ``primary`` (``stats.primary``): its panel comes first and is marked.

    ``deltas`` is a delta table (:func:`hi4dfix.tables.delta_table`); ``source`` names it in errors.
    """
    missing = sorted(set(DELTA_TABLE_COLUMNS) - set(deltas.columns))
    if missing:
        raise ValueError(f"{source}: delta table lacks columns {missing}")
    present = table_arms(deltas)
    arms = [style for style in arm_styles(present) if style[0] != "raw" or cfg.show_raw]
    names = _comparison_names(present)
    drawn, empty = [], []
    for metric in chart_metrics(deltas, cfg, primary):
        rows = _metric_rows(deltas, metric, source)
        computed = np.isfinite(rows[list(present)].to_numpy(dtype=float)).any()
        (drawn if computed else empty).append((metric, rows))
    legend_in = 2.6  # the legend's column, right of the panels
    blocks, columns = panel_grid(len(drawn), cfg, legend_in)
    figure = new_figure(cfg.panel_width_in * columns + legend_in,
                        2 * blocks * cfg.panel_height_in + 0.6 + 0.2 * len(empty), cfg.dpi)  # fmt: skip
    axes = figure.subplots(2 * blocks, columns, squeeze=False, height_ratios=(1.0,) * (2 * blocks))
    for index, (metric, rows) in enumerate(drawn):
        block, column = divmod(index, columns)
        _draw_arm_panel(axes[2 * block, column], rows, metric, arms, labels=False, primary=primary)
        _draw_difference_panel(axes[2 * block + 1, column], rows, metric, names)
    for index in range(len(drawn), blocks * columns):  # the last block's empty places (none drawn: all)
        block, column = divmod(index, columns)
        axes[2 * block, column].axis("off")
        axes[2 * block + 1, column].axis("off")
    handles = _legend_handles(list(axes[0::2].ravel()), names)
    legend = figure.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    for text in legend.get_texts():
        if text.get_text() in LEGEND_HEADINGS:
            text.set_fontweight("bold")
    figure.suptitle(
        "Novel views of the reserved scenes: arm means (top), paired differences with their intervals (bottom)",
        fontsize=10.5,
    )
    if empty:  # one line each instead of an empty box
        figure.supxlabel(
            "\n".join(_not_computed_line(rows, metric) for metric, rows in empty), fontsize=9, color="#555555"
        )
    return figure


def write_metric_bars(
    deltas: pd.DataFrame,
    path: str | os.PathLike,
    cfg: MetricChartConfig = MetricChartConfig(),
    source: str = "delta table",
    primary: str | None = None,
) -> None:
    save_png(metric_bars(deltas, cfg, source, primary), path, cfg.dpi)


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


TUNED_LOSS_COLOR = "#f58518"  # the tuned arm's colour in the metric charts


def _draw_loss_panel(ax, log: pd.DataFrame, cfg: LossCurveConfig, color: str, title: str) -> None:
    """One run's total loss per step (raw and smoothed) and its weighted terms that are not constantly zero."""
    steps = log["step"].to_numpy()
    loss = log["loss"].to_numpy(dtype=float)
    window = max(1, int(round(cfg.smooth_fraction * len(loss))))
    ax.plot(
        steps,
        loss,
        color=color,
        alpha=0.35 if window > 1 else 1.0,
        linewidth=1.0,
        marker="o" if len(loss) <= 20 else None,
        markersize=3,
        label="total loss",
    )
    if window > 1:
        ax.plot(steps, smoothed(loss, window), color=color, linewidth=2.0, label=f"total, mean of {window} steps")
    for (term, label), term_color in zip(LOSS_TERMS.items(), ("#4c78a8", "#54a24b", "#b279a2")):
        if term in log.columns:
            values = log[term].to_numpy(dtype=float)
            if np.nanmax(np.abs(values)) > 0 and not np.allclose(values, loss):
                ax.plot(steps, smoothed(values, window), color=term_color, linewidth=1.2, linestyle="--", label=label)
    positive = loss[np.isfinite(loss) & (loss > 0)]
    if len(positive) and positive.max() / positive.min() > cfg.log_scale_ratio:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    final = loss[np.isfinite(loss)]
    summary = f"{len(loss)} steps, final loss {final[-1]:.4g}" if len(final) else f"{len(loss)} steps"
    ax.set_title(f"{title}\n{summary}", fontsize=10)


def loss_curve(
    log: pd.DataFrame,
    cfg: LossCurveConfig = LossCurveConfig(),
    title: str = "DiFix fine-tuning",
    control: pd.DataFrame | None = None,
) -> Figure:
    """Total loss per step (raw and smoothed) and the weighted terms that are not constantly zero, a panel per
    arm: ``log`` (tuned, on the study's training triplets) and, given, ``control`` (the control arm: the same
    steps on fresh out-of-domain data). Each panel has its own loss axis: the two runs train on different data, so
    their losses are not comparable; the legend sits below the panels, off the curves."""
    runs = [(log, TUNED_LOSS_COLOR, "tuned: the study's training triplets (people)")]
    if control is not None:
        runs.append((control, CONTROL_LOSS_COLOR, "control: fresh out-of-domain triplets (no people)"))
    width = cfg.width_in if control is None else max(cfg.width_in, 2 * 0.62 * cfg.width_in)
    figure = new_figure(width, cfg.height_in + 0.5, cfg.dpi)
    axes = figure.subplots(1, len(runs), squeeze=False)[0]
    for ax, (run, color, run_title) in zip(axes, runs):
        _draw_loss_panel(ax, run, cfg, color, run_title)
    # one legend for both panels, of the curve kinds in grey (each arm's colour is its panel's)
    handles, labels = [], []
    for ax in axes:
        for line in ax.get_lines():
            if line.get_label() not in labels and not line.get_label().startswith("_"):
                gray = line.get_color() in (TUNED_LOSS_COLOR, CONTROL_LOSS_COLOR)
                handles.append(
                    Line2D(
                        [],
                        [],
                        color="#555555" if gray else line.get_color(),
                        alpha=line.get_alpha(),
                        linewidth=line.get_linewidth(),
                        linestyle=line.get_linestyle(),
                        label=line.get_label(),
                    )
                )
                labels.append(line.get_label())
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8, frameon=False)
    note = " (separate axes: different training data, losses not comparable)" if control is not None else ""
    figure.suptitle(f"{title}{note}", fontsize=11)
    return figure


def write_loss_curve(
    train_log_csv: str | os.PathLike,
    path: str | os.PathLike,
    cfg: LossCurveConfig = LossCurveConfig(),
    title: str = "DiFix fine-tuning",
    control_log_csv: str | os.PathLike | None = None,
) -> None:
    control = read_train_log(control_log_csv) if control_log_csv else None
    save_png(loss_curve(read_train_log(train_log_csv), cfg, title, control), path, cfg.dpi)
