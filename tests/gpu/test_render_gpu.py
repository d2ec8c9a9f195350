"""GPU checks of hi4dfix.render: the pure-PyTorch rasterizer against gsplat, and a gsplat fit.

Run on a CUDA machine: ``pytest -m gpu tests/gpu/test_render_gpu.py -s`` (``-s`` shows the
measured differences). Skipped without CUDA or gsplat.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hi4dfix.render import RenderConfig, SourceView, fit_frame, rasterize, render_cameras
from hi4dfix.render.rasterize import gsplat_usable
from hi4dfix.scene import Camera

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture(scope="module", autouse=True)
def _gsplat():
    pytest.importorskip("gsplat")
    if not gsplat_usable():
        pytest.skip("gsplat is installed but its CUDA kernels do not build or run here")


def body_like_gaussians(n: int, seed: int, device: str = "cuda"):
    """Gaussians spread over two upright ellipsoids 3 m in front of the camera, like two people."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n, 3, generator=g)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    side = torch.where(torch.arange(n) % 2 == 0, -0.35, 0.35)
    means = dirs * torch.tensor([0.2, 0.8, 0.15]) + torch.stack([side, torch.zeros(n), torch.full((n,), 3.0)], -1)
    quats = torch.randn(n, 4, generator=g)
    scales = 0.01 + 0.03 * torch.rand(n, 3, generator=g)
    opacities = 0.3 + 0.7 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    return [t.to(device) for t in (means, quats, scales, opacities, colors)]


def camera(width: int, height: int, device: str = "cuda"):
    f = 0.9 * height * 3.0 / 1.8
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]], device=device)
    viewmat = torch.eye(4, device=device)
    viewmat[:3, 3] = torch.tensor([0.02, 0.0, 0.05], device=device)
    return viewmat, K


@pytest.mark.parametrize("tf32", [False, True], ids=["fp32", "tf32-enabled"])
@pytest.mark.parametrize("width,height,n", [(120, 160, 2000), (376, 512, 20000)])
def test_torch_backend_matches_gsplat(width, height, n, tf32, monkeypatch):
    # GPU training code enables TF32 process-wide; the torch backend must not inherit it
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", tf32)
    params = body_like_gaussians(n, seed=0)
    viewmat, K = camera(width, height)
    bg = torch.tensor([0.1, 0.2, 0.3], device="cuda")
    rgb_g, alpha_g = rasterize(*params, viewmat, K, width, height, bg, backend="gsplat")
    rgb_t, alpha_t = rasterize(*params, viewmat, K, width, height, bg, backend="torch")
    diff = (rgb_g - rgb_t).abs()
    diff_alpha = (alpha_g - alpha_t).abs()
    print(
        f"\n{width}x{height}, {n} Gaussians: rgb |diff| mean {diff.mean():.2e} max {diff.max():.2e}; "
        f"alpha |diff| mean {diff_alpha.mean():.2e} max {diff_alpha.max():.2e} (TF32 {'on' if tf32 else 'off'})"
    )
    assert alpha_g.mean() > 0.05  # something was drawn
    assert diff.mean() < 1e-3 and diff.max() < 2e-2
    assert diff_alpha.mean() < 1e-3 and diff_alpha.max() < 2e-2


def test_gradients_agree_between_backends(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    grads = {}
    for backend in ("gsplat", "torch"):
        params = [p.requires_grad_(True) for p in body_like_gaussians(2000, seed=1)]
        viewmat, K = camera(120, 160)
        rgb, alpha = rasterize(*params, viewmat, K, 120, 160, None, backend=backend)
        weights = torch.rand(160, 120, 4, generator=torch.Generator(device="cuda").manual_seed(0), device="cuda")
        (torch.cat([rgb, alpha[..., None]], -1) * weights).sum().backward()
        grads[backend] = [p.grad.flatten() for p in params]
    for name, g_gsplat, g_torch in zip(
        ["means", "quats", "scales", "opacities", "colors"], grads["gsplat"], grads["torch"]
    ):
        cosine = torch.nn.functional.cosine_similarity(g_gsplat, g_torch, dim=0).item()
        print(f"\ngradient of {name}: cosine(gsplat, torch) = {cosine:.5f}")
        assert cosine > 0.99, name


def test_gsplat_fit_reduces_loss_and_renders_every_camera():
    width, height = 120, 160
    params = body_like_gaussians(3000, seed=2)
    viewmat, K = camera(width, height)
    with torch.no_grad():
        rgb, alpha = rasterize(*params, viewmat, K, width, height, None, backend="gsplat")
    mask = (alpha > 0.5).cpu().numpy()
    image = (rgb / alpha.clamp(min=1e-6)[..., None]).clamp(0, 1).cpu().numpy()
    cam = Camera(4, K.double().cpu().numpy(), viewmat.double().cpu().numpy(), width, height)
    turned = viewmat.double().cpu().numpy().copy()
    angle = math.radians(20)
    turned[:3, :3] = np.array(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    )
    other = Camera(16, cam.K, turned, width, height)
    means = params[0].cpu().numpy()
    verts = np.stack([means[0::2], means[1::2]])  # the two "people" as (P, V, 3) vertices
    cfg = RenderConfig(backend="gsplat", device="cuda", fit_steps=60, num_gaussians=2000, pose_source="gt")
    model, losses = fit_frame(verts, [SourceView(cam, image, mask)], cfg, "gpu_test", 0, torch.device("cuda"))
    assert losses[-1] < 0.5 * losses[0], losses[:: max(1, len(losses) // 6)]
    renders = render_cameras(model, [cam, other], cfg, torch.device("cuda"))
    assert set(renders) == {4, 16}
    assert all(r.shape == (height, width, 3) for r in renders.values())
