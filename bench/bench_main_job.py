"""The main job on the embedded default: wall time, the slowest jobs, and whether the base arm is credible.

    python bench/bench_main_job.py [--workdir DIR] [--append BENCHMARKS.md]

Runs ``snakemake --cores 2 results/v0/deltas.csv`` in ``--workdir`` (default: the repository, whose
``results/`` must not exist yet, so that every job runs) and reads what it wrote: Snakemake's benchmark
files, the base model's out-of-domain test summary and the v0 delta table (with the control arm's two
comparisons and job seconds when it is on). The base arm's goals (issue 13):
on its own out-of-domain test split base beats raw by at least 0.5 dB PSNR; on v0's reserved scenes base
PSNR is at least raw - 1 dB and SSIM at least raw - 0.03; tuned beats base.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from hi4dfix.tables import read_delta_csv  # noqa: E402
from record import append_markdown  # noqa: E402


def job_seconds(results: Path) -> pd.DataFrame:
    """Wall seconds of every job, from Snakemake's benchmark files (``results/benchmarks/{rule}/...``)."""
    rows = []
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(results / "benchmarks").parts[0]
        rows.append(
            {
                "rule": rule,
                "job": tsv.relative_to(results / "benchmarks").as_posix(),
                "s": float(pd.read_csv(tsv, sep="\t")["s"].iloc[0]),
            }
        )
    return pd.DataFrame(rows)


def ood_summary(results: Path) -> dict[str, dict]:
    """The rows of the base model's out-of-domain test summary (``ood_test.md``'s table), by metric."""
    lines = [
        line for line in (results / "difix_base/tiny/ood_test.md").read_text().splitlines() if line.startswith("|")
    ]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
    return {row["metric"]: row for row in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO)
    parser.add_argument("--append", type=Path, help="append the tables to this markdown file")
    args = parser.parse_args()
    results = args.workdir / "results"
    if results.exists():
        parser.error(f"{results} exists: the benchmark times a run of every job (use a fresh clone or --workdir)")
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(args.workdir),
        "--cores",
        "2",
        "results/v0/deltas.csv",
        # the Snakefile names config/config.yaml relative to the working directory (-d)
        "--configfile",
        str(REPO / "config" / "config.yaml"),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started

    jobs = job_seconds(results)
    per_rule = jobs.groupby("rule")["s"].agg(["count", "sum", "max"]).sort_values("sum", ascending=False)
    ood = ood_summary(results)
    deltas = read_delta_csv(results / "v0/deltas.csv")
    mean = deltas[deltas.scene == "mean"].set_index(["metric", "comparison"])

    def delta(metric: str, comparison: str) -> str:
        row = mean.loc[(metric, comparison)]
        return f"{row.delta:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}] ({row.verdict})"

    goals = [
        (
            "out-of-domain test: base - raw PSNR (dB), goal >= +0.5",
            f"{float(ood['psnr']['delta']):+.3f} "
            f"[{float(ood['psnr']['ci_low']):+.3f}, {float(ood['psnr']['ci_high']):+.3f}]",
            float(ood["psnr"]["delta"]) >= 0.5,
        ),
        ("out-of-domain test: base - raw SSIM", f"{float(ood['ssim']['delta']):+.4f}", None),
        (
            "reserved scenes: base - raw PSNR (dB), goal >= -1.0",
            delta("psnr", "base_vs_raw"),
            mean.loc[("psnr", "base_vs_raw")].delta >= -1.0,
        ),
        (
            "reserved scenes: base - raw SSIM, goal >= -0.03",
            delta("ssim", "base_vs_raw"),
            mean.loc[("ssim", "base_vs_raw")].delta >= -0.03,
        ),
        (
            "reserved scenes: tuned - base PSNR (dB), goal > 0",
            delta("psnr", "tuned_vs_base"),
            mean.loc[("psnr", "tuned_vs_base")].delta > 0,
        ),
        ("reserved scenes: tuned - base SSIM", delta("ssim", "tuned_vs_base"), None),
        ("reserved scenes: tuned - raw PSNR (dB)", delta("psnr", "tuned_vs_raw"), None),
    ]
    if ("psnr", "tuned_vs_control") in mean.index:  # the control arm (difix.control): what it isolates
        goals += [
            ("reserved scenes: tuned - control PSNR (dB)", delta("psnr", "tuned_vs_control"), None),
            ("reserved scenes: control - base PSNR (dB)", delta("psnr", "control_vs_base"), None),
        ]
    lines = ["| what | figure | goal met |", "| --- | ---: | --- |"]
    lines.append(
        f"| wall time, {len(jobs)} jobs | {int(wall // 60)} min {wall % 60:.0f} s "
        f"| {'yes' if wall <= 480 else 'no'} (<= 8 min) |"
    )
    for rule, row in per_rule.head(4).iterrows():
        jobs_label = f"{int(row['count'])} job{'s' if row['count'] != 1 else ''}"
        lines.append(f"| `{rule}` ({jobs_label}) | {row['sum']:.0f} s in all, longest {row['max']:.0f} s | |")
    control = jobs[jobs["job"].str.contains("control")]  # tune_control and the control's evaluate_nvs jobs
    if len(control):
        lines.append(f"| the control arm's jobs ({len(control)}) | {control['s'].sum():.0f} s in all | |")
    for what, figure, met in goals:
        lines.append(f"| {what} | {figure} | {'' if met is None else 'yes' if met else 'no'} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.append:
        append_markdown(args.append, "Main job on the embedded default: time and the base arm's credibility", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
