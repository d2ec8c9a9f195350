"""Helpers of bench/gpu/study_run.sh, the full-size study through Snakemake on one GPU machine.

    python bench/gpu/study.py base DIR [--preset sd-turbo] [--device auto]
        a DiFix base folder in nvidia/difix_ref's layout with RANDOM weights (the real ones cannot be
        downloaded there); its hi4dfix_config.json names the folder itself as the SD-Turbo source,
        so the tuned model.pkl is rebuilt from it offline
    python bench/gpu/study.py standins TORCH_HOME
        RANDOM stand-ins for torchvision's VGG16 and AlexNet ImageNet weights at the torch hub cache
        paths hi4dfix reads (LPIPS and Gram losses, the LPIPS metric): the code path runs, the
        values mean nothing
    python bench/gpu/study.py overlay OUT.yaml [options]
        the run's config overlay (applied after config/config.yaml and bench/gpu/fullsize.yaml)
    python bench/gpu/study.py summary WORKDIR RUN_DIR
        RUN_DIR/summary.md: per job wall time and peak RSS (Snakemake's benchmark files), peak GPU
        memory (the "GPU peak memory" lines of the job logs), start and end from Snakemake's log,
        the stages outside Snakemake, the GPU monitor, tuning and DiFix timing
    python bench/gpu/study.py compare COLD_RUN WARM_RUN [--out compare.md]
        the two runs of `study_run.sh pair` side by side: the stages' wall times and their ratio
        (issue 38's goal: warm at most half the cold), and every GPU job's wall time and first step
        (tuning: the first training step; evaluation: the first DiFix batch, with any compilation)
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # imported where used: the module's start stays light
    from hi4dfix.difix.config import DifixConfig

REPO = Path(__file__).resolve().parents[2]
STANDIN_NOTE = "RANDOM_WEIGHTS_README.txt"


# ---------------------------------------------------------------------------------------- base


def base_config(out_dir: Path, preset: str) -> "DifixConfig":
    """The base's DifixConfig: the folder is its own SD-Turbo source (``base_model_id``), so the
    sd-turbo pkls tuned from it (which hold the UNet and the VAE adapters only) are rebuilt on it
    offline rather than on stabilityai/sd-turbo from the Hub."""
    from hi4dfix.difix.config import DifixConfig

    return DifixConfig(preset=preset, base_model_id=str(out_dir.resolve()))


def build_base(out_dir: Path, preset: str, device: str) -> None:
    import torch

    from hi4dfix.difix.model import build_random_difix, describe
    from hi4dfix.difix.pretrained_dir import save_pretrained_dir

    out_dir = out_dir.resolve()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    config = base_config(out_dir, preset)
    started = time.perf_counter()
    try:
        with torch.device(device):  # random initialisation on a GPU takes a fraction of the CPU's time
            model = build_random_difix(config)
    except Exception as exc:  # noqa: BLE001 - any failure on the GPU: the CPU still builds it
        if device == "cpu":
            raise
        print(f"building on {device} failed ({exc}); building on the CPU", flush=True)
        device = "cpu"
        model = build_random_difix(config)
    built = time.perf_counter()
    save_pretrained_dir(model.to("cpu"), out_dir)
    saved = time.perf_counter()
    (out_dir / STANDIN_NOTE).write_text(
        f"Random weights (hi4dfix.difix.model.build_random_difix, preset {preset}, init_seed "
        f"{config.init_seed}), written by bench/gpu/study.py for a timing run: not a trained DiFix.\n"
    )
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    print(describe(model))
    print(f"base {preset} built on {device} in {built - started:.1f} s, saved to {out_dir} in "
          f"{saved - built:.1f} s ({size / 1e9:.2f} GB)", flush=True)


# ---------------------------------------------------------------------------------------- stand-ins


def write_standins(torch_home: Path) -> None:
    """Random state dicts with torchvision's keys where hi4dfix looks (TORCH_HOME is set first)."""
    import os

    os.environ["TORCH_HOME"] = str(torch_home.resolve())
    import torch
    from torchvision.models import alexnet, vgg16

    from hi4dfix.difix.losses import cached_backbone_path
    from hi4dfix.metrics import lpips_weight_path

    torch.manual_seed(0)
    targets = {cached_backbone_path("vgg"): vgg16, cached_backbone_path("alex"): alexnet, lpips_weight_path(): alexnet}
    for path, builder in targets.items():
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        torch.save(builder(weights=None).state_dict(), path)
        print(f"RANDOM stand-in {path} ({path.stat().st_size / 1e6:.0f} MB, {time.perf_counter() - started:.1f} s)")
        (path.parent / STANDIN_NOTE).write_text(
            "The .pth files here are RANDOM weights with torchvision's keys (bench/gpu/study.py standins): "
            "they let the LPIPS/Gram losses and the LPIPS metric run offline; their values mean nothing.\n"
        )


# ---------------------------------------------------------------------------------------- overlay


def parse_optional_int(value: str) -> int | None:
    return None if value.lower() in ("null", "none", "") else int(value)


def parse_bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def overlay_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run-specific config keys (every option written, defaults included, so the file says
    what ran). ``data_only``: what the data stage needs while the base and stand-ins are built."""
    tuning: dict[str, Any] = {
        "steps": args.steps,
        "compile": args.tune_compile,
        "mixed_precision": args.mixed_precision,
        "gram_warmup_steps": args.gram_warmup_steps if args.gram_warmup_steps is not None else args.steps // 2,
        "num_workers": args.loader_workers,
    }
    compile_setting = args.infer_compile if args.infer_compile == "auto" else parse_bool(args.infer_compile)
    difix: dict[str, Any] = {
        "base": str(Path(args.base).resolve()),
        "preset": args.preset,
        "long_side": args.long_side,
        "inference": {"compile": compile_setting},
    }
    if args.compile_cache_dir is not None:
        difix["compile_cache_dir"] = str(Path(args.compile_cache_dir).resolve())
    config: dict[str, Any] = {
        "data": {"synthetic": {"width": args.width, "height": args.height, "num_frames": args.frames}},
        "materialize": {"max_frames": args.frames},
        "render_profiles": {
            "imperfect": {"backend": args.render_backend, "fit_steps": args.fit_steps, "num_gaussians": args.gaussians}
        },
        "difix": difix,
        "metrics": {"require_lpips": True},
        "versions": {},
    }
    from hi4dfix.study import Study  # noqa: F401  (fails early when PYTHONPATH misses the repo)

    base_config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for version in base_config["versions"]:
        block: dict[str, Any] = {"tuning": dict(tuning)}
        if args.eval_samples is not None:
            block["triplets"] = {"max_samples": args.eval_samples}
        config["versions"][version] = block
    if args.data_only:
        # The data stage's DAG is built before the base folder and the stand-ins exist: a local
        # base and no pretrained weights, so no check at DAG build looks for them. The data rules'
        # params do not include these keys, so the full run does not redo the data jobs.
        config["difix"] = {"base": "pretrain", "preset": "tiny"}
        config["metrics"] = {"require_lpips": False}
        for block in config["versions"].values():
            block["tuning"] = {**block["tuning"], "lambda_lpips": 0.0, "lambda_gram": 0.0}
    return config


def write_overlay(args: argparse.Namespace) -> None:
    config = overlay_config(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# written by bench/gpu/study.py overlay "
        + " ".join(sys.argv[3:])
        + "\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    print(args.out.read_text())


# ---------------------------------------------------------------------------------------- summary

PEAK = re.compile(r"GPU peak memory \(cuda:(\d+)\): max_allocated ([\d.]+) GiB, max_reserved ([\d.]+) GiB")
VIEW_TIMING = re.compile(r"(\d+(?:\.\d+)?) ms/view")
LOG_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE_LINE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
JOBID_LINE = re.compile(r"^\s+jobid: (\d+)$")
WILDCARDS_LINE = re.compile(r"^\s+wildcards: (.*)$")
FINISHED_LINE = re.compile(r"^Finished job(?:id)?:? (\d+)")
RESOURCES_LINE = re.compile(r"^\s+resources: (.*)$")
BENCHMARK_LINE = re.compile(r"^\s+benchmark: (?:.*/)?results/benchmarks/(.*)\.tsv$")
ERROR_LINE = re.compile(r"^Error in rule (\w+):")


def read_benchmarks(results: Path) -> dict[str, dict[str, str]]:
    """Benchmark rows by job key ``rule/wildcard/path`` (the TSV path under results/benchmarks)."""
    rows = {}
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        with path.open(newline="") as fh:
            records = list(csv.DictReader(fh, delimiter="\t"))
        if records:
            rows[str(path.relative_to(results / "benchmarks").with_suffix(""))] = records[-1]
    return rows


def read_gpu_peaks(results: Path) -> dict[str, tuple[float, float]]:
    """(max allocated, max reserved) GiB by job key, from the logs' "GPU peak memory" lines
    (the largest over devices and lines, e.g. several processes of one job)."""
    peaks = {}
    for path in sorted((results / "logs").rglob("*.log")):
        found = [(float(m[2]), float(m[3])) for m in PEAK.finditer(path.read_text(errors="replace"))]
        if found:
            peaks[str(path.relative_to(results / "logs").with_suffix(""))] = (
                max(a for a, _ in found),
                max(r for _, r in found),
            )
    return peaks


def read_job_times(workdir: Path) -> dict[str, dict[str, float]]:
    """Start and end of each job, by the key its benchmark file has (``rule/wildcard/values``),
    from Snakemake's logs: a ``[date]`` line, then ``rule NAME:`` with ``jobid:`` and
    ``wildcards:`` lines; later ``[date]`` and ``Finished jobid: N``."""
    times: dict[str, dict[str, float]] = {}
    for log in sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log")):
        stamp, current, by_id = None, None, {}
        for line in log.read_text(errors="replace").splitlines():
            if m := LOG_STAMP.match(line):
                stamp = dt.datetime.strptime(" ".join(m[1].split()), "%a %b %d %H:%M:%S %Y").timestamp()
                current = None
            elif m := RULE_LINE.match(line):
                current = {"rule": m[1], "start": stamp, "values": []}
            elif current is not None and (m := JOBID_LINE.match(line)):
                by_id[m[1]] = current
            elif current is not None and (m := WILDCARDS_LINE.match(line)):
                current["values"] = [part.split("=", 1)[1] for part in m[1].split(", ") if "=" in part]
            elif current is not None and (m := BENCHMARK_LINE.match(line)):
                current["benchmark"] = m[1]  # the key itself (a rule without wildcards names none)
            elif current is not None and (m := RESOURCES_LINE.match(line)):
                granted = dict(part.split("=", 1) for part in m[1].split(", ") if "=" in part)
                if granted.get("mem_mb", "").isdigit():
                    current["mem_mb"] = float(granted["mem_mb"])
            elif (m := FINISHED_LINE.match(line)) and m[1] in by_id:
                by_id[m[1]]["end"] = stamp
        for job in by_id.values():
            key = job.get("benchmark") or "/".join([job["rule"], *job["values"]])
            times[key] = {"start": job["start"], **{k: job[k] for k in ("end", "mem_mb") if k in job}}
    return times


def read_host_memory(run: Path) -> dict[str, dict[str, float]]:
    """Peak summed PSS (and the summed RSS at that sample) MiB by job key, from pss_sampler.py's TSV."""
    path = run / "logs" / "host_memory.tsv"
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {
            row["job"]: {"pss": float(row["peak_pss_mib"]), "rss": float(row["rss_sum_at_peak_mib"])}
            for row in csv.DictReader(fh, delimiter="\t")
        }


def read_stages(run: Path) -> list[tuple[str, float, float, int]]:
    stages = []
    path = run / "stages.tsv"
    if path.is_file():
        for line in path.read_text().splitlines():
            name, start, end, rc = line.split("\t")
            stages.append((name, float(start), float(end), int(rc)))
    return stages


def gpu_monitor_summary(run: Path) -> str | None:
    path = run / "logs" / "gpu_monitor.csv"
    if not path.is_file():
        return None
    used, util = [], []
    for row in csv.reader(path.read_text().splitlines()):
        try:
            util.append(float(row[1]))
            used.append(float(row[2]))
        except (IndexError, ValueError):
            continue
    if not used:
        return None
    busy = sum(u > 0 for u in util) / len(util)
    return (
        f"nvidia-smi every 2 s, {len(used)} samples: GPU memory used max {max(used) / 1024:.1f} GiB; "
        f"utilisation mean {sum(util) / len(util):.0f}%, non-zero in {100 * busy:.0f}% of samples"
    )


def tuning_lines(results: Path) -> list[str]:
    lines = []
    # a folder per fingerprint of data and settings under work/ (hi4dfix.difix.train)
    # (the control arm's under difix/control/, a further seed's in its seed folder)
    for summary_path in sorted(results.glob("*/difix/**/work/*/summary.json")):
        summary = json.loads(summary_path.read_text())
        version = "/".join(summary_path.relative_to(results).parts[:-3]).replace("/difix", "")
        config = summary.get("config", {})
        lines.append(
            f"- {version}: {summary['steps']} steps at {summary.get('resolution')} (compile {config.get('compile')}, "
            f"{config.get('mixed_precision')}), "
            f"mean step {1000 * (summary.get('mean_step_time_s') or float('nan')):.1f} ms "
            "after the first"
        )
        train_log = summary_path.parent / "train_log.csv"
        if train_log.is_file():
            with train_log.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows:
                times = [float(r["step_time_s"]) for r in rows]
                lines.append(
                    f"  first step (compilation, CUDA graph capture, first Gram/LPIPS set-up) {times[0]:.1f} s; "
                    f"last loss {float(rows[-1]['loss']):.4f}; total {float(rows[-1]['elapsed_s']):.1f} s in the loop"
                )
    return lines


def fmt(value: Any, digits: int = 1) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "-"


def write_summary(workdir: Path, run: Path) -> Path:
    results = workdir / "results"
    bench = read_benchmarks(results)
    peaks = read_gpu_peaks(results)
    jobs = read_job_times(workdir)
    host = read_host_memory(run)
    stages = read_stages(run)
    t0 = min([s[1] for s in stages] or [time.time()])
    lines = ["# Full-size study on the GPU machine (bench/gpu/study_run.sh)", ""]
    env = run / "environment.txt"
    if env.is_file():
        lines += ["```", env.read_text().strip(), "```", ""]
    overlay = run / "overlay.yaml"
    if overlay.is_file():
        lines += [
            "Config: config/config.yaml, bench/gpu/fullsize.yaml, then this overlay:",
            "",
            "```yaml",
            overlay.read_text().strip(),
            "```",
            "",
        ]
    lines += [
        "LPIPS/Gram backbones (VGG16, AlexNet) and the DiFix base are RANDOM stand-ins (the real weights",
        "cannot be downloaded there): timings and memory are real, metric values and deltas mean nothing.",
        "",
        "## Stages (driver)",
        "",
        "| stage | start s | end s | wall s | exit |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, start, end, rc in stages:
        lines.append(f"| {name} | {start - t0:.0f} | {end - t0:.0f} | {end - start:.1f} | {rc} |")
    lines += [
        "",
        "## Jobs (Snakemake benchmark files, job logs, Snakemake's log)",
        "",
        "Times from the driver's start; wall s and max RSS from the benchmark file; peak GPU memory "
        "from the job log (max allocated / max reserved by PyTorch; none: the job did not use CUDA); "
        "peak PSS: the job's processes summed, sampled every 2 s (pss_sampler.py; -: too short to be "
        "sampled); mem_mb: what the job asked Snakemake for.",
        "",
        "| rule | wildcards | start s | end s | wall s | max RSS MiB | peak PSS MiB | mem_mb | cpu s "
        "| peak GPU GiB (alloc / reserved) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    keys = sorted(bench, key=lambda k: (jobs.get(k, {}).get("start") or float("inf"), k))
    totals: dict[str, list[float]] = {}
    per_rule: dict[str, dict[str, list[float]]] = {}
    for key in keys:
        row = bench[key]
        rule, _, rest = key.partition("/")
        start, end = jobs.get(key, {}).get("start"), jobs.get(key, {}).get("end")
        peak = peaks.get(key)
        peak_text = f"{peak[0]:.2f} / {peak[1]:.2f}" if peak else "none"
        lines.append(
            f"| {rule} | {rest or '-'} | {fmt(start - t0 if start else None, 0)} | {fmt(end - t0 if end else None, 0)} "
            f"| {fmt(row.get('s'))} | {fmt(row.get('max_rss'), 0)} | {fmt(host.get(key, {}).get('pss'), 0)} "
            f"| {fmt(jobs.get(key, {}).get('mem_mb'), 0)} | {fmt(row.get('cpu_time'))} | {peak_text} |"
        )
        totals.setdefault(rule, []).append(float(row.get("s") or 0))
        stats = per_rule.setdefault(rule, {"pss": [], "rss": [], "mem_mb": [], "alloc": [], "reserved": []})
        if key in host:
            stats["pss"].append(host[key]["pss"])
        if row.get("max_rss") not in (None, "", "-", "NA"):
            stats["rss"].append(float(row["max_rss"]))
        if "mem_mb" in jobs.get(key, {}):
            stats["mem_mb"].append(jobs[key]["mem_mb"])
        if peak:
            stats["alloc"].append(peak[0])
            stats["reserved"].append(peak[1])
    lines += ["", "| rule | jobs | wall s sum | wall s max |", "| --- | ---: | ---: | ---: |"]
    for rule, walls in sorted(totals.items(), key=lambda item: -sum(item[1])):
        lines.append(f"| {rule} | {len(walls)} | {sum(walls):.1f} | {max(walls):.1f} |")
    lines += [
        "",
        "## Memory by rule: measured peak against the request",
        "",
        "Largest over the rule's jobs. mem_mb / PSS: the request over the measured peak (goal: between 1 and "
        "1.5). The request is in MB, PSS in MiB (x 1.049 MB).",
        "",
        "| rule | jobs | peak PSS MiB | max RSS MiB (summed) | mem_mb requested | mem_mb / PSS "
        "| peak GPU GiB allocated | peak GPU GiB reserved |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def largest(values: list[float], digits: int = 0) -> str:
        return fmt(max(values), digits) if values else "-"

    for rule, stats in sorted(per_rule.items()):
        ratio = (
            f"{max(stats['mem_mb']) / (max(stats['pss']) * 1.048576):.2f}" if stats["pss"] and stats["mem_mb"] else "-"
        )
        lines.append(
            f"| {rule} | {len(totals[rule])} | {largest(stats['pss'])} | {largest(stats['rss'])} "
            f"| {largest(stats['mem_mb'])} | {ratio} | {largest(stats['alloc'], 2)} | {largest(stats['reserved'], 2)} |"
        )
    if monitor := gpu_monitor_summary(run):
        lines += ["", "## GPU monitor", "", monitor]
    if tune := tuning_lines(results):
        lines += ["", "## Tuning", "", *tune]
    timing = []
    for path in sorted((results / "logs").rglob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if "ms/view" in line or "views/s" in line:
                timing.append(f"- {path.relative_to(results / 'logs')}: {line.split(': ', 1)[-1].strip()}")
    if timing:
        lines += ["", "## DiFix inference timing (evaluation logs)", "", *timing]
    failed = [
        f"- {p.relative_to(results / 'logs')}"
        for p in sorted((results / "logs").rglob("*.log"))
        if "job failed" in p.read_text(errors="replace")
    ]
    if failed:
        lines += ["", "## Failed jobs (see their logs)", "", *failed]
    for version_deltas in sorted(results.glob("*/deltas.md")):
        lines += [
            "",
            f"## {version_deltas.parent.name} deltas (random weights: the numbers mean nothing)",
            "",
            version_deltas.read_text().strip(),
        ]
    out = run / "summary.md"
    out.write_text("\n".join(lines) + "\n")
    return out


# ---------------------------------------------------------------------------------------- cold vs warm

FIRST_BATCH = re.compile(r"first batches \((\d+) views, with any compilation\) ([\d.]+) s")
WARM_GOAL = 0.5  # issue 38: the run with the study cache kept takes at most half the cold one


def first_steps(results: Path) -> dict[str, float]:
    """Seconds of each GPU job's first step, by job key: an evaluation job's first DiFix batches (the
    largest over its lines: one line per arm of ``evaluate_difix``) from its log, and each tuning run's
    first training step from its ``train_log.csv`` (key: the job's, ``tune_difix/VERSION`` or
    ``tune_control/VERSION``, from the work folder's place under results/)."""
    firsts: dict[str, float] = {}
    for path in sorted((results / "logs").rglob("*.log")):
        found = [float(m[2]) for m in FIRST_BATCH.finditer(path.read_text(errors="replace"))]
        if found:
            firsts[str(path.relative_to(results / "logs").with_suffix(""))] = max(found)
    for train_log in sorted(results.glob("*/difix/**/work/*/train_log.csv")):
        # VERSION/difix[/control][/seedN]/work/FINGERPRINT/train_log.csv (hi4dfix.plan.Paths.workdir)
        parts = train_log.relative_to(results).parts
        middle = parts[2:-3]
        rule = "tune_control" if "control" in middle else "tune_difix"
        with train_log.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            key = "/".join([rule, parts[0], *(m for m in middle if m.startswith("seed"))])
            firsts[key] = float(rows[0]["step_time_s"])
    return firsts


def stage_walls(run: Path) -> dict[str, float]:
    """Wall seconds of each driver stage, and ``total``: the first stage's start to the last one's end."""
    stages = read_stages(run)
    walls = {name: end - start for name, start, end, _ in stages}
    if stages:
        walls["total"] = max(s[2] for s in stages) - min(s[1] for s in stages)
    return walls


def compare_runs(cold: Path, warm: Path) -> str:
    """Markdown: the cold and the warm run of one study (``study_run.sh pair``) side by side."""

    def ratio(a: float | None, b: float | None) -> str:
        return f"{b / a:.2f}" if a and b is not None else "-"

    walls = {"cold": stage_walls(cold), "warm": stage_walls(warm)}
    lines = [
        "# Cold and warm: one study twice on one machine (bench/gpu/study_run.sh pair)",
        "",
        "cold: every cache empty; warm: a fresh results folder, the study compile cache and the inductor, "
        "Triton and gsplat caches of the cold run kept.",
        "",
        "| stage | cold s | warm s | warm / cold |",
        "| --- | ---: | ---: | ---: |",
    ]
    names = [n for n in walls["cold"] if n != "total"] + [n for n in walls["warm"] if n not in walls["cold"]]
    for name in [*names, "total"]:
        a, b = walls["cold"].get(name), walls["warm"].get(name)
        lines.append(f"| {name} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} |")
    a, b = walls["cold"].get("total"), walls["warm"].get("total")
    if a and b is not None:
        verdict = "met" if b <= WARM_GOAL * a else "missed"
        lines += ["", f"Warm / cold, whole run: {b / a:.2f} (goal: at most {WARM_GOAL}): **{verdict}**."]
    results = {"cold": cold / "repo" / "results", "warm": warm / "repo" / "results"}
    bench = {k: read_benchmarks(r) for k, r in results.items()}
    firsts = {k: first_steps(r) for k, r in results.items()}
    gpu_jobs = set(read_gpu_peaks(results["cold"])) | set(read_gpu_peaks(results["warm"]))
    lines += [
        "",
        "GPU jobs (those whose log has a GPU peak): wall s from the benchmark files; first step s: tuning's "
        "first training step, an evaluation's first DiFix batches (with any compilation, cache loading "
        "and CUDA graph capture).",
        "",
        "| job | cold wall s | warm wall s | warm / cold | cold first step s | warm first step s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in sorted(gpu_jobs | set(firsts["cold"]) | set(firsts["warm"])):
        a = float(bench["cold"][key]["s"]) if key in bench["cold"] else None
        b = float(bench["warm"][key]["s"]) if key in bench["warm"] else None
        lines.append(
            f"| {key} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} | {fmt(firsts['cold'].get(key))} "
            f"| {fmt(firsts['warm'].get(key))} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("base")
    p.add_argument("out", type=Path)
    p.add_argument("--preset", default="sd-turbo", choices=["tiny", "sd-turbo"])
    p.add_argument("--device", default="auto")
    p = sub.add_parser("standins")
    p.add_argument("torch_home", type=Path)
    p = sub.add_parser("overlay")
    p.add_argument("out", type=Path)
    p.add_argument("--base", required=True)
    p.add_argument("--preset", default="sd-turbo", choices=["tiny", "sd-turbo"])
    p.add_argument("--width", type=int, default=940)
    p.add_argument("--height", type=int, default=1280)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--render-backend", default="gsplat", choices=["auto", "torch", "gsplat"])
    p.add_argument("--fit-steps", type=int, default=300)
    p.add_argument("--gaussians", type=int, default=13780)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--tune-compile", type=parse_bool, default=True)
    p.add_argument("--mixed-precision", default="bf16", choices=["no", "bf16", "fp16"])
    p.add_argument("--gram-warmup-steps", type=int, default=None, help="default: half the steps")
    p.add_argument("--loader-workers", type=int, default=4)
    p.add_argument("--long-side", type=parse_optional_int, default=512)
    p.add_argument("--infer-compile", default="false", choices=["auto", "true", "false"])
    p.add_argument("--eval-samples", type=parse_optional_int, default=None)
    p.add_argument("--compile-cache-dir", default=None, help="difix.compile_cache_dir (default: under results/)")
    p.add_argument("--data-only", action="store_true")
    p = sub.add_parser("summary")
    p.add_argument("workdir", type=Path)
    p.add_argument("run", type=Path)
    p = sub.add_parser("compare")
    p.add_argument("cold", type=Path)
    p.add_argument("warm", type=Path)
    p.add_argument("--out", type=Path, default=None, help="also write the table there")
    args = parser.parse_args(argv)
    if args.command == "base":
        build_base(args.out, args.preset, args.device)
    elif args.command == "standins":
        write_standins(args.torch_home)
    elif args.command == "overlay":
        write_overlay(args)
    elif args.command == "compare":
        text = compare_runs(args.cold, args.warm)
        if args.out is not None:
            args.out.write_text(text)
        print(text, end="")
    else:
        print(write_summary(args.workdir, args.run))


if __name__ == "__main__":
    main()
