"""Channels-last Difix (hi4dfix.difix.memory_format): the same function and gradients as the NCHW model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from difix_fixtures import difix_with_active_adapters, loss_and_grads
from hi4dfix.difix.infer import fix_images, prepare_for_inference
from hi4dfix.difix.memory_format import (
    ChannelMomentsGroupNorm,
    channels_last_wanted,
    group_norm_from_channel_moments,
    to_channels_last,
    use_channel_moments_group_norm,
)
from hi4dfix.difix.train_config import TrainConfig
from hi4dfix.difix.train_setup import prepare_model_for_training

torch.set_num_threads(1)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("offset", [0.0, 300.0])
def test_channel_moments_group_norm_equals_group_norm(channels_last, offset):
    """Values and gradients against float64 group_norm, as accurate as torch's own float32 group
    norm, also for activations whose mean is far larger than their spread (where a
    sum-of-squares variance would cancel)."""
    gen = torch.Generator().manual_seed(int(offset) + channels_last)
    x = torch.randn(2, 48, 9, 7, generator=gen) + offset
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(48, generator=gen), torch.randn(48, generator=gen)
    grad_out = torch.randn(2, 48, 9, 7, generator=gen)

    def run(fn, dtype):
        inputs = [t.to(dtype).requires_grad_(True) for t in (x, weight, bias)]
        out = fn(inputs[0], 6, inputs[1], inputs[2], 1e-6)
        return [out.double()] + [g.double() for g in torch.autograd.grad(out, inputs, grad_out.to(dtype))]

    exact = run(F.group_norm, torch.float64)
    torch_fp32 = run(F.group_norm, torch.float32)
    tested = run(group_norm_from_channel_moments, torch.float32)
    assert tested[0].dtype == torch.float64 and tested[0].shape == x.shape
    for got, reference, want in zip(tested, torch_fp32, exact):
        error, reference_error = (got - want).abs().max(), (reference - want).abs().max()
        assert error <= 4 * reference_error + 1e-6 * want.abs().max(), (error, reference_error)


def test_output_dtype_follows_group_norm():
    x = torch.randn(1, 8, 4, 4).bfloat16()
    assert group_norm_from_channel_moments(x, 2, None, None, 1e-5).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):  # CPU autocast keeps group norm's dtype (CUDA's: fp32)
        assert group_norm_from_channel_moments(x, 2, None, None, 1e-5).dtype == F.group_norm(x, 2).dtype
    with pytest.raises(ValueError, match="10 channels do not split into 4 groups"):
        group_norm_from_channel_moments(torch.randn(1, 10, 2, 2), 4, None, None, 1e-5)


def test_swapped_group_norms_keep_their_parameters_and_keys():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GroupNorm(2, 8), torch.nn.Sequential(
        torch.nn.GroupNorm(4, 8, affine=False)))
    weight = model[1].weight
    keys = list(model.state_dict())
    assert use_channel_moments_group_norm(model) == 2
    assert isinstance(model[1], ChannelMomentsGroupNorm) and isinstance(model[2][0], ChannelMomentsGroupNorm)
    assert model[1].weight is weight and list(model.state_dict()) == keys
    assert model[2][0].weight is None and model[2][0].num_groups == 4
    assert use_channel_moments_group_norm(model) == 0  # already swapped


def test_channels_last_training_step_matches_nchw():
    """One training step's loss and every trainable gradient, channels-last (with the swapped
    group norms and channels-last convolution inputs) against the NCHW model."""
    nchw, cl = difix_with_active_adapters(5), difix_with_active_adapters(5)
    for model, layout in ((nchw, False), (cl, True)):
        prepare_model_for_training(model, TrainConfig(triplets="-", output="-", output_dir="-",
                                                      channels_last=layout), torch.device("cpu"))
    assert isinstance(cl.vae.decoder.conv_norm_out, ChannelMomentsGroupNorm)
    assert cl.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert type(nchw.vae.decoder.conv_norm_out) is torch.nn.GroupNorm

    shortcut_inputs = []  # diffusers makes these NCHW in training; the layout hook turns them back
    shortcut = next(m for n, m in cl.unet.named_modules() if n.endswith("conv_shortcut"))
    shortcut.register_forward_hook(lambda m, args, out: shortcut_inputs.append(args[0]))

    views = torch.rand(1, 2, 3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    emb = nchw.encode_prompts(["remove degradation"])
    loss_nchw, grads_nchw = loss_and_grads(nchw, views, emb)
    loss_cl, grads_cl = loss_and_grads(cl, views, emb)
    assert shortcut_inputs and shortcut_inputs[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(loss_cl, loss_nchw, rtol=1e-5)
    assert grads_cl.keys() == grads_nchw.keys()
    for name, grad in grads_nchw.items():
        scale = grad.abs().max().clamp_min(1e-12)
        assert (grads_cl[name] - grad).abs().max() <= 1e-4 * scale, name


def test_channels_last_inference_fixes_images_as_nchw():
    """prepare_for_inference(channels_last=True), as compiled CUDA runs set it up, on the CPU."""
    image = np.random.default_rng(1).random((32, 48, 3), dtype=np.float32)
    ref = np.random.default_rng(2).random((32, 48, 3), dtype=np.float32)
    fixed = {}
    for layout in (False, True):
        model = prepare_for_inference(difix_with_active_adapters(5), torch.device("cpu"), channels_last=layout)
        fixed[layout] = fix_images(model, [image], [ref])[0]
    # fp32 rounding of the two layouts' kernels: 1.2e-5 on a fresh setup (images in [0, 1])
    assert np.abs(fixed[True] - fixed[False]).max() < 1e-4


def test_to_channels_last_is_idempotent():
    model = difix_with_active_adapters(5)
    to_channels_last(model)
    hooks = sum(len(m._forward_pre_hooks) for m in model.modules())
    to_channels_last(model)
    assert sum(len(m._forward_pre_hooks) for m in model.modules()) == hooks


def test_channels_last_by_default_only_when_compiled_on_cuda():
    """Unset, the layout follows the compiled CUDA path; eager and CPU runs (the delta table's)
    keep NCHW; a setting given wins."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert channels_last_wanted(None, compiled=True, device=cuda)
    assert not channels_last_wanted(None, compiled=False, device=cuda)
    assert not channels_last_wanted(None, compiled=True, device=cpu)
    assert not channels_last_wanted(False, compiled=True, device=cuda)
    assert channels_last_wanted(True, compiled=False, device=cpu)


def test_compiled_training_setup_on_cpu_keeps_nchw_and_one_graph_under_ddp():
    model = difix_with_active_adapters(5)
    with torch._dynamo.config.patch(optimize_ddp="ddp_optimizer"):
        prepare_model_for_training(
            model, TrainConfig(triplets="-", output="-", output_dir="-", compile=True), torch.device("cpu")
        )
        # dynamo would otherwise split the compiled step at DDP's gradient buckets (slower: BENCHMARKS.md)
        assert torch._dynamo.config.optimize_ddp == "no_optimization"
    assert model._compiled_fix is not None
    assert type(model.vae.decoder.conv_norm_out) is torch.nn.GroupNorm
    assert not model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
