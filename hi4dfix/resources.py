"""Memory and time a job asks the cluster for, from per-unit costs measured in BENCHMARKS.md,
scaled by what the job's cost grows with: a scene's frames, its image size, the views evaluated.

A scene's size is known at DAG build without reading images: its frames from the config
(synthetic data) or the sequence's ``meta.npz`` start/end (Hi4D), kept by ``materialize``'s
``frame_stride``/``max_frames``; its size from ``materialize.width``/``height`` or the source.

Every figure below names where it comes from; "estimate" marks those not measured. Requests are
the estimate times :data:`SAFETY`, times the attempt (a retried job asks for more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from hi4dfix.hi4d.layout import HI4D_CAMERA_IDS

HI4D_SIZE = (940, 1280)  # (width, height) of Hi4D's images
FULL_PIXELS = HI4D_SIZE[0] * HI4D_SIZE[1]
UNKNOWN_SEQUENCE_FRAMES = 200  # estimate: a Hi4D sequence whose meta.npz is not readable yet
SAFETY = 1.5

# --- evaluation (evaluate_nvs, evaluate_difix): BENCHMARKS.md, "NVS evaluation memory at 940x1280"
EVAL_BASE_MB = 1000  # Python, torch, LPIPS's AlexNet before any view: 1009 MiB (measured, one process)
# Memory per view held (chunk): image, reference, target, output, metric stacks and LPIPS's batch.
# Measured: raw arm, chunk 8, 940x1280: 3931 MiB peak at 10 frames, 3950 at 100 -> (3950 - 1000) / 8.
EVAL_MB_PER_VIEW = 370
# The same on a GPU machine (LPIPS on the GPU): the job's summed PSS, 4 raw-arm evaluate_nvs jobs at
# 940x1280, chunk 8, 1870-2167 MiB (BENCHMARKS.md, "Full-size study at Difix's scale", 2026-12-07):
# (2272 MB - 1000) / 8 = 159 per view; 150 keeps the request (3300 MB) within 1.5x of that peak.
EVAL_MB_PER_VIEW_GPU = 150
# A DiFix model in host memory while it runs (one model at a time: an evaluation job loads its
# models one after the other): tiny (on CPU) measured, its arm's peak is 325 MiB above the raw
# arm's; sd-turbo (weights on the GPU): CUDA's host side, fitted below.
DIFIX_HOST_MB = {"tiny": 400, "sd-turbo": 1500}
# While a model loads, before any view is read. sd-turbo, measured by PSS on one H100 (same
# section): base-arm evaluate_nvs jobs 3187-4678 MiB (4678: the job that compiled, its compile
# workers counted), tuned and control arms 6674-7651 MiB, evaluate_difix (base, tuned, control one
# after the other) 7524 MiB. The base folder's load and the tuned pkl read on top of it (3.47 GB on
# disk, BENCHMARKS.md "DiFix sd-turbo model on disk"): 1000 + 1500 + 2300 = 4800 MB (base arm, request
# 7200 = 1.47x its peak), + 3000 = 7800 MB (tuned, control, evaluate_difix: 11,700 = 1.46x / 1.48x).
DIFIX_LOAD_MB = {"tiny": 300, "sd-turbo": 2300}
DIFIX_PKL_MB = {"tiny": 0, "sd-turbo": 3000}
# Time per view for reading, saving and the metrics (PSNR, SSIM, LPIPS on CPU), 1 thread,
# 940x1280, raw arm: 3.07 s over 700 views, 9.1 s over 70 views while another benchmark ran, on a
# shared 2-core machine; 4.0 taken.
EVAL_S_PER_VIEW = 4.0
# DiFix per view at 940x1280 processing size, estimates scaled by pixels from measurements at
# smaller sizes. tiny (CPU, 1 thread): 0.28-0.55 s at 240x176 (BENCHMARKS.md, NVS evaluation
# memory) and 3.8 s at 480x352 (a probe on the busy machine, not recorded), x7.1 from the latter.
# sd-turbo (GPU, eager bf16): 68.4 ms at 512x512 (BENCHMARKS.md, DiFix full-size architecture),
# x4.6; compiled it is 2.9x less at 512.
DIFIX_S_PER_VIEW = {"tiny": 27.0, "sd-turbo": 0.32}
# Loading (and compiling) a model: sd-turbo's compilation took 148.5 s at 512 px (measured, cold
# cache), 105 s inside evaluate_nvs at 512x384 on a cold inductor cache and 20-25 s on a warm one
# (BENCHMARKS.md, the whole study at full size); loading 3.5 GB of weights from a shared file
# system: estimate.
DIFIX_START_S = {"tiny": 10, "sd-turbo": 600}
JOB_START_MIN = 5  # interpreter, imports, Slurm's start: estimate
PROGRESSIVE_ROUNDS = 15  # hi4dfix.difix3d_plus.ProgressiveConfig.rounds' default (nvs.mode difix3d+)

# --- the GPU rules' fixed host memory (mem_mb): the jobs' summed PSS peaks in the full-size study at
# long side 1024 on one H100 (BENCHMARKS.md, "Full-size study at Difix's scale", 2026-12-07), each
# request within [peak, 1.5 x peak] (PSS in MiB, requests in MB).
RENDER_MEM_MB = 2000  # render_scene: 1256-1294 MiB over 7 jobs at 940x1280 (one frame at a time): 1.47x
CONTROL_TRIPLETS_MEM_MB = 2400  # control_triplets: 1529 MiB (36 single-frame scenes): 1.50x
# tune_difix: 8900 MiB (one process, 4 DataLoader workers, compiled, 1024x752): 1.49x; tune_control
# 6894 MiB. Per process: the Slurm profile's 2-GPU tuning asks for its own (profiles/slurm).
TUNE_MEM_MB = 13900

# --- materialize: BENCHMARKS.md, "Materialize at 940x1280": 0.80-0.95 frames/s per core
MATERIALIZE_S_PER_FRAME = 1.25  # 8 cameras, at Hi4D's source size
# --- render (fit + render 8 cameras), gsplat on one H100, BENCHMARKS.md "Render stage":
RENDER_S_PER_STEP = 0.0051  # ms/step 4.2-5.1 (376x512 to 940x1280, 2000-13,780 Gaussians)
RENDER_S_PER_FRAME = 0.11 + MATERIALIZE_S_PER_FRAME  # rendering 8 cameras, plus writing 16 PNGs and
# reading the ground truth: taken as materialize's per-frame cost (the same PNG work): estimate


@dataclass(frozen=True)
class SceneSize:
    frames: int
    width: int
    height: int
    cameras: int = len(HI4D_CAMERA_IDS)

    @property
    def pixel_scale(self) -> float:
        """Pixels of an image relative to Hi4D's 940x1280, which the costs are measured at."""
        return self.width * self.height / FULL_PIXELS


def sequence_frames(meta_path: str | Path) -> int | None:
    """Frames of a Hi4D sequence from its ``meta.npz`` (start and end, inclusive); None if unreadable."""
    import numpy as np

    try:
        with np.load(meta_path, allow_pickle=False) as meta:
            return int(meta["end"]) - int(meta["start"]) + 1
    except Exception:  # missing, or not yet written (synthetic data): the caller estimates
        return None


def scene_size(config: Mapping[str, Any], sequence_dir: str | Path) -> SceneSize:
    """Frames and image size of a materialized scene, from the config and the sequence's meta.npz."""
    from hi4dfix.materialize import MaterializeConfig

    data = config["data"]
    if data["source"] == "synthetic":
        synthetic = data.get("synthetic", {})
        count = int(synthetic.get("num_frames", 3))
        source = (int(synthetic.get("width", 120)), int(synthetic.get("height", 160)))
    else:
        count = sequence_frames(Path(sequence_dir) / "meta.npz") or UNKNOWN_SEQUENCE_FRAMES
        source = HI4D_SIZE
    options = config.get("materialize", {})
    materialize = MaterializeConfig(
        width=options.get("width"),
        height=options.get("height"),
        frame_stride=options.get("frame_stride", 1),
        max_frames=options.get("max_frames"),
    )
    frames = len(materialize.select_frames(list(range(count))))
    width, height = materialize.output_size(*source)
    return SceneSize(frames, width, height)


def _mb(estimate_mb: float, attempt: int) -> int:
    return int(math.ceil(estimate_mb * SAFETY * attempt / 100.0) * 100)


def _minutes(estimate_s: float, attempt: int) -> int:
    return int(math.ceil(estimate_s * SAFETY * attempt / 60.0)) + JOB_START_MIN


def evaluation_mem_mb(
    scale: float,
    chunk_views: int,
    presets: Sequence[str],
    attempt: int = 1,
    *,
    gpu: bool = False,
    tuned: bool = False,
) -> int:
    """An evaluation job: its base and the DiFix models it runs (``presets``, loaded one after the
    other, so the largest counts), then the larger of one chunk of views at the image size and a
    model's loading (``tuned``: a tuned model's pkl read on top of its base). ``gpu``: the job has
    a GPU (LPIPS and the models there), whose per-view host cost was measured apart."""
    chunk = chunk_views * (EVAL_MB_PER_VIEW_GPU if gpu else EVAL_MB_PER_VIEW) * scale
    loading = max((DIFIX_LOAD_MB[p] + (DIFIX_PKL_MB[p] if tuned else 0) for p in presets), default=0)
    host = max((DIFIX_HOST_MB[p] for p in presets), default=0)
    return _mb(EVAL_BASE_MB + host + max(chunk, loading), attempt)


def evaluation_runtime_min(views: int, scale: float, arms: Sequence[str | None], attempt: int = 1) -> int:
    """``views`` scored per arm (None: the raw arm, no DiFix); each DiFix arm loads its model."""
    seconds = 0.0
    for preset in arms:
        per_view = EVAL_S_PER_VIEW + (DIFIX_S_PER_VIEW[preset] if preset else 0.0)
        seconds += views * per_view * scale + (DIFIX_START_S[preset] if preset else 0.0)
    return _minutes(seconds, attempt)


def nvs_runtime_min(
    size: SceneSize,
    views: int,
    preset: str | None,
    mode: str,
    fit_steps: int,
    attempt: int = 1,
    rounds: int = PROGRESSIVE_ROUNDS,
) -> int:
    """One NVS arm on one scene; ``difix3d+`` (DiFix arms) also refits every frame (as many steps as
    a render job) and fixes the held-out views once per round (``nvs.rounds``)."""
    minutes = evaluation_runtime_min(views, size.pixel_scale, [preset], attempt)
    if mode == "difix3d+" and preset is not None:
        minutes += render_runtime_min(size, fit_steps, attempt) - JOB_START_MIN
        difix_s = rounds * views * DIFIX_S_PER_VIEW[preset] * size.pixel_scale
        minutes += _minutes(difix_s, attempt) - JOB_START_MIN
    return minutes


def materialize_runtime_min(size: SceneSize, source_scale: float, attempt: int = 1) -> int:
    return _minutes(size.frames * MATERIALIZE_S_PER_FRAME * source_scale, attempt)


def render_runtime_min(size: SceneSize, fit_steps: int, attempt: int = 1) -> int:
    """Per frame: the fit's steps and the renders (GPU figures: the rule asks for a GPU)."""
    per_frame = fit_steps * RENDER_S_PER_STEP + RENDER_S_PER_FRAME * size.pixel_scale
    return _minutes(size.frames * per_frame, attempt)
