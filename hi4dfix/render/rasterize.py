"""One rasterization entry point with two backends: gsplat (CUDA) and pure PyTorch (any device)."""

from __future__ import annotations

import functools
from typing import Literal

import torch
from torch import Tensor

from hi4dfix.render.torch_backend import TorchRasterConfig, rasterize_torch

Backend = Literal["auto", "torch", "gsplat"]
BACKENDS = ("auto", "torch", "gsplat")


@functools.lru_cache(maxsize=1)
def gsplat_usable() -> bool:
    """True when CUDA is present and gsplat's kernels build and run (checked once per process)."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat

        one = torch.ones(1, device="cuda")
        gsplat.rasterization(
            means=torch.tensor([[0.0, 0.0, 2.0]], device="cuda"),
            quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]], device="cuda"),
            scales=torch.full((1, 3), 0.1, device="cuda"),
            opacities=0.5 * one,
            colors=torch.ones(1, 3, device="cuda"),
            viewmats=torch.eye(4, device="cuda")[None],
            Ks=torch.tensor([[[8.0, 0.0, 8.0], [0.0, 8.0, 8.0], [0.0, 0.0, 1.0]]], device="cuda"),
            width=16,
            height=16,
        )
        return True
    except Exception:  # no compiler, wrong arch, missing package: fall back to torch
        return False


def resolve_backend(backend: str) -> str:
    """Map ``auto`` to ``gsplat`` when it can run here, else ``torch``; validate the name."""
    if backend not in BACKENDS:
        raise ValueError(f"render backend {backend!r}: expected one of {BACKENDS}")
    if backend == "auto":
        return "gsplat" if gsplat_usable() else "torch"
    return backend


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    background: Tensor | None = None,
    backend: Backend = "auto",
    torch_cfg: TorchRasterConfig = TorchRasterConfig(),
) -> tuple[Tensor, Tensor]:
    """Render Gaussians into one pinhole camera.

    means (N, 3) world, quats (N, 4) wxyz (any norm), scales (N, 3) activated,
    opacities (N,) in [0, 1], colors (N, D), viewmat (4, 4) world-to-camera (OpenCV axes),
    K (3, 3) pixels, background (D,) or None (black, alpha not applied).
    Returns rgb (H, W, D) = sum_i w_i c_i + (1 - alpha) * background, and alpha (H, W).
    """
    name = resolve_backend(backend)
    dtypes = {t.dtype for t in (means, quats, scales, opacities, colors)}
    if len(dtypes) != 1:
        raise ValueError(f"rasterize: Gaussian parameters mix dtypes {sorted(map(str, dtypes))}")
    if name == "torch":
        viewmat, K = viewmat.to(means), K.to(means)
        return rasterize_torch(
            means, quats, scales, opacities, colors, viewmat, K, width, height, background, torch_cfg
        )

    if means.device.type != "cuda":
        raise ValueError(f"render backend 'gsplat' needs CUDA tensors, got device {means.device}")
    import gsplat

    rgb, alpha, _meta = gsplat.rasterization(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        colors=colors,
        viewmats=viewmat.to(means)[None],
        Ks=K.to(means)[None],
        width=width,
        height=height,
        near_plane=torch_cfg.near_plane,
        far_plane=torch_cfg.far_plane,
        eps2d=torch_cfg.eps2d,
    )
    rgb, alpha = rgb[0], alpha[0, ..., 0]
    if background is not None:
        # composited here: gsplat 1.5.3's packed mode (its default) rejects per-camera backgrounds
        rgb = rgb + (1.0 - alpha[..., None]) * background.to(rgb)
    return rgb, alpha
