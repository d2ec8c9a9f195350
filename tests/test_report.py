"""The study report: its items (card, charts, galleries) and the HTML report in a headless browser.

Unit tests build each item from small hand-made inputs. The module fixture runs the small pipeline
once (its delta table brings the report items), then ``snakemake --report``; the browser tests open the report in
headless Chromium (Debian package ``chromium``; skipped when it is not installed).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from hi4dfix.io import write_image
from hi4dfix.metrics import METRIC_COLUMNS
from hi4dfix.render.scene_renders import target_image_path
from hi4dfix.report import (
    CATEGORY_CARD,
    CATEGORY_GALLERY,
    CATEGORY_METRICS,
    CATEGORY_TRAINING,
    CATEGORY_VIEWS,
    settings_from_dict,
)
from hi4dfix.report.card import effective_batch_text, flatten, version_card_html
from hi4dfix.report.figures import (
    PRIMARY_COLOR,
    VERDICT_COLORS,
    LossCurveConfig,
    MetricChartConfig,
    chart_order,
    loss_curve,
    metric_bars,
    panel_grid,
    read_train_log,
    write_loss_curve,
    write_metric_bars,
)
from hi4dfix.report.gallery import (
    TRIPLET_COLUMNS,
    BeforeAfterConfig,
    GalleryConfig,
    before_after,
    nvs_output_path,
    triplet_gallery,
    write_before_after,
)
from hi4dfix.report.grid import spread_pick
from hi4dfix.report.plotting import MAX_SIZE_PX
from hi4dfix.stats import BootstrapConfig
from hi4dfix.study import Study
from hi4dfix.tables import ARMS, delta_table, per_scene_table, write_csv
from workflow_helpers import default_config, run_snakemake

RESERVED = ["hi4d_pair15_fight", "hi4d_pair16_jump", "hi4d_pair17_dance", "hi4d_pair19_piggyback"]
CATEGORIES = [CATEGORY_CARD, CATEGORY_METRICS, CATEGORY_VIEWS, CATEGORY_GALLERY, CATEGORY_TRAINING]


# ---- small inputs ---------------------------------------------------------------------------


def scene_rows(offset: float, lpips: bool, views=((0, 16), (0, 40), (1, 16), (1, 40))) -> list[dict]:
    return [
        {
            "frame": frame,
            "cam": cam,
            "psnr": 20.0 + offset + cam / 100 + frame / 10,
            "ssim": 0.7 + offset / 10,
            "lpips": 0.3 - offset / 10 if lpips else math.nan,
            "psnr_person": math.nan,
            "ssim_person": math.nan,
            "lpips_person": math.nan,
            **dict.fromkeys(METRIC_COLUMNS[6:], math.nan),  # the metrics after the first six: not measured
            "lpips_computed": lpips,
        }
        for frame, cam in views
    ]


def make_deltas(lpips: bool = True, control: bool = False) -> pd.DataFrame:
    """A delta table of the reserved scenes: tuned > base > raw with per-view noise (intervals of some width);
    with ``control``, a control arm between base and tuned."""
    rng = np.random.default_rng(0)
    parts = []
    arms = (("raw", 0.0), ("base", 1.0), ("tuned", 1.5)) + ((("control", 1.2),) if control else ())
    for arm, offset in arms:
        for i, scene in enumerate(RESERVED):
            rows = scene_rows(offset + i / 10, lpips, views=[(f, c) for f in range(4) for c in (16, 40)])
            for r in rows:
                r["psnr"] += rng.normal(0.0, 1.0)
            parts.append(pd.DataFrame(rows).assign(arm=arm, scene=scene))
    whole_frame = ("psnr", "ssim", "lpips")  # the person metrics' rows are another table's concern
    return delta_table(pd.concat(parts, ignore_index=True), whole_frame, bootstrap=BootstrapConfig(n_resamples=300))


def dot_values(ax, label: str) -> list[float]:
    lines = [line for line in ax.get_lines() if line.get_label() == label]
    assert len(lines) == 1, f"no dots labelled {label!r}"
    return lines[0].get_ydata().tolist()


def tile_arrays(figure) -> list[np.ndarray]:
    return [ax.images[0].get_array() for ax in figure.axes]


# ---- small pieces -----------------------------------------------------------------------------


def test_spread_pick_keeps_ends_and_order():
    assert spread_pick(list(range(10)), 3) == [0, 4, 9]  # round(4.5) is 4: numpy rounds half to even
    assert spread_pick([1, 2], 5) == [1, 2]
    with pytest.raises(ValueError):
        spread_pick([1], 0)


def test_settings_from_dict_names_the_block_and_makes_tuples():
    cfg = settings_from_dict(MetricChartConfig, {"metrics": ["psnr", "ssim"]}, "config report.metric_charts")
    assert cfg.metrics == ("psnr", "ssim")
    assert settings_from_dict(GalleryConfig, None, "x") == GalleryConfig()
    with pytest.raises(ValueError, match=r"config report.gallery: unknown settings \['samples'\]"):
        settings_from_dict(GalleryConfig, {"samples": 3}, "config report.gallery")
    with pytest.raises(ValueError, match="unknown metric"):
        MetricChartConfig(metrics=("psnr", "fid"))


# ---- version card -------------------------------------------------------------------------------


def test_version_card_states_objective_splits_decisions_outputs_and_settings():
    config = default_config()
    study = Study.from_config(config)
    version = study.check_version("v0")
    profile = study.render_profiles[version.render_profile]
    page = version_card_html(version, study.reserved_scenes, profile, {"base": "pretrain", "preset": "tiny"})
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page  # shown in the report's iframe: static HTML only
    assert " ".join(version.objective.split()) in " ".join(page.split())
    for key in ("difix_train", "difix_eval", "nvs_eval"):
        assert f"<code>{key}</code>" in page
        for scene in getattr(version, key):
            assert f"<code>{scene}</code>" in page
    for decision in version.decisions:
        assert decision in page
    for output in version.expected_outputs:
        assert f"<code>{output}</code>" in page
    assert "<th>pose_error.rot_deg</th><td><code>4.0</code></td>" in page  # nested settings flattened
    assert "<th>steps</th><td><code>150</code></td>" in page
    assert "<th>mode</th><td><code>postfix</code></td>" in page


def test_version_card_escapes_config_text():
    config = default_config()
    config["versions"]["v0"]["objective"] = "Is <b>tuned</b> & better?"
    study = Study.from_config(config)
    page = version_card_html(study.version("v0"), study.reserved_scenes, {})
    assert "Is &lt;b&gt;tuned&lt;/b&gt; &amp; better?" in page and "<b>tuned</b>" not in page


def test_version_card_states_the_effective_batch_of_the_run_that_made_the_model(tmp_path):
    work = tmp_path / "work"
    for key, processes, batch in (("aaa", 1, 4), ("bbb", 2, 1)):
        folder = work / key
        folder.mkdir(parents=True)
        record = {"key": key, "settings": {"batch_size": batch}, "num_processes": processes}
        (folder / "run.json").write_text(json.dumps(record))
        (folder / "model.pkl").write_bytes(key.encode())
    model = tmp_path / "model.pkl"
    os.link(work / "bbb" / "model.pkl", model)  # as the tuning job links the newest run's model
    assert effective_batch_text(model, work) == "2 samples a step (2 processes x batch_size 1)"
    model.unlink()
    os.link(work / "aaa" / "model.pkl", model)
    assert effective_batch_text(model, work) == "4 samples a step (1 process x batch_size 4)"
    assert effective_batch_text(tmp_path / "missing.pkl", work).startswith("unknown: no run folder")
    page = version_card_html(
        Study.from_config(default_config()).version("v0"), [], {}, {"effective batch, tuning": "2 samples a step"}
    )
    assert "<th>effective batch, tuning</th><td><code>2 samples a step</code></td>" in page


def test_flatten_dots_nested_keys_in_order():
    nested = {"a": 1, "b": {"c": 2, "d": {"e": 3}}, "f": [1, 2]}
    assert flatten(nested) == [("a", 1), ("b.c", 2), ("b.d.e", 3), ("f", [1, 2])]


# ---- metric bar charts ----------------------------------------------------------------------------


def test_metric_bars_show_each_arm_per_scene_and_the_mean():
    deltas = make_deltas()
    figure = metric_bars(deltas)
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["PSNR (dB) ↑", "SSIM ↑", "LPIPS ↓"]
    for ax, metric in zip(panels, ("psnr", "ssim", "lpips")):
        rows = deltas[
            (deltas.metric == metric) & (deltas.comparison == "tuned_vs_base")
        ]  # scenes in order, then the mean
        assert dot_values(ax, "base DiFix") == pytest.approx(rows.base.tolist())
        assert dot_values(ax, "tuned DiFix") == pytest.approx(rows.tuned.tolist())
        assert dot_values(ax, "raw render (no DiFix)") == pytest.approx(rows.raw.tolist())
        assert not ax.containers and not ax.texts  # dots, no bars from a cut-off axis, no unexplained labels
        assert "not from 0" in ax.get_ylabel()  # the axis says it is zoomed


def difference_points(ax) -> dict[str, tuple[float, float, float, str]]:
    """``scene@comparison`` -> (delta, low, high, colour) of a panel's error bars."""
    points = {}
    for container in ax.containers:
        data_line, _, (bars, *_) = container.lines
        (_, low), (_, high) = bars.get_segments()[0]
        points[data_line.get_gid()] = (float(data_line.get_ydata()[0]), float(low), float(high), data_line.get_color())
    return points


def test_metric_charts_show_paired_differences_with_intervals_and_verdicts():
    deltas = make_deltas()
    figure = metric_bars(deltas)
    lower = [ax for ax in figure.axes if not ax.get_title() and ax.containers]
    assert len(lower) == 3
    for ax, metric in zip(lower, ("psnr", "ssim", "lpips")):
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "pair15_fight",
            "pair16_jump",
            "pair17_dance",
            "pair19_piggyback",
            "mean",
        ]
        points = difference_points(ax)
        rows = deltas[deltas.metric == metric]
        assert len(points) == len(rows) == 5 * 3  # scenes and mean x three comparisons (no control arm)
        for row in rows.itertuples():
            delta, low, high, colour = points[f"{row.scene}@{row.comparison}"]
            assert (delta, low, high) == pytest.approx((row.delta, row.ci_low, row.ci_high))
            assert colour == VERDICT_COLORS[row.verdict]
        assert ("↑" if metric != "lpips" else "↓") in ax.get_ylabel()
    # the noisy PSNR gives verdicts of more than one kind, all told apart by colour
    assert {"improved", "inconclusive"} <= set(deltas.loc[deltas.metric == "psnr", "verdict"])
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == [
        "Arm means (top)",
        "raw render (no DiFix)",
        "base DiFix",
        "tuned DiFix",
        "Paired differences b − a (bottom)",
        "tuned − base",
        "tuned − raw",
        "base − raw",
        "Colour: verdict of the interval",
        "improved (excludes 0, good side)",
        "worse (excludes 0, bad side)",
        "equivalent (inside ±stats.min_effect)",
        "inconclusive (test does not reach alpha)",
        "too few scenes (no test can reach alpha)",
        "too few frames (no test can reach alpha)",
        "too few seeds (one training seed: its luck unmeasured)",
    ]


def test_metric_charts_show_the_control_arm_and_its_comparisons():
    deltas = make_deltas(control=True)
    figure = metric_bars(deltas)
    panels = [ax for ax in figure.axes if ax.get_title()]
    for ax, metric in zip(panels, ("psnr", "ssim", "lpips")):
        rows = deltas[(deltas.metric == metric) & (deltas.comparison == "tuned_vs_base")]
        assert dot_values(ax, "control: base tuned on new non-human data") == pytest.approx(rows.control.tolist())
        assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == [
            "raw render (no DiFix)",
            "base DiFix",
            "control: base tuned on new non-human data",
            "tuned DiFix",
        ]
    lower = [ax for ax in figure.axes if not ax.get_title() and ax.containers]
    for ax, metric in zip(lower, ("psnr", "ssim", "lpips")):
        points = difference_points(ax)
        rows = deltas[deltas.metric == metric]
        assert len(points) == len(rows) == 5 * 5  # scenes and mean x five comparisons
        for row in rows[rows.comparison.isin(["tuned_vs_control", "control_vs_base"])].itertuples():
            delta, low, high, colour = points[f"{row.scene}@{row.comparison}"]
            assert (delta, low, high) == pytest.approx((row.delta, row.ci_low, row.ci_high))
            assert colour == VERDICT_COLORS[row.verdict]
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend[6:11] == ["tuned − base", "tuned − raw", "base − raw", "tuned − control", "control − base"]
    markers = {h.get_label(): h.get_marker() for h in figure.legends[0].legend_handles if h.get_label() in legend[6:11]}
    assert len(set(markers.values())) == 5  # each comparison its own marker


def test_metric_bars_without_raw_and_with_lpips_not_computed(tmp_path):
    deltas = make_deltas(lpips=False)
    path = tmp_path / "metrics.png"
    write_metric_bars(deltas, path, MetricChartConfig(show_raw=False))
    image = iio.imread(path)
    assert image.shape[1] <= MAX_SIZE_PX[0] and image.shape[0] <= MAX_SIZE_PX[1]
    figure = metric_bars(deltas, MetricChartConfig(show_raw=False))
    # no empty LPIPS panels: one line of text says why
    assert [ax.get_title() for ax in figure.axes if ax.get_title()] == ["PSNR (dB) ↑", "SSIM ↑"]
    assert len(figure.axes) == 4
    line = figure.get_supxlabel()
    assert line.startswith("LPIPS ↓ not shown: ") and "LPIPS AlexNet weights not cached" in line
    assert "\n" not in line
    psnr_panel = [ax for ax in figure.axes if ax.get_title() == "PSNR (dB) ↑"][0]
    labels = {line.get_label() for line in psnr_panel.get_lines() if not line.get_label().startswith("_")}
    assert labels == {"base DiFix", "tuned DiFix"}


def test_metric_charts_take_every_metric_of_the_table_by_default():
    # a metric added to the table (here the person-region PSNR) shows up without a config change, beside its
    # whole-frame metric
    deltas = make_deltas()
    extra = deltas[deltas.metric == "psnr"].assign(metric="psnr_person")
    figure = metric_bars(pd.concat([deltas, extra], ignore_index=True))
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["PSNR (dB) ↑", "PSNR (dB) (people) ↑", "SSIM ↑", "LPIPS ↓"]
    assert MetricChartConfig().metrics is None


def person_deltas() -> pd.DataFrame:
    """The delta table's layout of the main job: whole-frame metrics, then the person ones (endpoint_metrics)."""
    deltas = make_deltas()
    people = [deltas[deltas.metric == m].assign(metric=f"{m}_person") for m in ("psnr", "ssim", "lpips")]
    people[0] = people[0].assign(tuned=people[0].tuned + 0.5)  # the person PSNR differs from the frame's
    return pd.concat([deltas, *people], ignore_index=True)


def test_metric_charts_draw_the_person_metrics_beside_the_frame_and_the_primary_first_and_marked():
    deltas = person_deltas()
    assert chart_order(list(dict.fromkeys(deltas.metric))) == [
        "psnr", "psnr_person", "ssim", "ssim_person", "lpips", "lpips_person"
    ]  # fmt: skip
    figure = metric_bars(deltas, primary="psnr_person")
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "PSNR (dB) (people) ↑\nprimary endpoint", "PSNR (dB) ↑", "SSIM ↑", "SSIM (people) ↑", "LPIPS ↓",
        "LPIPS (people) ↓",
    ]  # fmt: skip
    assert panels[0].title.get_color() == PRIMARY_COLOR and panels[1].title.get_color() != PRIMARY_COLOR
    assert {spine.get_edgecolor() for spine in panels[0].spines.values()} == {to_rgba(PRIMARY_COLOR)}
    rows = deltas[(deltas.metric == "psnr_person") & (deltas.comparison == "tuned_vs_base")]
    assert dot_values(panels[0], "tuned DiFix") == pytest.approx(rows.tuned.tolist())  # the person values
    lower = [ax for ax in figure.axes if not ax.get_title() and ax.containers]
    points = difference_points(lower[0])
    row = deltas[(deltas.metric == "psnr_person") & (deltas.comparison == "tuned_vs_base")].iloc[-1]
    assert points["mean@tuned_vs_base"][0] == pytest.approx(row.delta)
    # 6 metrics: two blocks of 3 (arm means over differences each) fit the report's PNG at a higher dpi than
    # one row of 6
    assert panel_grid(6, MetricChartConfig(), 2.6) == (2, 3)
    assert panel_grid(11, MetricChartConfig(), 2.6) == (2, 6) and panel_grid(2, MetricChartConfig(), 2.6) == (1, 2)
    assert len(figure.axes) == 2 * 2 * 3
    # the configured list keeps its own order; the primary is marked wherever it is
    figure = metric_bars(deltas, MetricChartConfig(metrics=("ssim", "psnr_person")), primary="psnr_person")
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["SSIM ↑", "PSNR (dB) (people) ↑\nprimary endpoint"]


def test_metric_bars_errors_name_the_table(tmp_path):
    deltas = make_deltas()
    with pytest.raises(ValueError, match=r"my/deltas.csv: no rows for metric 'psnr_person'"):
        metric_bars(deltas, MetricChartConfig(metrics=("psnr_person",)), source="my/deltas.csv")
    with pytest.raises(ValueError, match=r"my/deltas.csv: delta table lacks columns \['tuned'\]"):
        metric_bars(deltas.drop(columns=["tuned"]), source="my/deltas.csv")


# ---- loss curve -----------------------------------------------------------------------------------


def test_loss_curve_plots_every_step_and_nonzero_terms(tmp_path):
    steps = np.arange(1, 41)
    log = pd.DataFrame({"step": steps, "loss": 1.0 / steps, "l2": 0.8 / steps, "lpips": 0.2 / steps, "gram": 0.0})
    log.sample(frac=1.0, random_state=0).to_csv(tmp_path / "train_log.csv", index=False)  # unsorted on purpose
    read = read_train_log(tmp_path / "train_log.csv")
    figure = loss_curve(read, LossCurveConfig(smooth_fraction=0.1))
    assert len(figure.axes) == 1  # no control arm: one panel
    ax = figure.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"total loss", "total, mean of 4 steps", "L2 term", "LPIPS term"}  # gram is all zero
    assert ax.get_legend() is None and len(figure.legends) == 1  # the legend is the figure's, off the curves
    assert lines["total loss"].get_xdata().tolist() == steps.tolist()
    assert lines["total loss"].get_ydata() == pytest.approx(1.0 / steps)
    assert ax.get_yscale() == "linear"  # max/min = 40 < 50
    assert "40 steps, final loss 0.025" in ax.get_title()
    write_loss_curve(tmp_path / "train_log.csv", tmp_path / "loss.png")
    assert iio.imread(tmp_path / "loss.png").ndim == 3


def test_loss_curve_shows_the_control_arms_training_beside_tuned(tmp_path):
    steps = np.arange(1, 21)
    pd.DataFrame({"step": steps, "loss": 1.0 / steps}).to_csv(tmp_path / "tuned.csv", index=False)
    pd.DataFrame({"step": steps, "loss": 0.5 / steps}).to_csv(tmp_path / "control.csv", index=False)
    figure = loss_curve(
        read_train_log(tmp_path / "tuned.csv"),
        LossCurveConfig(smooth_fraction=0.0),
        control=read_train_log(tmp_path / "control.csv"),
    )
    # a panel per arm, each its own loss axis: they train on different data
    tuned_ax, control_ax = figure.axes
    assert tuned_ax.get_title().startswith("tuned: ") and control_ax.get_title().startswith("control: ")
    assert tuned_ax.get_lines()[0].get_ydata() == pytest.approx(1.0 / steps)
    assert control_ax.get_lines()[0].get_ydata() == pytest.approx(0.5 / steps)
    assert tuned_ax.get_shared_y_axes().get_siblings(tuned_ax) == [tuned_ax]
    assert "20 steps, final loss 0.05" in tuned_ax.get_title() and "final loss 0.025" in control_ax.get_title()
    assert "losses not comparable" in figure.get_suptitle()
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["total loss"]
    assert tuned_ax.get_legend() is None and control_ax.get_legend() is None
    write_loss_curve(tmp_path / "tuned.csv", tmp_path / "loss.png", control_log_csv=tmp_path / "control.csv")
    assert iio.imread(tmp_path / "loss.png").ndim == 3


def test_read_train_log_names_the_file(tmp_path):
    path = tmp_path / "train_log.csv"
    path.write_text("step,l2\n1,0.5\n")
    with pytest.raises(ValueError, match=r"train_log.csv: training log lacks columns \['loss'\]"):
        read_train_log(path)
    with pytest.raises(ValueError, match="cannot read the training log"):
        read_train_log(tmp_path / "missing.csv")


# ---- galleries ------------------------------------------------------------------------------------


def solid(value: float, shape=(16, 12)) -> np.ndarray:
    return np.full((*shape, 3), value, dtype=np.float32)


def test_triplet_gallery_runs_the_fixer_on_picked_test_triplets(tmp_path):
    triplets = {}
    for i in range(5):
        paths = {key: tmp_path / f"{key}_{i}.png" for key in ("image", "ref_image", "target_image")}
        write_image(paths["image"], solid(0.2))
        write_image(paths["ref_image"], solid(0.4))
        write_image(paths["target_image"], solid(0.6))
        triplets[f"hi4d_pair02_dance/{16 + i}/{i}"] = {key: str(p) for key, p in paths.items()} | {"prompt": "x"}
    calls = []

    def fixer(images, refs):
        calls.append((len(images), [float(r.mean()) for r in refs]))
        return [np.full_like(image, 0.6) for image in images]  # a perfect fix: equals the target

    figure = triplet_gallery(triplets, fixer, GalleryConfig(num_samples=3))
    assert calls == [(3, pytest.approx([0.4, 0.4, 0.4], abs=0.01))]  # one batched call, refs passed along
    assert len(figure.axes) == 3 * len(TRIPLET_COLUMNS)
    assert [ax.get_title() for ax in figure.axes[:4]] == list(TRIPLET_COLUMNS)
    assert [ax.get_ylabel() for ax in figure.axes[::4]] == [
        "pair02_dance\ncam 16 · frame 0",
        "pair02_dance\ncam 18 · frame 2",
        "pair02_dance\ncam 20 · frame 4",
    ]
    assert figure.axes[0].get_xlabel() == f"PSNR {-10 * math.log10((51 / 255 - 153 / 255) ** 2):.2f} dB"
    assert figure.axes[3].get_xlabel() == "PSNR 100.00 dB"  # capped: output equals target
    with pytest.raises(ValueError, match="the test split is empty"):
        triplet_gallery({}, fixer, source="results/v0/triplets.json")
    triplets["hi4d_pair02_dance/16/0"]["image"] = str(tmp_path / "gone.png")
    with pytest.raises(FileNotFoundError, match="gone.png does not exist"):
        triplet_gallery(triplets, fixer, GalleryConfig(num_samples=3))


def make_nvs_arms(tmp_path: Path, views, drop_output=None, arms=ARMS) -> tuple[dict[str, Path], Path]:
    """Arm CSVs and saved outputs as evaluate_nvs leaves them, and a render folder with targets."""
    render_dir = tmp_path / "renders" / "hi4d_pair15_fight"
    csvs = {}
    for k, arm in enumerate(arms):
        csvs[arm] = tmp_path / "nvs" / arm / "hi4d_pair15_fight.csv"
        write_csv(csvs[arm], per_scene_table(scene_rows(float(k), True, views)))
        for frame, cam in views:
            if (arm, frame, cam) != drop_output:
                write_image(nvs_output_path(csvs[arm], cam, frame), solid(0.1 + 0.2 * k))
    for frame, cam in views:
        write_image(target_image_path(render_dir, cam, frame), solid(0.9))
    return csvs, render_dir


def test_before_after_shows_each_arms_saved_outputs_and_ground_truth(tmp_path):
    views = [(0, 16), (0, 40), (1, 16), (1, 40), (2, 16)]
    csvs, render_dir = make_nvs_arms(tmp_path, views)
    figure = before_after("hi4d_pair15_fight", csvs, render_dir, BeforeAfterConfig(max_views=3))
    assert len(figure.axes) == 3 * 4
    assert [ax.get_ylabel() for ax in figure.axes[::4]] == ["cam 16 · frame 0", "cam 16 · frame 1", "cam 16 · frame 2"]
    means = [float(np.mean(a)) for a in tile_arrays(figure)[:4]]
    assert means == pytest.approx([0.1, 0.3, 0.5, 0.9], abs=0.01)  # raw, base, tuned, ground truth
    tuned = per_scene_table(scene_rows(2.0, True, views))
    row = tuned[(tuned.frame == 0) & (tuned.cam == 16)].iloc[0]
    assert figure.axes[2].get_xlabel() == f"PSNR {row.psnr:.2f} · SSIM {row.ssim:.4f}"  # the tables' digits
    write_before_after("hi4d_pair15_fight", csvs, render_dir, tmp_path / "views.png")
    assert iio.imread(tmp_path / "views.png").shape[0] <= MAX_SIZE_PX[1]


def test_before_after_shows_the_control_arm_between_base_and_tuned(tmp_path):
    views = [(0, 16), (1, 16)]
    csvs, render_dir = make_nvs_arms(tmp_path, views, arms=("raw", "base", "tuned", "control"))
    figure = before_after("hi4d_pair15_fight", csvs, render_dir, BeforeAfterConfig(max_views=2))
    assert [ax.get_title() for ax in figure.axes[:5]] == [
        "raw render", "base DiFix", "control DiFix", "tuned DiFix", "ground truth",
    ]  # fmt: skip
    means = [float(np.mean(a)) for a in tile_arrays(figure)[:5]]
    assert means == pytest.approx([0.1, 0.3, 0.7, 0.5, 0.9], abs=0.01)  # control's saved outputs in its column
    assert "control: the base DiFix tuned as long as tuned" in figure.get_suptitle()


def test_before_after_shows_the_extra_arms_after_the_studys_own(tmp_path):
    views = [(0, 16), (1, 16)]
    csvs, render_dir = make_nvs_arms(tmp_path, views, arms=("raw", "base", "tuned", "fixer", "difix1"))
    figure = before_after("hi4d_pair15_fight", csvs, render_dir, BeforeAfterConfig(max_views=2))
    assert [ax.get_title() for ax in figure.axes[:6]] == [
        "raw render", "base DiFix", "tuned DiFix", "extra arm fixer", "extra arm difix1", "ground truth",
    ]  # fmt: skip
    means = [float(np.mean(a)) for a in tile_arrays(figure)[:6]]
    assert means == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9, 0.9], abs=0.01)  # each arm's own saved outputs


def test_before_after_missing_output_says_how_to_recover(tmp_path):
    csvs, render_dir = make_nvs_arms(tmp_path, [(0, 16)], drop_output=("base", 0, 16))
    with pytest.raises(
        FileNotFoundError, match=r"base/hi4d_pair15_fight/16/000000.png: the base output .* --forcerun evaluate_nvs"
    ):
        before_after("hi4d_pair15_fight", csvs, render_dir)
    with pytest.raises(ValueError, match=r"no metrics CSV for arms \['tuned'\]"):
        before_after("hi4d_pair15_fight", {"raw": csvs["raw"], "base": csvs["base"]}, render_dir)


# ---- the HTML report of a pipeline run --------------------------------------------------------


@pytest.fixture(scope="module")
def report_run(small_pipeline):
    """The small pipeline (run once for the session) and its HTML report, made with the literal
    command of the README (the delta table as the target)."""
    workdir, config = small_pipeline
    run_snakemake(workdir, config, "--report", "results/v0/report.html", "results/v0/deltas.csv")
    return workdir


def embedded_json(page: str, name: str):
    """A data block of Snakemake's report page, e.g. ``var results = {...};``."""
    match = re.search(rf"<script id=\"{name}\">\s*var \w+ = (.*?);\s*</script>", page, re.S)
    assert match, f"report has no {name} block"
    return json.loads(match.group(1))


def decode_data_uri(uri: str) -> bytes:
    header, data = uri.split(",", 1)
    assert header.endswith(";base64"), header
    return base64.b64decode(data)


def test_report_embeds_every_item_in_its_category(report_run):
    page = (report_run / "results/v0/report.html").read_text()
    categories = embedded_json(page, "categories")
    assert sorted(categories) == CATEGORIES
    # the base model is shared by the versions: its out-of-domain scores have their own subcategory
    assert {name: sorted(subcats) for name, subcats in categories.items()} == {
        name: ["base model", "v0"] if name == CATEGORY_METRICS else ["v0"] for name in CATEGORIES
    }
    assert categories[CATEGORY_METRICS]["base model"] == ["results/difix_base/tiny/ood_test.md"]
    results = embedded_json(page, "results")
    assert "out-of-domain" in results["results/difix_base/tiny/ood_test.md"]["caption"]
    expected = {
        CATEGORY_CARD: ["results/v0/report/card.html"],
        CATEGORY_METRICS: [
            "results/v0/deltas.csv",
            "results/v0/deltas.html",  # deltas.md, readable inline
            "results/v0/report/metrics.png",
            "results/v0/difix/eval_deltas.csv",
            "results/v0/difix/eval_deltas.html",
        ],
        CATEGORY_VIEWS: [f"results/v0/report/before_after/{scene}.png" for scene in RESERVED],
        CATEGORY_GALLERY: ["results/v0/report/gallery.png"],
        CATEGORY_TRAINING: ["results/v0/report/train_loss.png"],
    }
    for category, paths in expected.items():
        assert sorted(categories[category]["v0"]) == sorted(paths)
        for path in paths:
            # self-contained: the file itself travels inside the page
            assert decode_data_uri(results[path]["data_uri"]) == (report_run / path).read_bytes()
            assert results[path]["caption"], f"{path} has no caption"
    card = decode_data_uri(results["results/v0/report/card.html"]["data_uri"]).decode()
    assert "Study version v0" in card and "hi4d_pair02_dance" in card
    # the control arm (on in the small study): stated on the card, charted and explained in the captions
    assert "control arm" in card and "difix_control/triplets.json" in card  # the fresh out-of-domain triplets
    # the effective batch of the run that made the tuned model (one CPU process here)
    assert "<th>effective batch, tuning</th><td><code>" in card and "(1 process x batch_size" in card
    assert "tuned − control (diamonds" in results["results/v0/report/metrics.png"]["caption"]
    assert "tuned_vs_control" in results["results/v0/deltas.csv"]["caption"]
    assert "control" in results["results/v0/report/train_loss.png"]["caption"]
    assert "hi4d_pair16_jump" in results["results/v0/report/metrics.png"]["caption"]  # Jinja filled from config
    assert "Version v0" in json.loads(re.search(r"var workflow_desc = (\".*?\");\n", page, re.S).group(1))


def test_report_items_are_real_pictures(report_run):
    gallery = iio.imread(report_run / "results/v0/report/gallery.png")
    views = iio.imread(report_run / "results/v0/report/before_after/hi4d_pair15_fight.png")
    for image in (gallery, views):
        assert image.shape[1] <= MAX_SIZE_PX[0] and image.shape[0] <= MAX_SIZE_PX[1]
        assert image[..., :3].std() > 20  # tiles of renders on white, not an empty canvas
    log = pd.read_csv(report_run / "results/v0/difix/train_log.csv")
    assert len(log) == 4  # the loss curve's source: the small config tunes 4 steps


# ---- in a browser -------------------------------------------------------------------------------

BROWSER_SIZE = (1600, 1000)

# Scripts appended to a copy of the report. They show an image result the way the report's own view
# button does (App.setView with the embedded data URI) and wait until the browser has decoded it.
# Headless Chromium's virtual time jumps to the end of its budget whenever no timer is pending, so a
# heartbeat timer runs while they work; once they stop it, the page is dumped or shot at once.
PROBE_HELPERS = """
const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const heartbeat = setInterval(() => {}, 10);

function report(data) {  // where the test reads it: the dumped DOM
  const out = document.createElement("pre");
  out.id = "probe-result";
  out.textContent = JSON.stringify(data);
  document.body.appendChild(out);
  clearInterval(heartbeat);
}

async function showImage(path) {
  while (typeof app === "undefined" || app === undefined) { await wait(20); }
  const entry = results[path];
  app.setView({content: "img", contentPath: entry.data_uri, resultPath: path});
  for (let i = 0; i < 500; i++) {
    await wait(20);
    const img = Array.from(document.querySelectorAll("#app img")).find((el) => el.src === entry.data_uri);
    if (img) { await img.decode().catch(() => {}); return img; }
  }
  return null;
}
"""

IMAGE_PROBE = (
    """
<script>
%s
(async function () {
  const checks = {};
  try {
    for (const [path, entry] of Object.entries(results)) {
      if (!entry.mime_type.startsWith("image/")) continue;
      const img = await showImage(path);
      const rect = img && img.getBoundingClientRect();
      checks[path] = img && {complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
                             top: rect.top, left: rect.left, bottom: rect.bottom, right: rect.right};
    }
  } finally {
    report({checks: checks, viewport: [innerWidth, innerHeight]});
  }
})();
</script>
"""
    % PROBE_HELPERS
)

DESCRIPTION_PROBE = (
    """
<script>
%s
(async function () {
  let description;
  for (let i = 0; i < 500 && !description; i++) {
    await wait(20);
    description = document.querySelector("#app .prose");
  }
  const rect = description ? description.getBoundingClientRect() : {top: NaN, bottom: NaN};
  report({top: rect.top, bottom: rect.bottom, viewport: [innerWidth, innerHeight]});
})();
</script>
"""
    % PROBE_HELPERS
)

SHOW_RESULT = (
    """
<script>
%s
showImage(%%s).finally(() => clearInterval(heartbeat));
</script>
"""
    % PROBE_HELPERS
)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={BROWSER_SIZE[0]},{BROWSER_SIZE[1]}",
        "--hide-scrollbars",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=600000",
    ]
    result = subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def probe_result(dom: str):
    match = re.search(r'<pre id="probe-result">(.*?)</pre>', dom, re.S)
    assert match, "the probe did not finish within the browser's time budget"
    return json.loads(html.unescape(match.group(1)))


def with_script(report: Path, script: str, out: Path) -> Path:
    head, tag, tail = report.read_text().rpartition("</body>")  # the page's own; its scripts hold others
    assert tag, f"{report}: no </body>"
    out.write_text(f"{head}{script}\n{tag}{tail}")
    return out


def assert_has_content(screenshot: Path, region=None) -> np.ndarray:
    image = iio.imread(screenshot)[..., :3].astype(float)
    assert image.shape[:2] == (BROWSER_SIZE[1], BROWSER_SIZE[0])
    part = image if region is None else image[region]
    colours = len(np.unique(part.reshape(-1, 3), axis=0))
    assert part.std() > 20 and colours > 50, f"{screenshot}: looks blank (std {part.std():.1f}, {colours} colours)"
    return image


def test_landing_page_renders_the_study_description(report_run, tmp_path):
    report = report_run / "results/v0/report.html"
    dom = chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    assert '<div id="loading-screen" style="display: none;">' in dom  # the app's scripts ran
    assert "Version v0" in dom and "hi4d_pair02_dance" in dom  # the description, rendered by the app
    for category in CATEGORIES:
        assert category in dom  # menu entries
    # The app centres the description in a box as high as the window: a long one loses its top.
    probe = with_script(report, DESCRIPTION_PROBE, tmp_path / "probe.html")
    probed = probe_result(chromium(tmp_path, "--dump-dom", probe.as_uri()).stdout)
    assert probed["top"] >= 0 and probed["bottom"] <= probed["viewport"][1], probed
    shot = tmp_path / "landing.png"
    chromium(tmp_path, f"--screenshot={shot}", report.as_uri())
    image = assert_has_content(shot)
    # The description column (right of the menu) holds dark text on white.
    text = image[60:700, 340:840]
    dark = (text.mean(axis=-1) < 100).mean()
    assert 0.005 < dark < 0.5, f"description column: {dark:.3f} dark pixels"


def test_every_image_renders_whole_in_the_report(report_run, tmp_path):
    report = report_run / "results/v0/report.html"
    probe = with_script(report, IMAGE_PROBE, tmp_path / "probe.html")
    probed = probe_result(chromium(tmp_path, "--dump-dom", probe.as_uri()).stdout)
    width, height = probed["viewport"]
    images = sorted(p for p in (report_run / "results/v0/report").rglob("*.png"))
    assert sorted(probed["checks"]) == sorted(str(p.relative_to(report_run)) for p in images)
    for path, check in probed["checks"].items():
        assert check is not None, f"{path}: no <img> appeared"
        shape = iio.imread(report_run / path).shape
        assert check["complete"] and (check["height"], check["width"]) == shape[:2], f"{path}: broken image {check}"
        # shown whole and at full size: nothing cut above or left (the report centres images), nothing
        # past the window (here about 1600 x 860, a laptop's browser), not shrunk
        assert check["top"] >= 0 and check["left"] >= 0, f"{path}: cut at the top/left {check}"
        assert check["bottom"] <= height and check["right"] <= width, f"{path}: larger than the window {check}"
        assert check["right"] - check["left"] == pytest.approx(shape[1], abs=1), f"{path}: scaled {check}"


def test_metric_chart_view_screenshot(report_run, tmp_path):
    report = report_run / "results/v0/report.html"
    page = with_script(report, SHOW_RESULT % json.dumps("results/v0/report/metrics.png"), tmp_path / "chart.html")
    shot = tmp_path / "chart.png"
    chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    image = assert_has_content(shot)
    chart = iio.imread(report_run / "results/v0/report/metrics.png")[..., :3].astype(float)
    # the chart's own colours (tuned orange, base blue bars) are on screen
    for colour in ((0xF5, 0x85, 0x18), (0x4C, 0x78, 0xA8)):
        on_chart = np.all(np.abs(chart - colour) < 3, axis=-1).sum()
        on_screen = np.all(np.abs(image - colour) < 3, axis=-1).sum()
        assert on_chart > 0 and on_screen >= 0.95 * on_chart, (
            f"bar colour {colour}: {on_screen} of {on_chart} pixels shown"
        )


def test_metric_charts_draw_the_seed_spread_where_the_table_has_it():
    deltas = make_deltas()
    plain = metric_bars(deltas)
    seeded = deltas.assign(seeds=3, seed_sd=0.05)
    figure = metric_bars(seeded)
    count = lambda fig: sum(len(ax.containers) for ax in fig.axes)  # noqa: E731
    assert count(figure) == 2 * count(plain)  # each interval gets its seed bracket
    brackets = [c for ax in figure.axes for c in ax.containers if c.lines[0] is None]
    (_, low), (_, high) = brackets[0].lines[2][0].get_segments()[0]
    assert high - low == pytest.approx(0.1)


def test_every_verdict_has_its_own_colour_and_the_grid_chart_shares_them():
    """A reader tells the verdicts apart by colour alone: the three "no test could reach alpha" verdicts too."""
    from hi4dfix.report import compare_figures

    assert len(set(VERDICT_COLORS.values())) == len(VERDICT_COLORS)
    shared = set(compare_figures.VERDICT_COLORS) & set(VERDICT_COLORS)
    assert len(shared) == 6 and all(compare_figures.VERDICT_COLORS[v] == VERDICT_COLORS[v] for v in shared)
    assert len(set(compare_figures.VERDICT_COLORS.values())) == len(compare_figures.VERDICT_COLORS)
