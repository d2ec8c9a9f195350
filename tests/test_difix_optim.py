"""hi4dfix.difix.optim: clipping inside fused AdamW updates the weights as clip_grad_norm_ then the
optimizer's step does, and returns the same norm."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from hi4dfix.difix.optim import can_clip_in_optimizer, clip_and_step, total_grad_norm


def run_steps(fused_clip: bool, scale: float, max_norm: float = 1.0, fused: bool = True):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s)) for s in [(40, 30), (7,), (3, 3, 3, 3)]]
    accelerator = Accelerator(cpu=True)
    optimizer = accelerator.prepare(torch.optim.AdamW(params, lr=1e-2, fused=fused))
    norms = []
    for i in range(3):
        gen = torch.Generator().manual_seed(i)
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * scale
        norms.append(clip_and_step(accelerator, optimizer, params, max_norm, fused_clip=fused_clip))
        optimizer.zero_grad(set_to_none=True)
    return params, norms, accelerator, optimizer


@pytest.mark.parametrize("scale", [1e-3, 10.0])  # under and over the clipping norm
def test_clip_in_fused_adamw_matches_clip_grad_norm_then_step(scale):
    fused, fused_norms, accelerator, optimizer = run_steps(True, scale)
    assert can_clip_in_optimizer(accelerator, optimizer)
    separate, separate_norms, _, _ = run_steps(False, scale)
    for a, b in zip(fused, separate):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.stack(fused_norms), torch.stack(separate_norms))
    assert not hasattr(optimizer.optimizer, "grad_scale")  # left as GradScaler expects it


def test_without_clipping_or_fused_adamw_the_step_is_plain():
    _, norms, _, _ = run_steps(True, 10.0, max_norm=0.0)
    assert norms == [None, None, None]
    _, norms, accelerator, optimizer = run_steps(True, 10.0, fused=False)
    assert not can_clip_in_optimizer(accelerator, optimizer)
    assert all(float(n) > 1.0 for n in norms)


def test_total_grad_norm_skips_parameters_without_gradients():
    a, b = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(3))
    a.grad = torch.full((4,), 2.0)
    assert float(total_grad_norm([a, b])) == pytest.approx(4.0)
