"""The end-of-job summary: one short screenful of the primary comparisons' mean rows, and where things are."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from hi4dfix.report.summary import format_interval, interval_digits, main_job_summary, mean_row_lines, run_summary
from hi4dfix.tables import write_csv

COMPARISONS = ("tuned_vs_base", "tuned_vs_raw", "base_vs_raw", "tuned_vs_control", "control_vs_base")


def delta_rows(scenes, psnr=(0.3, 0.19, 0.38), lpips=False, metrics=("psnr", "ssim", "lpips")) -> pd.DataFrame:
    rows = []
    for scene in [*scenes, "mean"]:
        for metric in metrics:
            for k, comparison in enumerate(COMPARISONS):
                computed = metric != "lpips" or lpips
                values = psnr if metric == "psnr" else (0.004, 0.0012, 0.0067)
                delta, low, high = values if computed else (np.nan,) * 3
                rows.append({
                    "scene": scene, "metric": metric, "comparison": comparison,
                    "raw": 25.0, "base": 26.0, "tuned": 26.3, "control": 26.1,
                    "delta": delta + k if computed else np.nan, "ci_low": low + k if computed else np.nan,
                    "ci_high": high + k if computed else np.nan, "n_frames": 3, "n_views": 21,
                    "verdict": "improved" if computed else "",
                    "note": "" if computed else "lpips not computed (LPIPS AlexNet weights not cached)",
                    "unit": "across 2 scenes" if scene == "mean" else f"within {scene} only",
                    "test": "sign-flip" if scene == "mean" else "t on batches of frames",
                    "p_value": 0.01 if computed else np.nan, "p_holm": 0.03 if computed else np.nan,
                })  # fmt: skip
    return pd.DataFrame(rows)


def test_interval_digits_show_the_width_of_a_narrow_interval():
    # the case: two decimals printed +1.51 [+1.51, +1.51] for 1.5052-1.5135
    assert format_interval("psnr", 1.5094, 1.5052, 1.5135) == "+1.509 [+1.505, +1.514]"
    assert format_interval("psnr", 0.2986, 0.1888, 0.3846) == "+0.30 [+0.19, +0.38]"  # wide: the usual 2
    assert interval_digits("ssim", 0.00038, 0.000205, 0.00057) == 4
    # ends 1e-7 apart: three more digits at most
    assert format_interval("ssim", 0.0003806, 0.0002051, 0.0002052) == "+0.0003806 [+0.0002051, +0.0002052]"
    assert format_interval("psnr", float("nan"), float("nan"), float("nan")) == "n/a"


def test_main_job_summary_is_one_short_screen_of_mean_rows_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the workflow's results/ is relative to the working directory
    scenes = ["hi4d_pair15_fight", "hi4d_pair16_jump"]
    write_csv(tmp_path / "results" / "v0" / "deltas.csv", delta_rows(scenes))
    evaluation = delta_rows(["hi4d_pair02_dance"], psnr=(0.5, 0.46, 0.58))
    write_csv(tmp_path / "results" / "v0" / "difix" / "eval_deltas.csv", evaluation)
    text = main_job_summary("results", "v0")
    lines = text.splitlines()
    assert len(lines) <= 24 and max(map(len, lines)) <= 120  # a screenful, not 300-character tables
    assert lines[0].startswith("v0: novel views of 2 reserved scenes, tuned − base: mean over scenes")
    assert "  PSNR (dB) ↑   tuned − base      +0.30 [+0.19, +0.38]          improved" in lines
    assert "control − base" not in text  # the study's question only; deltas.md has every comparison
    assert "  LPIPS ↓: not computed (lpips not computed (LPIPS AlexNet weights not cached))" in lines
    assert "hi4d_pair15_fight" not in text  # mean rows only
    assert "v0: internal evaluation (hi4d_pair02_dance), tuned − base" in lines
    assert "  PSNR (dB) ↑   tuned − base      +0.50 [+0.46, +0.58]          improved" in lines
    assert "every comparison, per scene and with notes: results/v0/deltas.md" in text
    assert "results/v0/difix/eval_deltas.md" in text
    assert "snakemake --report results/v0/report.html results/v0/deltas.csv" in text


def test_summary_columns_stay_aligned_for_titles_longer_than_fourteen_characters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    long_titles = ("psnr", "psnr_person", "flicker_flow", "flicker_flow_person", "ssim")  # up to 32 characters
    write_csv(tmp_path / "results" / "v0" / "deltas.csv", delta_rows(["hi4d_pair15_fight"], metrics=long_titles))
    evaluation = delta_rows(["hi4d_pair02_dance"], metrics=("psnr", "ssim"))  # short titles only
    write_csv(tmp_path / "results" / "v0" / "difix" / "eval_deltas.csv", evaluation)
    lines = main_job_summary("results", "v0").splitlines()
    rows = [line for line in lines if line.endswith("improved")]
    assert len(rows) == 5 + 2
    assert any(line.startswith("  flicker (flow-warped) (people) ↓  tuned − base") for line in rows)
    # the comparison, interval and verdict start in the same column on every line, of both tables
    for column in ("tuned − base", "+", "improved"):
        assert len({line.index(column) for line in rows}) == 1, (column, rows)
    assert rows[0].index("tuned − base") == len("  flicker (flow-warped) (people) ↓  ")
    # every comparison of a metric: the title once, the other lines indented to the same columns
    table = delta_rows(["hi4d_pair15_fight"], metrics=("flicker_flow_person",))
    block = mean_row_lines(table)
    assert len(block) == 5 and block[0].startswith("  flicker (flow-warped) (people) ↓  tuned − base ")
    start = len("  flicker (flow-warped) (people) ↓  ")
    assert all(line[start - 1] == " " and line[start] != " " for line in block)
    assert block[1][:start].isspace() and block[1][start:].startswith("tuned − raw")
    assert len({line.index(" [") for line in block}) == 1


def test_run_summary_prints_this_runs_versions_compactly_beyond_two(tmp_path):
    for version in ("v0", "memo.a", "memo.b"):
        write_csv(tmp_path / version / "deltas.csv", delta_rows(["hi4d_pair15_fight"]))
    old = tmp_path / "old" / "deltas.csv"
    write_csv(old, delta_rows(["hi4d_pair15_fight"]))
    os.utime(old, (1000.0, 1000.0))
    since = old.stat().st_mtime + 1
    text = run_summary(tmp_path, ["v0", "memo.a", "memo.b", "old", "never"], since=since)
    assert text.splitlines()[0] == "3 versions' delta tables, tuned − base (mean over scenes):"
    assert "  memo.a: psnr +0.30 [+0.19, +0.38] improved; ssim +0.0040 [+0.0012, +0.0067] improved" in text
    assert "old" not in text and "never" not in text  # not made by this run / not made at all
    detailed = run_summary(tmp_path, ["v0", "old"], since=since)
    assert detailed.startswith("v0: novel views of 1 reserved scenes") and f"{tmp_path}/logs/" in detailed
    assert run_summary(tmp_path, ["never"]) == ""


def test_delta_markdown_becomes_an_inline_html_page():
    from hi4dfix.report.markdown_html import markdown_html
    from hi4dfix.stats import BootstrapConfig
    from hi4dfix.tables import delta_markdown

    markdown = delta_markdown(delta_rows(["hi4d_pair15_fight"]), BootstrapConfig(), title="v0: <novel> views")
    page = markdown_html(markdown + "\nProvenance: `results/v0/provenance.json`.\n", "v0 deltas")
    assert page.startswith("<!doctype html>") and "<script" not in page
    assert "<h2>v0: &lt;novel&gt; views</h2>" in page  # escaped
    assert page.count("<table>") == 3 and "<p><strong>PSNR (dB) ↑</strong></p>" in page  # a table a metric
    assert '<td class="num">+0.30 [+0.19, +0.38]</td>' not in page  # intervals are text, left-aligned
    assert "<td>+0.30 [+0.19, +0.38]</td>" in page and '<td class="improved">improved</td>' in page
    assert '<td class="num">26.3000</td>' in page or '<td class="num">26.30</td>' in page
    assert "<code>results/v0/provenance.json</code>" in page
