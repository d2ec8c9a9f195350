"""The end of a training step: gradient clipping and the optimizer's update.

``clip_and_step`` clips inside fused AdamW's kernel where it can: the total norm is one read of the
gradients, and the clip factor reaches the kernel as its ``grad_scale`` (the hook ``GradScaler``
uses), so the separate in-place multiply over every gradient (a read and a write of ~3.5 GB at full
size) disappears. The weights get the same update up to float32 rounding (``g / (1 / c)`` for
``g * c``); the returned norm is the one ``clip_grad_norm_`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

NORM_EPS = 1e-6  # clip_grad_norm_'s: factor max_norm / (norm + 1e-6), at most 1


def fused_adamw(optimizer) -> torch.optim.AdamW | None:
    """The fused AdamW inside ``optimizer`` (an accelerate wrapper or the optimizer), else None."""
    inner = getattr(optimizer, "optimizer", optimizer)
    if isinstance(inner, torch.optim.AdamW) and all(g.get("fused") for g in inner.param_groups):
        return inner
    return None


def can_clip_in_optimizer(accelerator, optimizer) -> bool:
    """Whether ``clip_and_step`` can clip inside the optimizer: fused AdamW, no fp16 gradient
    scaler (it owns ``grad_scale``), and plain or DDP gradients (FSDP and DeepSpeed clip their own)."""
    from accelerate.utils import DistributedType

    return (
        fused_adamw(optimizer) is not None
        and getattr(accelerator, "scaler", None) is None
        and accelerator.distributed_type in (DistributedType.NO, DistributedType.MULTI_GPU)
    )


def total_grad_norm(params: Sequence[torch.nn.Parameter]) -> torch.Tensor:
    """The 2-norm of all gradients together, as ``clip_grad_norm_`` computes it (per-device
    ``_foreach_norm``, then the norm of the norms), without touching the gradients."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norms = []
    by_device: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for g in grads:
        by_device.setdefault((g.device, g.dtype), []).append(g)
    device = grads[0].device
    for group in by_device.values():
        norms.extend(n.to(device) for n in torch._foreach_norm(group, 2.0))
    return torch.linalg.vector_norm(torch.stack(norms), 2.0)


def clip_and_step(accelerator, optimizer, params: Sequence[torch.nn.Parameter], max_norm: float,
                  fused_clip: bool = False) -> torch.Tensor | None:
    """Clip the gradients of ``params`` to ``max_norm`` (0: no clipping) and step ``optimizer``.
    Returns the total norm before clipping (a tensor; None without clipping). ``fused_clip``: clip
    inside fused AdamW where ``can_clip_in_optimizer`` allows, else (and by default, until the GPU
    tests have run with it: BENCHMARKS.md) as accelerate does, the trainer's way."""
    if max_norm <= 0:
        optimizer.step()
        return None
    if not (fused_clip and can_clip_in_optimizer(accelerator, optimizer)):
        norm = accelerator.clip_grad_norm_(params, max_norm)
        optimizer.step()
        return norm
    norm = total_grad_norm(params)
    inner = fused_adamw(optimizer)
    # the kernel divides each gradient by grad_scale: 1 / clip factor, at least 1
    inner.grad_scale = torch.clamp((norm.float() + NORM_EPS) / max_norm, min=1.0)
    try:
        optimizer.step()
    finally:
        del inner.grad_scale
    return norm
