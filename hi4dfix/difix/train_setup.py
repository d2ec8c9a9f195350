"""What a tuning run sets up before its loop: TF32, the model made trainable as its config says
(UNet LoRA, gradient checkpointing, channels-last, compilation) and its optimizer."""

from __future__ import annotations

import torch

from hi4dfix.difix.memory_format import channels_last_wanted, to_channels_last
from hi4dfix.difix.model import DifixModel, add_unet_lora, unet_lora_rank
from hi4dfix.difix.train_config import TrainConfig


def prepare_model_for_training(model: DifixModel, cfg: TrainConfig, device: torch.device) -> None:
    """Trainable parameters, checkpointing, cuDNN autotuning and compilation as ``cfg`` says.

    Compiled on CUDA the step runs as CUDA graphs (``cfg.compile_mode``): compiled but
    launched kernel by kernel, the full-size step was bound by the CPU's launches (~205 ms a
    step for ~154 ms of GPU work at 512 px on an H100, BENCHMARKS.md).  Channels-last
    (``hi4dfix.difix.memory_format``, on by default when compiled on CUDA): 93 against 133 ms a compiled
    step at 512 px on an H200, as cuDNN's layout copies go.  Over 200 bf16 steps both compiled
    layouts stay within 1.0% of exact float32's losses, closer than eager bf16 (2.0%): compiled
    kernels round less (BENCHMARKS.md).
    """
    prepare_unet_lora(model, cfg)
    model.set_train(cfg.trainable_parts)
    model.joint_view_attention = cfg.mv_attention
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
