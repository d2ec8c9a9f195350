"""Channels-last memory layout for the Difix model on GPUs.

cuDNN's tensor-core convolutions work on NHWC tensors: given NCHW (PyTorch's default) they
copy every input to NHWC and every output back, which took ~30 ms of a 145 ms training step
at 512 px on an H100 (BENCHMARKS.md).  Stored channels-last, the copies go, but
``torch.nn.GroupNorm`` then reduces each group over memory that is strided by the channel
count.  ``ChannelMomentsGroupNorm`` computes the same normalisation from per-channel moments,
a reduction over H and W for every channel that reads contiguous channels in NHWC (as a
channels-last batch norm does), then combines the channels of a group exactly (law of total
variance, equal counts): compiled inference at 512 px took 17.9 ms a view with it, 21.9 ms
with torch's, on an H200.
"""

from __future__ import annotations

import torch


def channels_last_wanted(setting: bool | None, compiled: bool, device: torch.device) -> bool:
    """A ``channels_last`` setting resolved: None means on when compiled on CUDA (eager and CPU
    runs keep NCHW, so their numbers do not move)."""
    return (compiled and device.type == "cuda") if setting is None else setting


def group_norm_from_channel_moments(
    x: torch.Tensor, num_groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """``torch.nn.functional.group_norm`` via per-channel mean and variance (fp32).

    The result has ``group_norm``'s dtype: float32 under CUDA autocast (which runs group norm
    in float32), the input's otherwise (CPU autocast leaves group norm in the input's dtype).
    """
    n, c = x.shape[:2]
    if c % num_groups:
        raise ValueError(f"{c} channels do not split into {num_groups} groups")
    spatial = tuple(range(2, x.ndim))
    values = x.float()
    var_c, mean_c = torch.var_mean(values, dim=spatial, correction=0)
    mean_c = mean_c.view(n, num_groups, c // num_groups)
    var_c = var_c.view(n, num_groups, c // num_groups)
    mean = mean_c.mean(-1, keepdim=True)
    var = var_c.mean(-1, keepdim=True) + (mean_c - mean).square().mean(-1, keepdim=True)
    scale = torch.rsqrt(var + eps).expand_as(mean_c).reshape(n, c)
    shift = -mean.expand_as(mean_c).reshape(n, c) * scale
    if weight is not None:
        weight = weight.float()
        scale, shift = scale * weight, shift * weight
    if bias is not None:
        shift = shift + bias.float()
    broadcast = (n, c) + (1,) * len(spatial)
    out = values * scale.view(broadcast) + shift.view(broadcast)
    return out if x.device.type == "cuda" and torch.is_autocast_enabled("cuda") else out.to(x.dtype)


class ChannelMomentsGroupNorm(torch.nn.GroupNorm):
    """A ``GroupNorm`` (same parameters and state-dict keys) computed from channel moments."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm_from_channel_moments(x, self.num_groups, self.weight, self.bias, self.eps)


def use_channel_moments_group_norm(root: torch.nn.Module) -> int:
    """Replace every plain ``GroupNorm`` under ``root`` by a ``ChannelMomentsGroupNorm`` holding
    the same parameter tensors; returns how many were replaced."""
    replaced = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.GroupNorm:
                norm = ChannelMomentsGroupNorm.__new__(ChannelMomentsGroupNorm)
                norm.__dict__.update(child.__dict__)  # the same parameters, hooks and settings
                setattr(parent, name, norm)
                replaced += 1
    return replaced


def _channels_last_input(module: torch.nn.Module, args: tuple) -> tuple:
    x = args[0]
    return (x.contiguous(memory_format=torch.channels_last), *args[1:]) if x.ndim == 4 else args


def to_channels_last(model: torch.nn.Module) -> None:
    """Weights channels-last, group norms that suit it, and every convolution's input
    channels-last: diffusers' ResnetBlock2D calls ``.contiguous()`` (NCHW) on its shortcut
    input in training, and compiled, inductor fused that transposing copy into a group-norm
    kernel that then took ~25 ms of the step (BENCHMARKS.md).  On a channels-last input the
    hook is a no-op."""
    model.to(memory_format=torch.channels_last)
    use_channel_moments_group_norm(model)
    for module in model.modules():
        already = _channels_last_input in module._forward_pre_hooks.values()
        if isinstance(module, torch.nn.Conv2d) and not already:
            module.register_forward_pre_hook(_channels_last_input)


def uses_channels_last(model: torch.nn.Module) -> bool:
    """Whether :func:`to_channels_last` set ``model`` up (its convolutions carry the input hook)."""
    return any(
        _channels_last_input in module._forward_pre_hooks.values()
        for module in model.modules()
        if isinstance(module, torch.nn.Conv2d)
    )
