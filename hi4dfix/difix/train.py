"""Fine-tune Difix on triplets: ``python -m hi4dfix.difix.train`` or ``train(TrainConfig(...))``.

Runs under ``accelerate launch --num_processes N -m hi4dfix.difix.train ...`` (DDP) and as
a plain single CPU process.  A run writes into ``output_dir``:

* ``checkpoints/model_{step}.pkl`` every ``ckpt_every`` steps (official pkl layout,
  optimizer state included, plus step / RNG / settings), written atomically;
* ``train_log.csv`` (one row per step) and ``val_log.csv`` (one row per validation);
* the final model at ``output``: weights only, with an empty ``optimizer`` state (Difix's
  inference loader ignores the key, its resume loader indexes it), so that a full-size model
  is ~3.5 GB rather than ~10 GB;
* ``summary.json`` at the end.

Started again with the same arguments, a run continues from its newest checkpoint; the
batches it sees and its noise are pure functions of (seed, step, rank), so a resumed run
follows the uninterrupted one.  The final model is written to ``output`` only at the end.

A checkpoint is resumed only by a run with its fingerprint (``hi4dfix.difix.fingerprint``): the
training data's content, the base model's, the settings that decide the weights and the number
of processes.  With ``run_per_fingerprint`` (the workflow's way) each fingerprint trains in a
folder of its own, ``output_dir/<key[:12]>/``, which keeps its final model (``model.pkl``) and
logs: a run whose data or settings changed starts fresh there and says what changed, and the
earlier folders, with their models, stay.  Without it, a checkpoint of another fingerprint in
``output_dir`` is an error naming what changed.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import os
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hi4dfix.config_cli import dataclass_parser, option_help
from hi4dfix.difix.checkpoint import (
    TRAIN_STATE_KEY,
    load_model,
    model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
    save_model_weights,
)
from hi4dfix.difix.compile_cache import CompileKey, StudyCompileCache, open_study_cache, use_node_local_caches
from hi4dfix.difix.data import (
    PRESET_LONG_SIDE,
    StepSampler,
    TripletDataset,
    collate,
    model_input_size,
    parse_resolution,
    read_triplets,
)
from hi4dfix.difix.fingerprint import (
    HASH_CACHE_NAME,
    KEY_LENGTH,
    RUN_MODEL_NAME,
    RUN_RECORD_NAME,
    ContentHashes,
    RunFingerprint,
    changes,
    last_good_model,
    model_identity,
    past_runs,
    triplets_digest,
    write_run_record,
)
from hi4dfix.difix.layout import channels_last_wanted, to_channels_last
from hi4dfix.difix.losses import DifixLoss, LossConfig
from hi4dfix.difix.model import DifixModel, TrainableParts, add_unet_lora, describe, unet_lora_rank
from hi4dfix.io import atomic_path, read_image, write_json
from hi4dfix.logs import log_to_stderr
from hi4dfix.metrics import psnr_from_mse

LOG = logging.getLogger("hi4dfix.difix.train")
MIXED_PRECISION = ("no", "bf16", "fp16")
LR_SCHEDULES = ("constant", "cosine")
CHECKPOINT_NAME = re.compile(r"^model_(\d+)\.pkl$")
TRAIN_LOG_FIELDS = ["step", "loss", "l2", "lpips", "gram", "grad_norm", "lr", "step_time_s", "elapsed_s"]
VAL_LOG_FIELDS = ["step", "val_l2", "val_psnr", "input_psnr", "n_items"]

# Preset-dependent defaults for settings left at None (sd-turbo: Difix's released recipe).
PRESET_DEFAULTS = {
    "tiny": {"lr": 3e-4, "long_side": PRESET_LONG_SIDE["tiny"], "lambda_lpips": 0.0, "lambda_gram": 0.0},
    "sd-turbo": {"lr": 2e-5, "long_side": PRESET_LONG_SIDE["sd-turbo"], "lambda_lpips": 1.0, "lambda_gram": 1.0},
}
# Settings that decide the weights: a checkpoint is resumed only with the same values (with the
# training data's and the base model's content, hi4dfix.difix.fingerprint). The others (logging,
# checkpointing, speed and memory: compile, channels_last, gradient_checkpointing, tf32...) may
# change between a run and its resumption, e.g. gradient checkpointing after an out-of-memory kill.
RESUME_FINGERPRINT = (
    "steps", "lr", "batch_size", "resolution", "long_side", "crop", "timestep", "mixed_precision",
    "max_grad_norm",
    "lambda_l2", "lambda_lpips", "lambda_gram", "gram_warmup_steps", "lpips_net", "seed",
    "use_ref", "lr_warmup_steps", "lr_schedule", "weight_decay", "adam_beta1", "adam_beta2", "adam_eps",
    "unet", "unet_lora_rank", "vae_skip", "loss_region", "loss_mask_dilation",
)
LOSS_REGIONS = ("image", "person")


@dataclass
class TrainConfig:
    triplets: str = field(metadata=option_help("triplets JSON (train/test splits)"))
    output: str = field(metadata=option_help("final model pkl, written at the end only"))
    output_dir: str = field(metadata=option_help("checkpoints, logs; a rerun resumes from here"))
    base: str = field(default="tiny-random", metadata=option_help("start model: .pkl, folder, Hub id or tiny-random"))
    steps: int = field(default=200, metadata=option_help("optimisation steps in total"))
    lr: float | None = field(default=None, metadata=option_help("learning rate (None: 3e-4 tiny, 2e-5 sd-turbo)"))
    lr_warmup_steps: int = field(default=0, metadata=option_help("linear learning-rate warm-up steps"))
    lr_schedule: str = field(
        default="constant",
        metadata=option_help("constant (Difix's recipe) | cosine (decay to 0 at the last step, after the warm-up)"),
    )
    batch_size: int = field(default=1, metadata=option_help("samples per process and step"))
    long_side: int | None = field(
        default=None,
        metadata=option_help(
            "processing size: the longer image side scaled to this, aspect kept, each side snapped to 16 "
            "(None: 160 tiny, 512 sd-turbo)"
        ),
    )
    resolution: str | None = field(
        default=None,
        metadata=option_help(
            "fixed 'N' or 'HxW' instead of long_side, snapped to 16 (squashes frames of another aspect)"
        ),
    )
    crop: str | None = field(
        default=None,
        metadata=option_help(
            "'N' or 'HxW': train on random windows of this size cut from the images at the processing size "
            "(None: whole images)"
        ),
    )
    mixed_precision: str = field(
        default="no", metadata=option_help("no | bf16 | fp16 (fp16 needs a GPU); weights stay fp32")
    )
    max_grad_norm: float = field(default=1.0, metadata=option_help("gradient clipping norm (0: off)"))
    lambda_l2: float = field(default=1.0, metadata=option_help("L2 loss weight"))
    lambda_lpips: float | None = field(default=None, metadata=option_help("LPIPS weight (None: 0 tiny, 1 sd-turbo)"))
    lambda_gram: float | None = field(
        default=None, metadata=option_help("Gram (VGG16) weight (None: 0 tiny, 1 sd-turbo)")
    )
    gram_warmup_steps: int = field(
        default=2000, metadata=option_help("Gram loss is off until more than this many steps are done (Difix's rule)")
    )
    lpips_net: str = field(default="vgg", metadata=option_help("LPIPS backbone: vgg | alex"))
    timestep: int | None = field(
        default=None, metadata=option_help("the one diffusion timestep (None: the base model's, 199 for Difix)")
    )
    val_every: int = field(
        default=50, metadata=option_help("validate on the test split every N steps (0: only at the end)")
    )
    val_max_items: int = field(default=16, metadata=option_help("test triplets used per validation"))
    ckpt_every: int = field(default=50, metadata=option_help("checkpoint every N steps (0: none)"))
    keep_checkpoints: int = field(default=2, metadata=option_help("newest checkpoints kept (0: all)"))
    seed: int = field(default=0, metadata=option_help("seed of data order and noise"))
    num_workers: int = field(default=0, metadata=option_help("data loader worker processes"))
    weight_decay: float = field(default=1e-2, metadata=option_help("AdamW weight decay"))
    adam_beta1: float = field(default=0.9, metadata=option_help("AdamW beta1"))
    adam_beta2: float = field(default=0.999, metadata=option_help("AdamW beta2"))
    adam_eps: float = field(default=1e-8, metadata=option_help("AdamW epsilon"))
    use_ref: bool = field(default=True, metadata=option_help("feed the reference view as a second view"))
    unet: str = field(
        default="full",
        metadata=option_help("what of the UNet trains: full (every weight, as Difix) | lora (a UNet LoRA only)"),
    )
    unet_lora_rank: int = field(default=8, metadata=option_help("rank of the UNet LoRA (unet: lora)"))
    vae_skip: str = field(
        default="train",
        metadata=option_help("VAE decoder LoRA and skip convolutions: train (as Difix) | frozen (kept as the base's)"),
    )
    loss_region: str = field(
        default="image",
        metadata=option_help(
            "pixels the losses see: image (all) | person (the triplet's target_mask / ref_mask, dilated)"
        ),
    )
    loss_mask_dilation: int = field(
        default=4, metadata=option_help("person masks grow by this many pixels at the processing size")
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=option_help("UNet gradient checkpointing (saves GPU memory)")
    )
    compile: bool = field(
        default=False,
        metadata=option_help("torch.compile the model: minutes of compilation at start, faster steps on GPUs"),
    )
    compile_mode: str = field(
        default="reduce-overhead",
        metadata=option_help(
            "torch.compile mode on GPUs: reduce-overhead (CUDA graphs), default, max-autotune-no-cudagraphs..."
        ),
    )
    channels_last: bool | None = field(
        default=None,
        metadata=option_help(
            "channels-last weights and activations with group norms that suit them (hi4dfix.difix.layout); "
            "None: on when compiled on a GPU (1.4x faster compiled steps, as close to exact float32 as NCHW)"
        ),
    )
    compile_cache_dir: str | None = field(
        default=None,
        metadata=option_help(
            "study compile cache folder (hi4dfix.difix.compile_cache): compiled graphs are loaded from and "
            "saved to it, the live caches kept node-local (None: no study cache)"
        ),
    )
    cudnn_benchmark: bool = field(
        default=False,
        metadata=option_help("cuDNN autotuning on GPUs (every convolution shape is tried out in the first step)"),
    )
    allow_tf32: bool = field(
        default=True, metadata=option_help("TF32 matmuls and convolutions on Ampere+ GPUs (False: exact float32)")
    )
    hub_cache_dir: str | None = field(default=None, metadata=option_help("Hugging Face cache dir"))
    base_model_id: str | None = field(
        default=None, metadata=option_help("SD-Turbo source for sd-turbo pkls (Hub id or folder)")
    )
    run_per_fingerprint: bool = field(
        default=False,
        metadata=option_help(
            "train in output_dir/<fingerprint[:12]>/: a run whose training data (content), base or settings "
            "differ starts fresh in a folder of its own and earlier folders (with their model.pkl) stay"
        ),
    )
    output_train_log: str | None = field(
        default=None, metadata=option_help("a copy of the run's train_log.csv, written at the end")
    )
    setting_keys: str | None = field(
        default=None,
        metadata=option_help(
            "how errors name settings: 'OPTION=KEY,...', '*=PREFIX' for the rest (the workflow passes its "
            "config keys); None: the command-line options"
        ),
    )

    def __post_init__(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"TrainConfig.mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}"
            )
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("val_every", "ckpt_every", "keep_checkpoints", "num_workers", "lr_warmup_steps", "val_max_items"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_grad_norm < 0:
            raise ValueError(f"TrainConfig.max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if self.resolution is not None:
            parse_resolution(self.resolution)
        if self.long_side is not None and self.long_side < 16:
            raise ValueError(f"TrainConfig.long_side must be >= 16, got {self.long_side}")
        if self.crop is not None:
            parse_resolution(self.crop)
        TrainableParts(self.unet, self.vae_skip)  # validates both
        if self.unet_lora_rank < 1:
            raise ValueError(f"TrainConfig.unet_lora_rank must be >= 1, got {self.unet_lora_rank}")
        if self.loss_region not in LOSS_REGIONS:
            raise ValueError(f"TrainConfig.loss_region must be one of {LOSS_REGIONS}, got {self.loss_region!r}")
        if self.loss_mask_dilation < 0:
            raise ValueError(f"TrainConfig.loss_mask_dilation must be >= 0, got {self.loss_mask_dilation}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"TrainConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")

    def resolved(self, preset: str) -> "TrainConfig":
        """A copy with preset defaults filled in for settings left at None."""
        defaults = PRESET_DEFAULTS[preset]
        updates = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **updates)

    @property
    def trainable_parts(self) -> TrainableParts:
        return TrainableParts(self.unet, self.vae_skip)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the weights (``RESUME_FINGERPRINT``)."""
        return {k: getattr(self, k) for k in RESUME_FINGERPRINT}

    def setting_name(self, option: str) -> str:
        """What a user changes to change ``option``: a config key (``setting_keys``) or the option."""
        names = dict(item.split("=", 1) for item in (self.setting_keys or "").split(",") if "=" in item)
        if option in names:
            return names[option]
        if "*" in names:
            return f"{names['*']}.{option}"
        return f"--{option.replace('_', '-')}"


# ----------------------------------------------------------------------------- helpers


def find_latest_checkpoint(ckpt_dir: Path) -> tuple[int, Path] | None:
    found = []
    if ckpt_dir.is_dir():
        for path in ckpt_dir.iterdir():
            match = CHECKPOINT_NAME.match(path.name)
            if match:
                found.append((int(match[1]), path))
    return max(found) if found else None


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    if keep <= 0:
        return
    found = sorted((int(m[1]), p) for p in ckpt_dir.iterdir() if (m := CHECKPOINT_NAME.match(p.name)))
    for _, path in found[:-keep]:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(ckpt_dir: Path) -> None:
    """Temporary files of a write that a kill interrupted (hi4dfix.io.atomic_path naming)."""
    if ckpt_dir.is_dir():
        for path in ckpt_dir.glob(".model_*.tmp.pkl"):
            path.unlink(missing_ok=True)


def prepare_model_for_training(model: DifixModel, cfg: TrainConfig, device: torch.device) -> None:
    """Trainable parameters, checkpointing, cuDNN autotuning and compilation as ``cfg`` says.

    Compiled on CUDA the step runs as CUDA graphs (``cfg.compile_mode``): compiled but
    launched kernel by kernel, the full-size step was bound by the CPU's launches (~205 ms a
    step for ~154 ms of GPU work at 512 px on an H100, BENCHMARKS.md).  Channels-last
    (``hi4dfix.difix.layout``, on by default when compiled on CUDA): 93 against 133 ms a compiled
    step at 512 px on an H200, as cuDNN's layout copies go.  Over 200 bf16 steps both compiled
    layouts stay within 1.0% of exact float32's losses, closer than eager bf16 (2.0%): compiled
    kernels round less (BENCHMARKS.md).
    """
    prepare_unet_lora(model, cfg)
    model.set_train(cfg.trainable_parts)
    if channels_last_wanted(cfg.channels_last, cfg.compile, device):
        to_channels_last(model)
    if cfg.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    if cfg.compile:
        mode = cfg.compile_mode if device.type == "cuda" else None
        model.compile_forward(None if mode == "default" else mode)
        # Under DDP, dynamo's default splits the graph at every 25 MB gradient bucket so that
        # all-reduces overlap the backward; on two H200s that step took 173.8 ms for 2 samples,
        # one whole graph with the all-reduce after it 120.6 ms (BENCHMARKS.md).  No effect
        # without DDP.
        torch._dynamo.config.optimize_ddp = "no_optimization"


def prepare_unet_lora(model: DifixModel, cfg: TrainConfig) -> None:
    """Give the UNet the LoRA ``cfg.unet: lora`` trains (seeded by ``cfg.seed``), unless it has it
    already (a resumed run); a full-UNet run refuses a base that has one (its LoRA would train
    beside the weights it adapts)."""
    rank = unet_lora_rank(model.unet)
    if cfg.unet == "full":
        if rank is not None:
            raise ValueError(f"tuning.unet: full, but the model {cfg.base} has a UNet LoRA (rank {rank})")
        return
    if rank is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            add_unet_lora(model.unet, cfg.unet_lora_rank)
        model.unet.to(next(model.vae.parameters()).device)
    elif rank != cfg.unet_lora_rank:
        raise ValueError(f"tuning.unet_lora_rank {cfg.unet_lora_rank}, but the model's UNet LoRA has rank {rank}")


def set_tf32(device: torch.device, enabled: bool) -> None:
    """TF32 matmuls and convolutions on a CUDA device, or neither: cuDNN's convolutions default to
    TF32, so ``allow_tf32=False`` has to turn them off for exact float32."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; on CUDA the fused kernel (one launch for all tensors: at full size ~15x faster
    than the per-tensor loop, see BENCHMARKS.md)."""
    return torch.optim.AdamW(
        params,
        lr=cfg.lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.weight_decay,
        eps=cfg.adam_eps,
        fused=device.type == "cuda",
    )


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The learning rate of (1-based) ``step``: linear warm-up, then constant or cosine decay."""
    if step <= cfg.lr_warmup_steps:
        return cfg.lr * step / cfg.lr_warmup_steps
    if cfg.lr_schedule == "cosine":
        progress = (step - cfg.lr_warmup_steps) / max(1, cfg.steps - cfg.lr_warmup_steps)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr


def step_generator(device: torch.device, seed: int, step: int, rank: int) -> torch.Generator:
    """Noise of one step on one rank: a pure function of (seed, step, rank)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0]))
    return gen


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class CsvLog:
    """Append-only CSV; on resume, rows after the resumed step are dropped first."""

    def __init__(self, path: Path, fields: list[str], resume_step: int, enabled: bool) -> None:
        self.path, self.fields, self.enabled = path, fields, enabled
        if not enabled:
            return
        kept = []
        if path.is_file() and resume_step > 0:
            with path.open(newline="") as fh:
                kept = [row for row in csv.DictReader(fh) if int(row["step"]) <= resume_step]
        with atomic_path(path) as tmp:
            with tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=fields)
                writer.writeheader()
                writer.writerows(kept)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields).writerow(row)


@torch.no_grad()
def validate(
    model: DifixModel, dataset: TripletDataset | None, device: torch.device, autocast, seed: int
) -> dict[str, float] | None:
    """Mean L2 (in [-1, 1]) and PSNR (in [0, 1]) of the fixed view against its target."""
    if dataset is None:
        return None
    was_training = model.training
    model.eval()
    l2s, psnrs, input_psnrs = [], [], []
    for index in range(len(dataset)):
        item = dataset[index]
        views = item["views"][None].to(device)
        target = item["targets"][None, 0].to(device)
        emb = model.encode_prompts([item["prompt"]])
        gen = torch.Generator(device=device).manual_seed(seed + index)
        with autocast():
            pred = model(views, emb, generator=gen, first_view_only=True)[:, 0].float()
        mse = torch.mean((pred - target) ** 2).item()
        l2s.append(mse)
        # images in [-1, 1]: a quarter of their MSE is the MSE in [0, 1], data range 1
        psnrs.append(psnr_from_mse(mse / 4.0))
        input_psnrs.append(psnr_from_mse(torch.mean((views[:, 0] - target) ** 2).item() / 4.0))
    model.train(was_training)
    model.text_encoder.eval()
    return {
        "val_l2": float(np.mean(l2s)),
        "val_psnr": float(np.mean(psnrs)),
        "input_psnr": float(np.mean(input_psnrs)),
        "n_items": len(l2s),
    }


def log_processing_size(dataset: TripletDataset, cfg: TrainConfig) -> tuple[int, int]:
    """Log (and return) the size the first training image is processed at."""
    height, width = read_image(dataset.triplets[0].image).shape[:2]
    size = model_input_size(height, width, cfg.resolution, cfg.long_side)
    if cfg.resolution is not None:
        requested = parse_resolution(cfg.resolution)
        if requested != size:
            LOG.info("resolution %dx%d snapped to %dx%d (multiple of 16)", *requested, *size)
        how = f"fixed resolution {cfg.resolution}"
    else:
        how = f"long side {cfg.long_side}, aspect kept, sides snapped to 16"
    LOG.info("processing size %dx%d (HxW) for %dx%d training images (%s)", *size, height, width, how)
    return size


# ----------------------------------------------------------------------------- training


def train(cfg: TrainConfig) -> Path:
    """Train (or resume) and write the final pkl to ``cfg.output``; returns its path."""
    try:
        return _train(cfg)
    finally:
        release_accelerate_state()


def release_accelerate_state() -> None:
    """Forget accelerate's process-wide settings (mixed precision...) so that ``train`` can
    run again in the same process with other settings; the process group is kept."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


@dataclass
class _Process:
    """This process's part of a run (one of ``world`` under DDP), from :func:`_set_up`."""

    accelerator: Any
    device: torch.device
    rank: int
    world: int
    is_main: bool
    output_dir: Path
    ckpt_dir: Path
    fingerprint: RunFingerprint


@dataclass
class _Start:
    """Where a run starts, from :func:`_start_or_resume`: the model, the config with the model's
    preset defaults filled in, the steps already done, and the checkpoint to restore the
    optimizer, RNG and gradient-scaler state from (None when starting from the base)."""

    model: DifixModel
    cfg: TrainConfig
    step: int
    checkpoint: dict[str, Any] | None


@dataclass
class _Data:
    """Training and validation data, from :func:`_load_data`."""

    train_set: TripletDataset
    test_set: TripletDataset | None
    loader: torch.utils.data.DataLoader
    resolution: tuple[int, int]


@dataclass
class _Optimisation:
    """What the loop updates, from :func:`_prepare_optimisation`: ``model`` as accelerate wraps
    it (DDP), ``core`` the plain model inside it, the trainable ``params`` and their optimizer."""

    model: Any
    core: DifixModel
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    loss_fn: DifixLoss
    compile_cache: StudyCompileCache | None = None


def _train(cfg: TrainConfig) -> Path:
    process = _set_up(cfg)
    start = _start_or_resume(cfg, process)
    cfg = start.cfg
    data = _load_data(cfg, start.step, process)
    opt = _prepare_optimisation(cfg, start, process)
    opt.compile_cache = _open_compile_cache(cfg, process, opt.core, data.resolution)
    start.checkpoint = None  # free the checkpoint tensors
    step_times, last_val = _run_steps(cfg, process, data, opt, start.step)
    return _save_final_model(cfg, process, data, opt, start.step, step_times, last_val)


def _open_compile_cache(
    cfg: TrainConfig, process: _Process, model: DifixModel, resolution: tuple[int, int]
) -> StudyCompileCache | None:
    """The study compile cache entry of this run's compiled step, loaded (None: not compiled, or
    no cache folder). Every process loads it; the main process saves (``_run_steps``)."""
    if not cfg.compile or cfg.compile_cache_dir is None:
        return None
    size = parse_resolution(cfg.crop) if cfg.crop is not None else resolution
    mode = cfg.compile_mode if process.device.type == "cuda" else "default"
    key = CompileKey.for_process(
        "train", model.difix_config, size, cfg.batch_size, mode, process.device,
        precision=cfg.mixed_precision, views=2 if cfg.use_ref else 1, allow_tf32=cfg.allow_tf32,
        channels_last=channels_last_wanted(cfg.channels_last, cfg.compile, process.device),
        gradient_checkpointing=cfg.gradient_checkpointing,
    )
    return open_study_cache(cfg.compile_cache_dir, key)


def _set_up(cfg: TrainConfig) -> _Process:
    """The accelerator (processes, device, mixed precision), logging, TF32, the checkpoint folder;
    with a study compile cache, the live inductor and Triton caches in a per-job temporary folder."""
    from accelerate import Accelerator, PartialState

    is_main = PartialState().is_main_process
    log_to_stderr(LOG, logging.INFO if is_main else logging.WARNING)
    if cfg.run_per_fingerprint and is_main:
        # first, so that a run failing below still says where the last good model is
        good = last_good_model(cfg.output_dir)
        if good is not None:
            LOG.info("last good model of this tuning: %s (train log %s)", good.model, good.folder / "train_log.csv")
    if cfg.compile and cfg.compile_cache_dir is not None:
        use_node_local_caches()
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError(
            "TrainConfig.mixed_precision='fp16' needs a CUDA GPU (fp16 autocast with gradient scaling); "
            "on CPU use 'bf16' or 'no'"
        )
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    device = accelerator.device
    set_tf32(device, cfg.allow_tf32)

    choice: list[Any] = [None]
    if is_main:
        choice[0] = choose_run_folder(cfg, accelerator.num_processes)
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(choice)
    output_dir, fingerprint = choice[0]
    ckpt_dir = output_dir / "checkpoints"
    if is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(ckpt_dir)
    accelerator.wait_for_everyone()
    return _Process(
        accelerator,
        device,
        accelerator.process_index,
        accelerator.num_processes,
        is_main,
        output_dir,
        ckpt_dir,
        fingerprint,
    )


def run_fingerprint(cfg: TrainConfig, num_processes: int, hashes: ContentHashes) -> RunFingerprint:
    """What this run's weights depend on; reading a file that is not there or not readable is an
    error naming it and the setting it comes from."""
    try:
        return RunFingerprint(
            data=triplets_digest(cfg.triplets, hashes),
            base=model_identity(cfg.base, cfg.hub_cache_dir, hashes, f"base model ({cfg.setting_name('base')})"),
            base_model_id=model_identity(cfg.base_model_id, cfg.hub_cache_dir, hashes, "SD-Turbo source"),
            settings=cfg.fingerprint(),
            num_processes=num_processes,
        )
    finally:
        hashes.save()


def choose_run_folder(cfg: TrainConfig, num_processes: int) -> tuple[Path, RunFingerprint]:
    """The folder this run trains in, and its fingerprint.

    With ``run_per_fingerprint``: ``output_dir/<key[:12]>``, logging whether the run continues
    an earlier one or starts fresh, and what changed since the latest earlier run.
    """
    work_root = Path(cfg.output_dir)
    fingerprint = run_fingerprint(cfg, num_processes, ContentHashes(work_root / HASH_CACHE_NAME))
    if not cfg.run_per_fingerprint:
        return work_root, fingerprint
    folder = work_root / fingerprint.key[:KEY_LENGTH]
    if (folder / RUN_RECORD_NAME).is_file():
        LOG.info("run folder %s: the training data, base and settings of an earlier run", folder)
        return folder, fingerprint
    earlier = past_runs(work_root)
    if earlier:
        said = changes(earlier[-1].record, fingerprint.as_dict())
        LOG.info(
            "starting fresh in %s: since the run in %s, %s changed", folder, earlier[-1].folder, "; ".join(said)
        )
    else:
        LOG.info("starting fresh in %s (no earlier run in %s)", folder, work_root)
    if (work_root / "checkpoints").is_dir():
        LOG.info("%s/checkpoints: an earlier layout without a fingerprint, not resumed", work_root)
    write_run_record(folder, fingerprint)
    return folder, fingerprint


def resume_fingerprint(cfg: TrainConfig, process: _Process) -> dict[str, Any]:
    """What a checkpoint records and a resumption must match: the resolved settings, the data's
    and base's content, the processes."""
    fp = process.fingerprint
    return {
        **cfg.fingerprint(),
        "data": fp.data,
        "base": fp.base,
        "base_model_id": fp.base_model_id,
        "world_size": process.world,
    }


def _changed_setting(cfg: TrainConfig, key: str, saved: Any, now: Any) -> str:
    if key == "data":
        return f"the content of {cfg.setting_name('triplets')} and its images ({str(saved)[:12]} -> {str(now)[:12]})"
    if key in ("base", "base_model_id"):
        return f"{cfg.setting_name(key)} ({saved} -> {now})"
    if key == "world_size":
        return f"the processes (GPUs granted: {cfg.setting_name('num_processes')}) {saved} -> {now}"
    return f"{cfg.setting_name(key)} {saved!r} -> {now!r}"


def _start_or_resume(cfg: TrainConfig, process: _Process) -> _Start:
    """The model from the newest checkpoint (refusing one whose settings differ), else from the base."""
    latest = find_latest_checkpoint(process.ckpt_dir)
    payload = None
    if latest is not None:
        payload = read_checkpoint(latest[1])
        train_state = payload.get(TRAIN_STATE_KEY)
        if train_state is None:
            raise ValueError(f"{latest[1]} has no {TRAIN_STATE_KEY!r}; not a checkpoint of this trainer")
        model = model_from_checkpoint(
            payload, source=str(latest[1]), base_model_id=cfg.base_model_id, hub_cache_dir=cfg.hub_cache_dir
        )
        cfg = cfg.resolved(model.difix_config.preset)
        saved = train_state["fingerprint"]
        changed = [
            _changed_setting(cfg, k, saved.get(k), v)
            for k, v in resume_fingerprint(cfg, process).items()
            if saved.get(k) != v
        ]
        if changed:
            fresh = "" if cfg.run_per_fingerprint else f", or pass {cfg.setting_name('run_per_fingerprint')} true"
            raise ValueError(
                f"cannot resume from {latest[1]}: settings changed since it was written: {'; '.join(changed)}. "
                f"Set them back to resume; to start over, remove {process.ckpt_dir}{fresh}"
            )
        start_step = int(train_state["step"])
        LOG.info("resuming from %s (step %d)", latest[1], start_step)
    else:
        model = load_model(
            cfg.base, hub_cache_dir=cfg.hub_cache_dir, base_model_id=cfg.base_model_id, init_seed=cfg.seed
        )
        cfg = cfg.resolved(model.difix_config.preset)
        start_step = 0
        LOG.info("starting from %s: %s", cfg.base, describe(model))

    if cfg.timestep is not None and cfg.timestep != model.difix_config.timestep:
        LOG.info("timestep %d (the base model's is %d)", cfg.timestep, model.difix_config.timestep)
        model.set_timestep(cfg.timestep)
    return _Start(model, cfg, start_step, payload)


def _load_data(cfg: TrainConfig, start_step: int, process: _Process) -> _Data:
    """Triplets resized by the rule inference shares (hi4dfix.difix.data.model_input_size); the
    loader yields the batches of steps ``start_step + 1 .. cfg.steps`` of this process."""
    crop = parse_resolution(cfg.crop) if cfg.crop is not None else None
    person = cfg.loss_region == "person"
    dilation = cfg.loss_mask_dilation if person else None
    train_set = TripletDataset(
        read_triplets(cfg.triplets, "train", cfg.use_ref, require_masks=person),
        cfg.resolution, cfg.use_ref, cfg.long_side, crop, cfg.seed, mask_dilation=dilation,
    )  # fmt: skip
    test_triplets = read_triplets(cfg.triplets, "test", cfg.use_ref)[: cfg.val_max_items]
    test_set = TripletDataset(test_triplets, cfg.resolution, cfg.use_ref, cfg.long_side) if test_triplets else None
    resolution = log_processing_size(train_set, cfg)
    if test_set is None:
        LOG.info("no 'test' split in %s: validation is skipped", cfg.triplets)
    sampler = StepSampler(
        len(train_set),
        cfg.batch_size,
        start_step + 1,
        cfg.steps,
        cfg.seed,
        process.rank,
        process.world,
        crop is not None,
    )
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers, collate_fn=collate
    )
    return _Data(train_set, test_set, loader, resolution)


def _prepare_optimisation(cfg: TrainConfig, start: _Start, process: _Process) -> _Optimisation:
    """Loss, trainable parameters and optimizer; a resumed run restores the optimizer, RNG and
    gradient-scaler state of its checkpoint."""
    accelerator, device, payload = process.accelerator, process.device, start.checkpoint
    loss_fn = DifixLoss(
        LossConfig(
            lambda_l2=cfg.lambda_l2,
            lambda_lpips=cfg.lambda_lpips,
            lambda_gram=cfg.lambda_gram,
            gram_warmup_steps=cfg.gram_warmup_steps,
            lpips_net=cfg.lpips_net,
        )
    ).to(device)
    model = start.model
    model.to(device)
    prepare_model_for_training(model, cfg, device)
    params = [p for _, p in model.trainable_named_parameters(cfg.trainable_parts)]
    LOG.info(
        "training %d parameters (unet: %s, vae_skip: %s, loss_region: %s)",
        sum(p.numel() for p in params), cfg.unet, cfg.vae_skip, cfg.loss_region,
    )
    optimizer = make_optimizer(params, cfg, device)
    if payload is not None:
        optimizer.load_state_dict(payload["optimizer"])
        restore_rng_state(payload[TRAIN_STATE_KEY]["rng"])
    model, optimizer = accelerator.prepare(model, optimizer)
    if payload is not None and accelerator.scaler is not None and "scaler" in payload[TRAIN_STATE_KEY]:
        accelerator.scaler.load_state_dict(payload[TRAIN_STATE_KEY]["scaler"])
    return _Optimisation(model, accelerator.unwrap_model(model), params, optimizer, loss_fn)


def _train_state(cfg: TrainConfig, process: _Process, step: int) -> dict[str, Any]:
    """What a checkpoint needs besides weights and optimizer to resume at ``step``."""
    state = {
        "step": step,
        "fingerprint": resume_fingerprint(cfg, process),
        "rng": rng_state(),
        "config": dataclasses.asdict(cfg),
    }
    if process.accelerator.scaler is not None:
        state["scaler"] = process.accelerator.scaler.state_dict()
    return state


def _run_steps(
    cfg: TrainConfig, process: _Process, data: _Data, opt: _Optimisation, start_step: int
) -> tuple[list[float], dict[str, float] | None]:
    """The loop from ``start_step + 1`` to ``cfg.steps``: a step, its log row, validation and
    checkpoints when due. Returns the step times and the last validation."""
    from tqdm.auto import tqdm

    accelerator, device, is_main = process.accelerator, process.device, process.is_main
    model, core, optimizer = opt.model, opt.core, opt.optimizer
    train_log = CsvLog(process.output_dir / "train_log.csv", TRAIN_LOG_FIELDS, start_step, is_main)
    val_log = CsvLog(process.output_dir / "val_log.csv", VAL_LOG_FIELDS, start_step, is_main)

    progress = tqdm(total=cfg.steps, initial=start_step, desc="difix", disable=None if is_main else True)
    started = time.perf_counter()
    step_times = []
    last_val = None
    step = start_step
    for step, batch in zip(range(start_step + 1, cfg.steps + 1), data.loader):
        t0 = time.perf_counter()
        torch.compiler.cudagraph_mark_step_begin()  # a new step for CUDA graphs (when compiled); else a no-op
        views = batch["views"].to(device, non_blocking=True)
        targets = batch["targets"].to(device, non_blocking=True)
        emb = core.encode_prompts(batch["prompts"])
        gen = step_generator(device, cfg.seed, step, process.rank)
        with accelerator.autocast():
            pred = model(views, emb, generator=gen)
            masks = batch["masks"].to(device, non_blocking=True) if "masks" in batch else None
            terms = opt.loss_fn(pred, targets, step, generator=gen, mask=masks)
        accelerator.backward(terms["total"])
        grad_norm = float("nan")
        if cfg.max_grad_norm > 0:
            grad_norm = float(accelerator.clip_grad_norm_(opt.params, cfg.max_grad_norm))
        lr = learning_rate(cfg, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        step_times.append(dt)
        if step == start_step + 1 and opt.compile_cache is not None and is_main:
            opt.compile_cache.save()  # the training graphs, the costly part, before anything can go wrong
        # mean over processes: every rank logs and checks the same numbers
        names = list(terms)
        reduced = accelerator.reduce(torch.stack([terms[k].detach().float() for k in names]), reduction="mean")
        values = dict(zip(names, reduced.tolist()))
        train_log.write(
            {
                "step": step,
                "loss": values["total"],
                "l2": values["l2"],
                "lpips": values["lpips"],
                "gram": values["gram"],
                "grad_norm": grad_norm,
                "lr": lr,
                "step_time_s": round(dt, 4),
                "elapsed_s": round(time.perf_counter() - started, 3),
            }
        )
        progress.update(1)
        progress.set_postfix(loss=f"{values['total']:.4f}")
        if not math.isfinite(values["total"]):
            raise FloatingPointError(f"loss is {values['total']} at step {step}; lower TrainConfig.lr or use bf16/no")

        if (cfg.val_every and step % cfg.val_every == 0) or step == cfg.steps:
            if is_main:
                last_val = validate(core, data.test_set, device, accelerator.autocast, cfg.seed)
                if last_val is not None:
                    val_log.write({"step": step, **last_val})
                    LOG.info(
                        "step %d: val L2 %.5f, PSNR %.2f dB (input %.2f dB)",
                        step,
                        last_val["val_l2"],
                        last_val["val_psnr"],
                        last_val["input_psnr"],
                    )
            accelerator.wait_for_everyone()
        if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < cfg.steps:
            if is_main:
                path = process.ckpt_dir / f"model_{step}.pkl"
                save_checkpoint(path, core, optimizer.state_dict(), _train_state(cfg, process, step))
                prune_checkpoints(process.ckpt_dir, cfg.keep_checkpoints)
            accelerator.wait_for_everyone()
    progress.close()
    if step != cfg.steps:
        raise RuntimeError(f"data loader ended at step {step} before {cfg.steps}")
    if opt.compile_cache is not None and is_main:
        opt.compile_cache.save()  # now with the validation graphs too (a larger entry replaces the first)
    return step_times, last_val


def _save_final_model(
    cfg: TrainConfig,
    process: _Process,
    data: _Data,
    opt: _Optimisation,
    start_step: int,
    step_times: list[float],
    last_val: dict[str, float] | None,
) -> Path:
    """The final model (weights only: the optimizer state, 2x the trainable weights, stays in the
    checkpoints) at ``cfg.output``, and ``summary.json``; then the processes part."""
    output = Path(cfg.output)
    if process.is_main:
        if cfg.run_per_fingerprint:
            # the run folder keeps its model: a later run that fails (or whose output is deleted
            # before it reruns) leaves this one recoverable
            kept = process.output_dir / RUN_MODEL_NAME
            save_model_weights(kept, opt.core, _train_state(cfg, process, cfg.steps))
            link_or_copy(kept, output)
        else:
            save_model_weights(output, opt.core, _train_state(cfg, process, cfg.steps))
        if cfg.output_train_log is not None:
            link_or_copy(process.output_dir / "train_log.csv", Path(cfg.output_train_log), copy=True)
        timed = step_times[1:] or step_times
        summary = {
            "steps": cfg.steps,
            "resumed_from_step": start_step,
            "mean_step_time_s": float(np.mean(timed)) if timed else None,
            "resolution": list(data.resolution),
            "num_processes": process.world,
            "final_validation": last_val,
            "config": dataclasses.asdict(cfg),
        }
        write_json(process.output_dir / "summary.json", summary)
        LOG.info("wrote %s", output)
        from hi4dfix.logs import cuda_peak_memory_message  # (the tuning job does not run through job_log)

        if (peak := cuda_peak_memory_message()) is not None:
            LOG.info("%s", peak)
    process.accelerator.wait_for_everyone()
    process.accelerator.end_training()
    return output


def link_or_copy(source: Path, target: Path, copy: bool = False) -> None:
    """``target`` with ``source``'s content, atomically: a hard link (no second copy of a
    multi-GB model) where the file system allows, else (or with ``copy``) a copy."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        if copy:
            shutil.copyfile(source, tmp)
        else:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    return dataclass_parser(TrainConfig, "python -m hi4dfix.difix.train", __doc__.split("\n")[0])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    train(TrainConfig(**vars(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
