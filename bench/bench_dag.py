"""DAG-build cost: `snakemake -n` time and memory for configs of many scenes and 3 versions, or of an
ablation grid over the default study.

    python bench/bench_dag.py --scenes 10 100 500 [--append BENCHMARKS.md]
    python bench/bench_dag.py --grid 48 [--append BENCHMARKS.md]

Each scenes config is the embedded default with N synthetic scene entries; every version trains on all
non-reserved scenes but its eval pair and evaluates on the reserved four, so the DAG holds every stage
for every scene. A grid config is the embedded default with one grid of N variants under `ablations`
(pose source x reference x steps x learning rate), next to the default alone (one version);
the dry run plans every target (each version's report items and the grid's comparison). Prints one
markdown table (and appends it, with the command, date and machine).
"""

from __future__ import annotations

import argparse
import copy
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from record import append_markdown

REPO = Path(__file__).resolve().parents[1]
ACTIONS = ("dance", "talk", "fight", "hug", "jump", "piggyback", "kick", "yoga")


def scaled_config(num_scenes: int, num_versions: int = 3) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    reserved = config["policy"]["reserved_scenes"]
    reserved_pairs = {int(scene.split("_")[1][4:]) for scene in reserved}
    scenes = list(reserved)
    pair = 0
    while len(scenes) < num_scenes:
        if pair not in reserved_pairs:
            scenes.append(f"hi4d_pair{pair:02d}_{ACTIONS[pair % len(ACTIONS)]}")
        pair += 1
    config["data"]["scenes"] = scenes
    trainable = [scene for scene in scenes if scene not in reserved]
    template = config["versions"]["v0"]
    config["versions"] = {}
    for index in range(num_versions):
        version = copy.deepcopy(template)
        eval_scene = trainable[index % len(trainable)]
        version["difix_eval"] = [eval_scene]
        version["difix_train"] = [scene for scene in trainable if scene != eval_scene] or trainable[:1]
        version["tuning"]["steps"] = 100 + index  # distinct versions
        config["versions"][f"v{index}"] = version
    return config


def grid_config(num_variants: int) -> dict:
    """The default study with one grid of ``num_variants`` variants (2 x 3 x steps x 2, steps as needed)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    steps = max(1, -(-num_variants // 12))
    axes = {
        "render_profiles.*.pose_source": ["estimated", "gt"],
        "triplets.reference": ["same_time", "temporal", "mixed"],
        "tuning.steps": [150 + 10 * i for i in range(steps)],
        "tuning.lr": [0.0002, 0.0005],
    }
    if 12 * steps != num_variants:
        raise SystemExit(f"--grid: a multiple of 12 variants, got {num_variants}")
    config["ablations"] = {"bench": {"parent": "v0", "axes": axes}}
    return config


def dry_run(config: dict, cpu: list | None = None) -> tuple[float, float, int]:
    """Seconds, peak MiB of the snakemake process, and planned jobs; appends its CPU seconds (user +
    system, which a loaded machine does not inflate as it does the wall time) to ``cpu``."""
    with tempfile.TemporaryDirectory() as workdir:
        config_path = Path(workdir) / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", workdir,
                   "--configfile", str(config_path), "-n", "--quiet", "rules"]
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        before = usage.ru_maxrss
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_kib = after.ru_maxrss
        if cpu is not None:
            cpu.append(after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime)
        if result.returncode != 0:
            raise RuntimeError(f"dry run failed:\n{result.stdout}\n{result.stderr}")
        jobs = 0
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
                jobs = int(parts[1])
        # ru_maxrss of children is the largest child so far; runs go from small to large
        return seconds, max(peak_kib, before) / 1024, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--grid", type=int, help="variants of an ablation grid over the default (multiple of 12)")
    parser.add_argument("--append", type=Path, help="append the table to this markdown file")
    args = parser.parse_args()
    if args.grid:
        grid_main(args)
        return
    lines = [
        "| scenes | versions | jobs | `snakemake -n` s | peak MiB | s per 100 scenes |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for num_scenes in sorted(args.scenes):
        seconds, peak_mib, jobs = dry_run(scaled_config(num_scenes, args.versions))
        lines.append(
            f"| {num_scenes} | {args.versions} | {jobs} | {seconds:.2f} | {peak_mib:.0f} "
            f"| {100 * seconds / num_scenes:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.append:
        append_markdown(args.append, "DAG build (`snakemake -n`)", table)


def grid_main(args: argparse.Namespace) -> None:
    lines = [
        "| config | versions | jobs | `snakemake -n` s | CPU s (user + system) | peak MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for label, config, versions in (
        ("the default (one version)", default, 1),
        (f"the default + a grid of {args.grid} variants", grid_config(args.grid), None),
    ):
        cpu: list[float] = []
        seconds, peak_mib, jobs = dry_run(config, cpu)
        # the variant with v0's settings is v0: the grid adds one version fewer than it has variants
        versions = versions or args.grid
        lines.append(f"| {label} | {versions} | {jobs} | {seconds:.2f} | {cpu[0]:.2f} | {peak_mib:.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.append:
        append_markdown(args.append, f"DAG build of an ablation grid (`snakemake -n`, {args.grid} variants)", table)


if __name__ == "__main__":
    main()
