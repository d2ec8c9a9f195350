"""Fine-tune Difix on triplets: ``python -m hi4dfix.difix.train`` or ``train(TrainConfig(...))``.

The settings are ``hi4dfix.difix.train_config.TrainConfig``; run folders and resumption,
``hi4dfix.difix.runs``.

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

A checkpoint is resumed only by a run with its fingerprint (``hi4dfix.difix.runs``): the
training data's content, the base model's, the settings that decide the weights and the number
of processes.  With ``run_per_fingerprint`` (the workflow's way) each fingerprint trains in a
folder of its own, ``output_dir/<key[:12]>/``, which keeps its final model (``model.pkl``) and
logs: a run whose data or settings changed starts fresh there and says what changed, and the
earlier folders, with their models, stay.  Without it, a checkpoint of another fingerprint in
``output_dir`` is an error naming what changed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hi4dfix.config_cli import dataclass_parser
from hi4dfix.difix.checkpoint import load_model
from hi4dfix.difix.compile_cache import CompileKey, StudyCompileCache, open_study_cache, use_node_local_caches
from hi4dfix.difix.data import (
    StepSampler,
    TripletDataset,
    collate,
    load_training_triplets,
    model_input_size,
    parse_resolution,
)
from hi4dfix.difix.losses import DifixLoss, LossConfig
from hi4dfix.difix.memory_format import channels_last_wanted
from hi4dfix.difix.model import DifixModel, describe
from hi4dfix.difix.official_pkl import (
    TRAIN_STATE_KEY,
    model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
    save_model_weights,
)
from hi4dfix.difix.runs import (
    RUN_MODEL_NAME,
    CsvLog,
    RunFingerprint,
    changed_setting,
    choose_run_folder,
    find_latest_checkpoint,
    last_good_model,
    link_or_copy,
    prune_checkpoints,
    remove_stale_temporaries,
    restore_rng_state,
    resume_fingerprint,
    rng_state,
)
from hi4dfix.difix.train_config import TrainConfig
from hi4dfix.difix.train_setup import make_optimizer, prepare_model_for_training, set_tf32
from hi4dfix.io import read_image, write_json
from hi4dfix.logs import log_to_stderr
from hi4dfix.metrics import psnr_from_mse
from hi4dfix.progress import Progress

LOG = logging.getLogger("hi4dfix.difix.train")
TRAIN_LOG_FIELDS = ["step", "loss", "l2", "lpips", "gram", "grad_norm", "lr", "step_time_s", "elapsed_s"]
VAL_LOG_FIELDS = ["step", "val_l2", "val_psnr", "input_psnr", "n_items"]


# ----------------------------------------------------------------------------- helpers


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


def effective_batch_message(batch_size: int, processes: int) -> str:
    """The samples of one optimisation step, in words: processes x per-process batch."""
    return (
        f"effective batch {processes * batch_size} ({processes} process{'es' if processes != 1 else ''} "
        f"x batch_size {batch_size}): one step averages the gradients of {processes * batch_size} samples"
    )


def log_effective_batch(cfg: TrainConfig, processes: int) -> None:
    """Log the effective batch, the samples the whole run sees and the cross-view attention setting."""
    LOG.info(
        "%s; %d samples over %d steps; cross-view attention in training: %s",
        effective_batch_message(cfg.batch_size, processes), processes * cfg.batch_size * cfg.steps, cfg.steps,
        "on" if cfg.mv_attention else "off (views denoised independently)",
    )  # fmt: skip


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
    if process.is_main:
        log_effective_batch(cfg, process.world)
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
        _open_tracker(cfg, accelerator, output_dir)
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


def _open_tracker(cfg: TrainConfig, accelerator: Any, output_dir: Path) -> None:
    """Start ``cfg.log_with``'s tracker in the run folder (main process): ``accelerator.log`` then writes
    there; ``end_training`` closes it."""
    from hi4dfix.difix.trackers import hyperparameters, make_tracker

    tracker = make_tracker(cfg.log_with, output_dir)
    if tracker is None:
        return
    # accelerate takes tracker objects as given; the folder is only known once the run folder is chosen
    accelerator.log_with = [tracker]
    accelerator.init_trackers(output_dir.name, config=hyperparameters(dataclasses.asdict(cfg)))
    LOG.info("training curves (%s) under %s", cfg.log_with, output_dir / "trackers")


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
            changed_setting(cfg, k, saved.get(k), v)
            for k, v in resume_fingerprint(cfg, process.fingerprint, process.world).items()
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
        load_training_triplets(cfg.triplets, "train", cfg.use_ref, require_masks=person),
        cfg.resolution, cfg.use_ref, cfg.long_side, crop, cfg.seed, mask_dilation=dilation,
    )  # fmt: skip
    test_triplets = load_training_triplets(cfg.triplets, "test", cfg.use_ref)[: cfg.val_max_items]
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
            gram_crop=cfg.gram_crop,
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
        "fingerprint": resume_fingerprint(cfg, process.fingerprint, process.world),
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
    accelerator, device, is_main = process.accelerator, process.device, process.is_main
    model, core, optimizer = opt.model, opt.core, opt.optimizer
    train_log = CsvLog(process.output_dir / "train_log.csv", TRAIN_LOG_FIELDS, start_step, is_main)
    val_log = CsvLog(process.output_dir / "val_log.csv", VAL_LOG_FIELDS, start_step, is_main)

    # one process's progress lines, in plain lines a Slurm log keeps readable (hi4dfix.progress)
    progress = Progress(cfg.steps, "tune DiFix", start=start_step, emit=None if is_main else (lambda line: None))
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
        if cfg.log_with != "none":
            curves = {f"train/{'loss' if k == 'total' else k}": v for k, v in values.items()}  # the CSV's names
            accelerator.log(curves | {"train/lr": lr}, step=step)
        progress.update(loss=values["total"])
        if not math.isfinite(values["total"]):
            raise FloatingPointError(f"loss is {values['total']} at step {step}; lower TrainConfig.lr or use bf16/no")

        if (cfg.val_every and step % cfg.val_every == 0) or step == cfg.steps:
            if is_main:
                last_val = validate(core, data.test_set, device, accelerator.autocast, cfg.seed)
                if last_val is not None:
                    val_log.write({"step": step, **last_val})
                    if cfg.log_with != "none":
                        accelerator.log({f"val/{k}": v for k, v in last_val.items()}, step=step)
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
            "effective_batch": process.world * cfg.batch_size,
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


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    return dataclass_parser(TrainConfig, "python -m hi4dfix.difix.train", __doc__.split("\n")[0])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    train(TrainConfig(**vars(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
