"""A small, differentiable, pure-PyTorch 3D Gaussian splatting rasterizer for CPU.

It follows gsplat's "classic" pinhole math so that both backends give the same image:
covariance from (wxyz quaternion, scale), EWA projection with the perspective Jacobian
(view-frustum clamped as gsplat does), a 0.3 px^2 low-pass dilation (``eps2d``), an
opacity-aware bounding box, pixel centres at +0.5, alpha clamped to 0.999, contributions
below 1/255 skipped, and front-to-back compositing that stops once transmittance would
fall to 1e-4.

Speed and memory come from tiling: each Gaussian is listed only in the screen tiles its
bounding box touches, and tiles are composited in buckets of similar list length so that
padding wastes at most half the work. Buckets are gradient-checkpointed when the whole
image would hold too many (pixel, Gaussian) pairs in memory at once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

ALPHA_MIN = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD
ALPHA_MAX = 0.999  # gsplat clamps each splat's alpha here
TRANSMITTANCE_MIN = 1e-4  # gsplat stops a pixel once transmittance would reach this


@dataclass(frozen=True)
class TorchRasterConfig:
    """Knobs of the CPU rasterizer; the defaults match gsplat's rasterization()."""

    near_plane: float = 0.01
    far_plane: float = 1e10
    eps2d: float = 0.3  # px^2 added to the projected covariance (gsplat default)
    tile_size: int = 4  # small tiles suit the few-pixel splats of small images (fastest on CPU)
    max_bucket_pairs: int = 1 << 22  # (pixel, Gaussian) pairs composited at once: bounds peak memory
    checkpoint_above_pairs: int = 1 << 24  # beyond this many pairs per image, recompute in backward

    def __post_init__(self) -> None:
        if self.tile_size < 1:
            raise ValueError(f"torch rasterizer tile_size must be >= 1, got {self.tile_size}")
        if self.max_bucket_pairs < 1:
            raise ValueError(f"torch rasterizer max_bucket_pairs must be >= 1, got {self.max_bucket_pairs}")


@dataclass(frozen=True)
class Projected:
    """Per-Gaussian screen-space quantities for one camera."""

    means2d: Tensor  # (N, 2) pixels
    conics: Tensor  # (N, 3) upper triangle (a, b, c) of the inverse 2D covariance
    depths: Tensor  # (N,) camera z
    radii: Tensor  # (N, 2) int bounding-box half-sizes in pixels; 0 = culled


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """(N, 4) wxyz quaternions (any norm) -> (N, 3, 3) rotation matrices."""
    w, x, y, z = torch.unbind(quats / quats.norm(dim=-1, keepdim=True), dim=-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def small_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for small (..., m, k) x (..., k, n) matrices as a broadcast sum: exact fp32 on
    GPUs too, where matmuls may run in TF32 and shift splat centres by ~0.1 px."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(dim=-2)


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """Sigma = R S S^T R^T, (N, 3, 3)."""
    M = quat_to_rotmat(quats) * scales[..., None, :]
    return small_matmul(M, M.transpose(-1, -2))


def project_gaussians(
    means: Tensor,
    covars: Tensor,
    opacities: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    cfg: TorchRasterConfig,
) -> Projected:
    """EWA-project world-space Gaussians into one pinhole camera."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    means_c = small_matmul(means, R.T) + t
    covars_c = small_matmul(small_matmul(R, covars), R.T)
    tx, ty, tz = means_c.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    safe_tz = torch.where(tz > cfg.near_plane, tz, torch.ones_like(tz))  # culled below anyway

    # gsplat clamps the point used by the Jacobian to 1.3x the frustum to tame edge splats
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    jx = safe_tz * torch.clamp(tx / safe_tz, min=-lim_x_neg, max=lim_x_pos)
    jy = safe_tz * torch.clamp(ty / safe_tz, min=-lim_y_neg, max=lim_y_pos)
    zeros = torch.zeros_like(tz)
    J = torch.stack(
        [fx / safe_tz, zeros, -fx * jx / safe_tz**2, zeros, fy / safe_tz, -fy * jy / safe_tz**2], dim=-1
    ).reshape(-1, 2, 3)
    cov2d = small_matmul(small_matmul(J, covars_c), J.transpose(-1, -2))
    cov2d = cov2d + cfg.eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    a, b, c = cov2d[:, 0, 0], 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]), cov2d[:, 1, 1]
    det = (a * c - b * b).clamp(min=1e-10)
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)
    means2d = torch.stack([fx * tx / safe_tz + cx, fy * ty / safe_tz + cy], dim=-1)

    with torch.no_grad():
        # opacity-aware extent: beyond it alpha < 1/255 (gsplat, after arXiv 2402.00525)
        opac = opacities.detach()
        extend = torch.sqrt(2.0 * torch.log(opac.clamp(min=ALPHA_MIN) / ALPHA_MIN)).clamp(max=3.33)
        radii = torch.stack([torch.ceil(extend * a.sqrt()), torch.ceil(extend * c.sqrt())], dim=-1)
        visible = (
            (a * c - b * b > 0)
            & (tz > cfg.near_plane)
            & (tz < cfg.far_plane)
            & (opac >= ALPHA_MIN)
            & (means2d[:, 0] + radii[:, 0] > 0)
            & (means2d[:, 0] - radii[:, 0] < width)
            & (means2d[:, 1] + radii[:, 1] > 0)
            & (means2d[:, 1] - radii[:, 1] < height)
        )
        radii = torch.where(visible[:, None], radii, torch.zeros_like(radii)).long()
    return Projected(means2d=means2d, conics=conics, depths=tz, radii=radii)


@torch.no_grad()
def tile_lists(proj: Projected, width: int, height: int, tile_size: int) -> tuple[Tensor, Tensor]:
    """Depth-sorted Gaussian ids per tile.

    Returns ``(lists, counts)``: ``lists`` (n_tiles, max_count) int64 padded with -1, in
    front-to-back order, and ``counts`` (n_tiles,).
    """
    device = proj.means2d.device
    tiles_x, tiles_y = -(-width // tile_size), -(-height // tile_size)
    n_tiles = tiles_x * tiles_y
    centre = proj.means2d.detach() / tile_size
    half = proj.radii.to(centre.dtype) / tile_size
    lo = torch.floor(centre - half).long()
    hi = torch.ceil(centre + half).long()  # exclusive, as gsplat
    lo[:, 0].clamp_(0, tiles_x), hi[:, 0].clamp_(0, tiles_x)
    lo[:, 1].clamp_(0, tiles_y), hi[:, 1].clamp_(0, tiles_y)
    span = (hi - lo).clamp(min=0)
    span = torch.where((proj.radii > 0).all(dim=-1, keepdim=True), span, torch.zeros_like(span))
    per_gauss = span[:, 0] * span[:, 1]
    if int(per_gauss.sum()) == 0:
        return torch.full((n_tiles, 0), -1, dtype=torch.long, device=device), torch.zeros(
            n_tiles, dtype=torch.long, device=device
        )

    # one (tile, gaussian) pair per covered tile, Gaussians visited front to back
    order = torch.argsort(proj.depths.detach(), stable=True)
    order = order[per_gauss[order] > 0]
    counts_g = per_gauss[order]
    gauss = torch.repeat_interleave(order, counts_g)
    first = torch.cumsum(counts_g, 0) - counts_g
    local = torch.arange(gauss.numel(), device=device) - torch.repeat_interleave(first, counts_g)
    width_g = span[gauss, 0]
    tile_x = lo[gauss, 0] + local % width_g
    tile_y = lo[gauss, 1] + local // width_g
    tile = tile_y * tiles_x + tile_x
    # stable sort by tile keeps the depth order inside each tile
    by_tile = torch.argsort(tile, stable=True)
    tile, gauss = tile[by_tile], gauss[by_tile]
    counts = torch.bincount(tile, minlength=n_tiles)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(tile.numel(), device=device) - starts[tile]
    lists = torch.full((n_tiles, int(counts.max())), -1, dtype=torch.long, device=device)
    lists[tile, slot] = gauss
    return lists, counts


@contextlib.contextmanager
def _tf32_off() -> Iterator[None]:
    """CUDA matmuls in full fp32 inside, whatever the process-wide TF32 setting."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


class _Fp32Matmul(torch.autograd.Function):
    """``a @ b`` with full fp32 precision in forward and backward.

    The splat exponent is a quadratic form whose terms reach ~1e2 and cancel to O(1), which
    TF32's 10-bit mantissa (enabled process-wide by most GPU training code) cannot resolve, so
    the rasterizer must not inherit it (tests/gpu/test_render_gpu.py checks with TF32 on).
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(a, b)
        with _tf32_off():
            return torch.matmul(a, b)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        a, b = ctx.saved_tensors
        with _tf32_off():
            grad_a = torch.matmul(grad, b.transpose(-1, -2)) if ctx.needs_input_grad[0] else None
            grad_b = torch.matmul(a.transpose(-1, -2), grad) if ctx.needs_input_grad[1] else None
        if grad_b is not None and grad_b.shape != b.shape:  # a was broadcast over b's batch
            grad_b = grad_b.sum_to_size(b.shape)
        if grad_a is not None and grad_a.shape != a.shape:
            grad_a = grad_a.sum_to_size(a.shape)
        return grad_a, grad_b


def _composite_bucket(pixels: Tensor, origins: Tensor, ids: Tensor, packed: Tensor) -> tuple[Tensor, Tensor]:
    """Front-to-back compositing of the pixels of t tiles against each tile's K Gaussians.

    pixels (P, 2) tile-local pixel centres, origins (t, 2) tile corners, ids (t, K) padded
    with -1, packed (N, 6 + D) per Gaussian: mean2d (2), conic a b c (3), opacity, colour.
    The exponent log(opacity) - Mahalanobis/2 is a quadratic in tile-local pixel coordinates,
    so every (pixel, Gaussian) pair comes out of one batched matmul; local coordinates keep
    it exact in float32.
    """
    g = packed[ids.clamp(min=0)]  # (t, K, 6 + D): one gather for everything
    mx, my = g[..., 0] - origins[:, None, 0], g[..., 1] - origins[:, None, 1]
    a, b, c = g[..., 2], g[..., 3], g[..., 4]
    # padding slots get a hugely negative constant term instead of log(0): alpha = 0, no NaN
    log_opac = torch.where(ids >= 0, torch.log(g[..., 5].clamp(min=1e-12)), torch.full_like(mx, -1e4))
    const = log_opac - (0.5 * a * mx * mx + 0.5 * c * my * my + b * mx * my)
    coef = torch.stack([-0.5 * a, -0.5 * c, -b, a * mx + b * my, c * my + b * mx, const], dim=-2)  # (t, 6, K)
    ux, uy = pixels[:, 0], pixels[:, 1]
    features = torch.stack([ux * ux, uy * uy, ux * uy, ux, uy, torch.ones_like(ux)], dim=-1)  # (P, 6)
    alpha = torch.exp(_Fp32Matmul.apply(features, coef))  # (t, P, K) = opacity * exp(-sigma)
    alpha = F.threshold(alpha.clamp(max=ALPHA_MAX), ALPHA_MIN, 0.0)  # skip splats under 1/255
    log_keep = torch.log1p(-alpha)
    log_t_after = torch.cumsum(log_keep, dim=-1)
    alive = log_t_after.detach() > math.log(TRANSMITTANCE_MIN)  # gsplat stops before T <= 1e-4
    weights = torch.where(alive, alpha * torch.exp(log_t_after - log_keep), 0.0)
    rgb = _Fp32Matmul.apply(weights, g[..., 6:])  # (t, P, D)
    return rgb, weights.sum(dim=-1)


def rasterize_torch(
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
    cfg: TorchRasterConfig = TorchRasterConfig(),
) -> tuple[Tensor, Tensor]:
    """Render (H, W, D) colours and (H, W) alpha; see :func:`hi4dfix.render.rasterize`."""
    ts = cfg.tile_size
    tiles_x, tiles_y = -(-width // ts), -(-height // ts)
    n_tiles, n_pix = tiles_x * tiles_y, ts * ts
    D = colors.shape[-1]
    dtype, device = means.dtype, means.device

    proj = project_gaussians(means, covariance_3d(quats, scales), opacities, viewmat, K, width, height, cfg)
    lists, counts = tile_lists(proj, width, height, ts)

    # tile-local pixel centres (+0.5) and each tile's top-left corner
    local = torch.arange(ts, device=device, dtype=dtype) + 0.5
    ly, lx = torch.meshgrid(local, local, indexing="ij")
    pixels = torch.stack([lx.reshape(-1), ly.reshape(-1)], dim=-1)
    ty, tx = torch.meshgrid(
        torch.arange(tiles_y, device=device, dtype=dtype),
        torch.arange(tiles_x, device=device, dtype=dtype),
        indexing="ij",
    )
    origins = torch.stack([tx.reshape(-1), ty.reshape(-1)], dim=-1) * ts

    packed = torch.cat([proj.means2d, proj.conics, opacities[:, None], colors], dim=-1)

    # buckets of tiles whose list lengths lie within a factor of two (padding wastes < half),
    # each holding at most max_bucket_pairs (pixel, Gaussian) pairs
    occupied = torch.nonzero(counts > 0).flatten()
    occupied = occupied[torch.argsort(counts[occupied], stable=True)]
    occ_counts = counts[occupied].tolist()
    buckets: list[tuple[int, int, int]] = []  # (start, stop, padded length)
    start = 0
    while start < len(occupied):
        stop = start + 1
        while (
            stop < len(occupied)
            and occ_counts[stop] <= 2 * occ_counts[start]
            and (stop + 1 - start) * n_pix * occ_counts[stop] <= cfg.max_bucket_pairs
        ):
            stop += 1
        buckets.append((start, stop, occ_counts[stop - 1]))
        start = stop
    total_pairs = sum((stop - start) * n_pix * k for start, stop, k in buckets)
    use_checkpoint = torch.is_grad_enabled() and total_pairs > cfg.checkpoint_above_pairs

    tile_rgb, tile_alpha = [], []
    for start, stop, k in buckets:
        tiles = occupied[start:stop]
        args = (pixels, origins[tiles], lists[tiles, :k], packed)
        if use_checkpoint:
            rgb_b, alpha_b = checkpoint(_composite_bucket, *args, use_reentrant=False)
        else:
            rgb_b, alpha_b = _composite_bucket(*args)
        tile_rgb.append(rgb_b)
        tile_alpha.append(alpha_b)

    rgb_tiles = torch.zeros(n_tiles, n_pix, D, dtype=dtype, device=device)
    alpha_tiles = torch.zeros(n_tiles, n_pix, dtype=dtype, device=device)
    if buckets:
        rgb_tiles = rgb_tiles.index_copy(0, occupied, torch.cat(tile_rgb))
        alpha_tiles = alpha_tiles.index_copy(0, occupied, torch.cat(tile_alpha))

    def untile(x: Tensor) -> Tensor:
        x = x.reshape(tiles_y, tiles_x, ts, ts, -1).permute(0, 2, 1, 3, 4)
        return x.reshape(tiles_y * ts, tiles_x * ts, -1)[:height, :width]

    rgb, alpha = untile(rgb_tiles), untile(alpha_tiles)[..., 0]
    if background is not None:
        rgb = rgb + (1.0 - alpha)[..., None] * background.to(dtype=dtype, device=device)
    return rgb, alpha
