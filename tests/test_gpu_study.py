"""bench/gpu/study.py, the helpers of the full-size GPU run (bench/gpu/study_run.sh): the local base
folder rebuilds tuned sd-turbo pkls offline, the config overlay sets the run keys, the summary
joins benchmark files, job logs and Snakemake's log."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_study", REPO / "bench" / "gpu" / "study.py")
gpu_study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_study)


def overlay_args(**overrides) -> argparse.Namespace:
    values = dict(
        base="/scratch/base", preset="sd-turbo", width=940, height=1280, frames=20, render_backend="gsplat",
        fit_steps=300, gaussians=13780, steps=300, tune_compile=True, mixed_precision="bf16",
        gram_warmup_steps=None, loader_workers=4, long_side=512, infer_compile="false", eval_samples=None,
        data_only=False, compile_cache_dir=None,
    )
    values.update(overrides)
    return argparse.Namespace(**values)


def test_overlay_sets_the_run_keys():
    config = gpu_study.overlay_config(overlay_args(infer_compile="true", eval_samples=48))
    assert config["difix"] == {
        "base": "/scratch/base", "preset": "sd-turbo", "long_side": 512, "inference": {"compile": True}
    }
    tuning = config["versions"]["v0"]["tuning"]
    assert "resolution" not in tuning
    assert tuning["steps"] == 300 and tuning["compile"] is True and tuning["gram_warmup_steps"] == 150
    assert config["versions"]["v0"]["triplets"] == {"max_samples": 48}
    assert config["data"]["synthetic"] == {"width": 940, "height": 1280, "num_frames": 20}
    assert config["materialize"]["max_frames"] == 20


def test_overlay_names_a_shared_compile_cache(tmp_path):
    """study_run.sh --cache-dir: a second run (fresh results) reads the first run's study cache."""
    config = gpu_study.overlay_config(overlay_args(compile_cache_dir=str(tmp_path / "cache")))
    assert config["difix"]["compile_cache_dir"] == str((tmp_path / "cache").resolve())


def test_overlay_is_written(tmp_path):
    gpu_study.write_overlay(overlay_args(out=tmp_path / "overlay.yaml"))
    assert yaml.safe_load((tmp_path / "overlay.yaml").read_text())["difix"]["long_side"] == 512


def test_data_only_overlay_needs_no_pretrained_weights():
    config = gpu_study.overlay_config(overlay_args(data_only=True))
    assert config["difix"] == {"base": "pretrain", "preset": "tiny"}
    assert config["metrics"] == {"require_lpips": False}
    tuning = config["versions"]["v0"]["tuning"]
    assert tuning["lambda_lpips"] == 0 and tuning["lambda_gram"] == 0
    # what the data rules read is the same as in the full overlay, so they are not redone
    full = gpu_study.overlay_config(overlay_args())
    assert config["data"] == full["data"] and config["materialize"] == full["materialize"]


def test_tuned_sd_turbo_pkl_rebuilds_offline_on_the_local_base(tmp_path, monkeypatch):
    """An sd-turbo pkl holds the UNet and VAE adapters only and is rebuilt on its base_model_id:
    naming the folder keeps the evaluation jobs off the Hub (tiny widths for speed)."""
    import huggingface_hub.constants

    from hi4dfix.difix.checkpoint import load_model
    from hi4dfix.difix.config import preset_architecture
    from hi4dfix.difix.model import build_random_difix
    from hi4dfix.difix.official_pkl import save_checkpoint
    from hi4dfix.difix.pretrained_dir import save_pretrained_dir

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = tmp_path / "base"
    config = gpu_study.base_config(folder, "sd-turbo")
    config.architecture = preset_architecture("tiny")
    save_pretrained_dir(build_random_difix(config), folder)
    base = load_model(str(folder))
    assert base.difix_config.preset == "sd-turbo" and base.difix_config.base_model_id == str(folder.resolve())
    with torch.no_grad():
        base.unet.conv_in.weight.add_(1.0)  # as tuning would change it
    tuned = load_model(str(save_checkpoint(tmp_path / "model.pkl", base)))
    assert torch.equal(tuned.unet.conv_in.weight, base.unet.conv_in.weight)


def test_summary_joins_benchmarks_gpu_peaks_and_job_times(tmp_path):
    workdir, run = tmp_path / "repo", tmp_path / "run"
    bench = workdir / "results/benchmarks/render_scene/imperfect/hi4d_pair00_dance.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tmax_rss\tcpu_time\n31.25\t0:00:31\t2048.5\t40.0\n")
    cpu_bench = workdir / "results/benchmarks/synthesize_sequence/pair00/dance00.tsv"
    cpu_bench.parent.mkdir(parents=True)
    cpu_bench.write_text("s\th:m:s\tmax_rss\tcpu_time\n90.0\t0:01:30\t400\t89.0\n")
    job_log = workdir / "results/logs/render_scene/imperfect/hi4d_pair00_dance.log"
    job_log.parent.mkdir(parents=True)
    job_log.write_text(
        "2026-11-28 08:00:00 INFO hi4dfix: rendered\n"
        "2026-11-28 08:00:31 INFO hi4dfix: GPU peak memory (cuda:0): max_allocated 1.500 GiB, max_reserved 2.250 GiB\n"
    )
    smk_log = workdir / ".snakemake/log/2026-11-28T080000.snakemake.log"
    smk_log.parent.mkdir(parents=True)
    smk_log.write_text(
        "[Sat Nov 28 08:00:00 2026]\nlocalrule synthesize_sequence:\n    jobid: 3\n"
        "    wildcards: seqdir=pair00/dance00\n"
        "[Sat Nov 28 08:00:00 2026]\nrule render_scene:\n    jobid: 7\n"
        "    wildcards: profile=imperfect, scene=hi4d_pair00_dance\n"
        "    resources: tmpdir=/tmp, gpu=1, runtime=12, mem_mb=8000, mem=8 GB, mem_mib=7630\n"
        "[Sat Nov 28 08:01:30 2026]\nFinished jobid: 3 (Rule: synthesize_sequence)\n"
        "[Sat Nov 28 08:02:10 2026]\nFinished jobid: 7 (Rule: render_scene)\n"
    )
    (run / "logs").mkdir(parents=True)
    (run / "logs/host_memory.tsv").write_text(
        "job\tpeak_pss_mib\trss_sum_at_peak_mib\tprocesses_at_peak\tsamples\tfirst_s\tlast_s\n"
        "render_scene/imperfect/hi4d_pair00_dance\t1000\t1900\t3\t15\t10\t40\n"
    )
    start = gpu_study.read_job_times(workdir)["render_scene/imperfect/hi4d_pair00_dance"]["start"]
    (run / "stages.tsv").write_text(f"snakemake_study\t{start - 10}\t{start + 200}\t0\n")
    text = gpu_study.write_summary(workdir, run).read_text()
    row = "| render_scene | imperfect/hi4d_pair00_dance | 10 | 140 | 31.2 | 2048 | 1000 | 8000 | 40.0 | 1.50 / 2.25 |"
    assert row in text
    assert "| synthesize_sequence | pair00/dance00 | 10 | 100 | 90.0 | 400 | - | - | 89.0 | none |" in text
    # by rule: the request over the measured PSS peak (8000 MB / 1000 MiB = 7.63)
    assert "| render_scene | 1 | 1000 | 2048 | 8000 | 7.63 | 1.50 | 2.25 |" in text
    assert "| snakemake_study | 0 | 210 | 210.0 | 0 |" in text
    assert "RANDOM stand-ins" in text


def test_pss_sampler_sums_a_jobs_process_tree(tmp_path):
    """pss_sampler.py: a process naming a job's log, and its child, count for that job; processes
    outside --root's tree (another user's jobs) do not."""
    import os
    import subprocess
    import sys
    import time

    spec = importlib.util.spec_from_file_location("pss_sampler", REPO / "bench" / "gpu" / "pss_sampler.py")
    sampler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sampler)
    script = tmp_path / ".snakemake" / "scripts" / "tmpab12.render_scene.py"
    script.parent.mkdir(parents=True)
    script.write_text(
        "import subprocess, sys, time\n"
        "# pickled preamble: b'\\x8c2results/logs/render_scene/imperfect/hi4d_pair00_dance.log\\x94'\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(20)'])\n"
        "time.sleep(20)\n"
    )
    shell = subprocess.Popen(["sh", "-c", "sleep 20; true # results/logs/tune_difix/v0.log"])
    job = subprocess.Popen([sys.executable, str(script)])
    try:
        time.sleep(1.5)
        peaks: dict = {}
        sampler.sample({}, peaks, time.time(), os.getpid())
        assert set(peaks) == {"render_scene/imperfect/hi4d_pair00_dance", "tune_difix/v0"}
        assert peaks["render_scene/imperfect/hi4d_pair00_dance"]["procs"] == 2
        assert peaks["render_scene/imperfect/hi4d_pair00_dance"]["pss"] > 1000  # KiB: two interpreters
        elsewhere: dict = {}
        sampler.sample({}, elsewhere, time.time(), root=1 << 30)  # no such process: nothing under it
        assert elsewhere == {}
        sampler.write(tmp_path / "host.tsv", peaks, time.time())
        assert (tmp_path / "host.tsv").read_text().startswith("job\tpeak_pss_mib")
    finally:
        for proc in (shell, job):
            proc.kill()
            proc.wait()


def fake_run(run, walls, tune_first, eval_first, tune_s, eval_s):
    """A finished study_run.sh run folder: driver stages, two GPU jobs' benchmark files and logs, a
    tuning run's train_log.csv (a control arm's too), a CPU job without a GPU peak."""
    results = run / "repo/results"
    start = 1000.0
    lines = []
    for name, wall in walls.items():
        lines.append(f"{name}\t{start}\t{start + wall}\t0\n")
        start += wall
    run.mkdir(parents=True)
    (run / "stages.tsv").write_text("".join(lines))
    jobs = {"tune_difix/v0": tune_s, "evaluate_nvs/v0/tuned/hi4d_pair15_fight": eval_s, "build_triplets/v0": 3.0}
    for key, wall in jobs.items():
        bench = results / "benchmarks" / f"{key}.tsv"
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{wall}\t0:00:01\t100\t1.0\n")
        log = results / "logs" / f"{key}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        text = "2026-12-07 10:00:00 INFO hi4dfix: done\n"
        if key != "build_triplets/v0":
            text += (
                "2026-12-07 10:00:01 INFO hi4dfix: GPU peak memory (cuda:0): max_allocated 1.0 GiB, "
                "max_reserved 2.0 GiB\n"
            )
        if key.startswith("evaluate"):
            text += (
                "2026-12-07 10:00:02 INFO hi4dfix: DiFix: 12 views in 0.90 s after the first batch of each size: "
                f"13.33 views/s, 75.0 ms/view; first batches (2 views, with any compilation) {eval_first} s\n"
            )
        log.write_text(text)
    for arm_dir, first in (("difix", tune_first), ("difix/control", tune_first / 2)):
        train_log = results / "v0" / arm_dir / "work" / "abc123" / "train_log.csv"
        train_log.parent.mkdir(parents=True)
        train_log.write_text(
            "step,loss,l2,lpips,gram,grad_norm,lr,step_time_s,elapsed_s\n"
            f"1,0.5,0.5,0,0,1,1e-5,{first},{first}\n2,0.4,0.4,0,0,1,1e-5,0.4,{first + 0.4}\n"
        )
    return run


def test_compare_puts_the_cold_and_the_warm_run_side_by_side(tmp_path, capsys):
    cold = fake_run(tmp_path / "cold", {"snakemake_data": 100.0, "snakemake_study": 700.0}, 240.5, 95.2, 300.0, 150.0)
    warm = fake_run(tmp_path / "warm", {"snakemake_data": 90.0, "snakemake_study": 350.0}, 29.0, 18.4, 80.0, 40.0)
    text = gpu_study.compare_runs(cold, warm)
    assert "| snakemake_study | 700.0 | 350.0 | 0.50 |" in text
    assert "| total | 800.0 | 440.0 | 0.55 |" in text
    assert "Warm / cold, whole run: 0.55 (goal: at most 0.5): **missed**." in text
    # every GPU job with its first step; the CPU job is not one; the control's tuning has no benchmark here
    assert "| tune_difix/v0 | 300.0 | 80.0 | 0.27 | 240.5 | 29.0 |" in text
    assert "| evaluate_nvs/v0/tuned/hi4d_pair15_fight | 150.0 | 40.0 | 0.27 | 95.2 | 18.4 |" in text
    assert "| tune_control/v0 | - | - | - | 120.2 | 14.5 |" in text
    assert "build_triplets" not in text
    out = tmp_path / "compare.md"
    gpu_study.main(["compare", str(cold), str(warm), "--out", str(out)])
    assert out.read_text() == text == capsys.readouterr().out
    faster = fake_run(tmp_path / "faster", {"snakemake_data": 50.0, "snakemake_study": 300.0}, 29.0, 18.4, 80.0, 40.0)
    assert "whole run: 0.44 (goal: at most 0.5): **met**." in gpu_study.compare_runs(cold, faster)
