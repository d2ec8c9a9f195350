"""Image metrics for novel-view synthesis: PSNR, SSIM and LPIPS, on the full frame and on the people.

Conventions (all inputs float HxWx3 in [0, 1], ``pred`` first, ``target`` second):

* PSNR uses data range 1 and is capped at ``MetricsConfig.psnr_cap_db`` (default 100 dB), so identical
  images give the cap rather than ``inf``; a finite value keeps means and deltas meaningful.
* SSIM is scikit-image's ``structural_similarity(..., data_range=1, channel_axis=-1)`` with its defaults
  (7x7 uniform window); crops smaller than 7 px use the largest odd window that fits.
* LPIPS is the ``lpips`` package, AlexNet trunk, version 0.1, inputs scaled to [-1, 1]. Its linear-layer
  weights ship inside the package; the AlexNet trunk comes from torchvision through the torch hub cache.
  It runs on a GPU where there is one (``MetricsConfig.device`` ``auto``; exact fp32, no TF32): on a
  CPU core a 940x1280 frame takes seconds. This module never downloads: when the trunk file is
  missing, LPIPS is NaN, one warning is issued per :class:`MetricComputer`, and every result carries
  ``lpips_computed = False``.
* The person region is the bounding box of the mask, grown to at least ``person_min_side`` pixels per side
  (LPIPS's AlexNet needs about 32 px); an empty or missing mask gives NaN person metrics.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence
from urllib.parse import urlparse

import numpy as np
from skimage.metrics import structural_similarity

if TYPE_CHECKING:  # torch is imported lazily so that tables and tests of pure metrics stay light
    import torch

METRIC_COLUMNS: tuple[str, ...] = ("psnr", "ssim", "lpips", "psnr_person", "ssim_person", "lpips_person")
LPIPS_FLAG_COLUMN = "lpips_computed"

_SSIM_DEFAULT_WINDOW = 7


class LpipsUnavailableWarning(UserWarning):
    """The LPIPS AlexNet trunk is not in the torch hub cache, so LPIPS is reported as NaN."""


@dataclass(frozen=True)
class MetricsConfig:
    psnr_cap_db: float = 100.0  # PSNR reported for (near-)identical images instead of inf
    person_min_side: int = 32  # person box grown to this many pixels per side (LPIPS/SSIM need room)
    lpips_batch_size: int = 8  # full frames per LPIPS forward pass
    device: str = "auto"  # torch device for LPIPS; auto: cuda where available, else cpu
    require_lpips: bool = False  # raise instead of reporting NaN when the AlexNet trunk is not cached
    chunk_views: int = 8  # views an evaluation job holds at once (hi4dfix.evaluate; at 940x1280 ~3.9 GB, BENCHMARKS.md)

    def __post_init__(self) -> None:
        if not self.psnr_cap_db > 0:
            raise ValueError(f"metrics.psnr_cap_db must be > 0, got {self.psnr_cap_db}")
        if self.person_min_side < 1:
            raise ValueError(f"metrics.person_min_side must be >= 1, got {self.person_min_side}")
        if self.chunk_views < 1:
            raise ValueError(f"metrics.chunk_views must be >= 1, got {self.chunk_views}")
        if self.lpips_batch_size < 1:
            raise ValueError(f"metrics.lpips_batch_size must be >= 1, got {self.lpips_batch_size}")


# --------------------------------------------------------------------------------------------------
# LPIPS backbone cache


def alexnet_weight_url() -> str:
    """URL torchvision downloads the ImageNet AlexNet weights from (the trunk LPIPS 'alex' uses)."""
    from torchvision.models import AlexNet_Weights

    return AlexNet_Weights.IMAGENET1K_V1.url


def lpips_weight_path() -> Path:
    """Where torchvision looks for the AlexNet weights: ``<torch.hub.get_dir()>/checkpoints/<file>``."""
    import torch.hub

    file_name = os.path.basename(urlparse(alexnet_weight_url()).path)  # torch.hub names the cache file so
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def lpips_available() -> bool:
    """True when the AlexNet trunk is cached, so building LPIPS will not try to download."""
    return lpips_weight_path().is_file()


def lpips_cache_help() -> str:
    path = lpips_weight_path()
    return (
        f"LPIPS needs torchvision's AlexNet weights in the torch hub cache, and this machine will not "
        f"download them. Fetch {alexnet_weight_url()} elsewhere and copy it to {path} "
        f"(folder {path.parent}; set TORCH_HOME to use another cache, the file goes in $TORCH_HOME/hub/checkpoints)."
    )


def default_lpips_factory() -> "torch.nn.Module":
    """LPIPS (AlexNet, v0.1) with the package's linear layers and the cached ImageNet trunk."""
    if not lpips_available():  # guard: without the file, torchvision would start a download
        raise FileNotFoundError(lpips_cache_help())
    import lpips

    with warnings.catch_warnings():  # lpips calls torchvision with the deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(pretrained=True, net="alex", version="0.1", pnet_rand=False, verbose=False)


def lpips_device(setting: str, cuda_available: bool) -> str:
    """The torch device LPIPS runs on: ``auto`` is cuda where available, else cpu; others as given."""
    if setting == "auto":
        return "cuda" if cuda_available else "cpu"
    return setting


@contextlib.contextmanager
def exact_fp32_convolutions(torch_module) -> Iterator[None]:
    """cuDNN convolutions in true fp32 for the duration: by default they run in TF32 (~1e-3 relative
    error), which would make LPIPS on a GPU differ from LPIPS on a CPU."""
    cudnn = torch_module.backends.cudnn
    previous = cudnn.allow_tf32
    cudnn.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32 = previous


# --------------------------------------------------------------------------------------------------
# Pure metric functions


def _check_pair(pred: np.ndarray, target: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    where = f" ({label})" if label else ""
    if pred.shape != target.shape:
        raise ValueError(f"prediction and target shapes differ{where}: {pred.shape} vs {target.shape}")
    if pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"expected HxWx3 images{where}, got shape {pred.shape}")
    for name, image in (("prediction", pred), ("target", target)):
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"{name} must be float in [0, 1]{where}, got dtype {image.dtype}")
        if image.size and (np.nanmin(image) < -1e-6 or np.nanmax(image) > 1 + 1e-6):
            raise ValueError(
                f"{name} values outside [0, 1]{where}: min {np.nanmin(image):.4g}, max {np.nanmax(image):.4g}"
            )
    return pred.astype(np.float32, copy=False), target.astype(np.float32, copy=False)


def psnr_from_mse(mse: np.ndarray | float, cap_db: float = 100.0) -> np.ndarray | float:
    """PSNR for data range 1; MSE at or below 10^(-cap/10) gives ``cap_db``."""
    mse = np.asarray(mse, dtype=np.float64)
    floor = 10.0 ** (-cap_db / 10.0)
    out = -10.0 * np.log10(np.maximum(mse, floor))
    return float(out) if out.ndim == 0 else out


def psnr(pred: np.ndarray, target: np.ndarray, cap_db: float = 100.0) -> float:
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return float(psnr_from_mse(np.mean(diff * diff), cap_db))


def psnr_batch(preds: np.ndarray, targets: np.ndarray, cap_db: float = 100.0) -> np.ndarray:
    """PSNR of each pair in (N, H, W, 3) stacks."""
    diff = np.asarray(preds, dtype=np.float64) - np.asarray(targets, dtype=np.float64)
    return np.asarray(psnr_from_mse(np.mean(diff * diff, axis=(1, 2, 3)), cap_db), dtype=np.float64)


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM (scikit-image, data range 1, channels last); NaN when the image is under 3 px on a side."""
    side = min(pred.shape[0], pred.shape[1])
    if side < 3:
        return math.nan
    win = _SSIM_DEFAULT_WINDOW if side >= _SSIM_DEFAULT_WINDOW else (side if side % 2 else side - 1)
    return float(structural_similarity(pred, target, data_range=1.0, channel_axis=-1, win_size=win))


def person_bbox(mask: np.ndarray | None, min_side: int = 32) -> tuple[int, int, int, int] | None:
    """Bounding box ``(y0, y1, x0, x1)`` (ends exclusive) of a HxW mask, or None when it is empty.

    The box is grown symmetrically to at least ``min_side`` pixels per side and kept inside the image.
    """
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"person mask must be HxW, got shape {mask.shape}")
    mask = mask if mask.dtype == bool else mask > 0
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    y0, y1 = _grow(int(rows[0]), int(rows[-1]) + 1, min_side, mask.shape[0])
    x0, x1 = _grow(int(cols[0]), int(cols[-1]) + 1, min_side, mask.shape[1])
    return y0, y1, x0, x1


def _grow(lo: int, hi: int, min_side: int, size: int) -> tuple[int, int]:
    target = min(min_side, size)
    missing = target - (hi - lo)
    if missing <= 0:
        return lo, hi
    lo = max(0, lo - missing // 2)
    hi = lo + target
    if hi > size:  # pushed past the far edge: slide back
        lo, hi = size - target, size
    return lo, hi


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    y0, y1, x0, x1 = box
    return image[y0:y1, x0:x1]


# --------------------------------------------------------------------------------------------------
# The per-job computer


class MetricComputer:
    """Computes all metrics for image pairs, building LPIPS once.

    ``lpips_factory`` builds the LPIPS module (default: :func:`default_lpips_factory` when the AlexNet trunk
    is cached). Tests inject e.g. ``lambda: lpips.LPIPS(net='alex', pnet_rand=True)`` to exercise the path
    without weights.
    """

    def __init__(
        self,
        config: MetricsConfig | None = None,
        lpips_factory: Callable[[], "torch.nn.Module"] | None = None,
    ) -> None:
        self.config = config or MetricsConfig()
        self._lpips: "torch.nn.Module | None" = None
        if lpips_factory is None and not lpips_available():
            if self.config.require_lpips:
                raise RuntimeError(f"metrics.require_lpips is true but LPIPS is unavailable. {lpips_cache_help()}")
            warnings.warn(
                f"LPIPS will be reported as NaN (lpips_computed=False). {lpips_cache_help()}",
                LpipsUnavailableWarning,
                stacklevel=2,
            )
            return
        import torch

        self._torch = torch
        self.device = lpips_device(self.config.device, torch.cuda.is_available())
        self._lpips = (lpips_factory or default_lpips_factory)().to(self.device).eval()

    @property
    def lpips_computed(self) -> bool:
        return self._lpips is not None

    def _lpips_many(self, preds: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> list[float]:
        """LPIPS of same-sized pairs, in batches; NaN for each when LPIPS is unavailable."""
        if self._lpips is None:
            return [math.nan] * len(preds)
        torch = self._torch
        out: list[float] = []
        step = self.config.lpips_batch_size
        for start in range(0, len(preds), step):
            p = np.stack(preds[start : start + step])
            t = np.stack(targets[start : start + step])
            with torch.inference_mode(), exact_fp32_convolutions(torch):
                values = self._lpips(self._to_lpips_input(p), self._to_lpips_input(t))
            out.extend(float(v) for v in values.reshape(-1).cpu())
        return out

    def _to_lpips_input(self, stack: np.ndarray) -> "torch.Tensor":
        """(N, H, W, 3) in [0, 1] -> (N, 3, H, W) in [-1, 1], the range lpips expects."""
        tensor = self._torch.from_numpy(np.ascontiguousarray(stack.transpose(0, 3, 1, 2)))
        return tensor.to(self.device, self._torch.float32) * 2.0 - 1.0

    def _lpips_one(self, pred: np.ndarray, target: np.ndarray) -> float:
        return self._lpips_many([pred], [target])[0]

    def _person_metrics(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None) -> dict[str, float]:
        if mask is not None and np.shape(mask) != pred.shape[:2]:
            raise ValueError(f"person mask shape {np.shape(mask)} does not match image {pred.shape[:2]}")
        box = person_bbox(mask, self.config.person_min_side)
        if box is None:
            return {"psnr_person": math.nan, "ssim_person": math.nan, "lpips_person": math.nan}
        p, t = crop(pred, box), crop(target, box)
        return {
            "psnr_person": psnr(p, t, self.config.psnr_cap_db),
            "ssim_person": ssim(p, t),
            "lpips_person": self._lpips_one(p, t),
        }

    def compute(
        self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None, label: str = ""
    ) -> dict[str, float | bool]:
        """All of :data:`METRIC_COLUMNS` plus ``lpips_computed`` for one pair; ``label`` names it in errors."""
        pred, target = _check_pair(pred, target, label)
        row: dict[str, float | bool] = {
            "psnr": psnr(pred, target, self.config.psnr_cap_db),
            "ssim": ssim(pred, target),
            "lpips": self._lpips_one(pred, target),
        }
        row.update(self._person_metrics(pred, target, mask))
        row[LPIPS_FLAG_COLUMN] = self.lpips_computed
        return row

    def compute_batch(
        self,
        preds: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        masks: Sequence[np.ndarray | None] | None = None,
        labels: Sequence[str] | None = None,
    ) -> list[dict[str, float | bool]]:
        """Like :meth:`compute` for many pairs; full frames of one size share vectorised PSNR and batched LPIPS."""
        n = len(preds)
        masks = list(masks) if masks is not None else [None] * n
        labels = list(labels) if labels is not None else [f"pair {i}" for i in range(n)]
        if not (len(targets) == len(masks) == len(labels) == n):
            raise ValueError(
                f"compute_batch needs as many targets/masks/labels as predictions: "
                f"{n} preds, {len(targets)} targets, {len(masks)} masks, {len(labels)} labels"
            )
        pairs = [_check_pair(p, t, lab) for p, t, lab in zip(preds, targets, labels)]
        if n == 0:
            return []
        if len({p.shape for p, _ in pairs}) == 1:
            stack_p, stack_t = np.stack([p for p, _ in pairs]), np.stack([t for _, t in pairs])
            psnrs = psnr_batch(stack_p, stack_t, self.config.psnr_cap_db).tolist()
            lpips_values = self._lpips_many([p for p, _ in pairs], [t for _, t in pairs])
        else:  # mixed sizes cannot be stacked
            psnrs = [psnr(p, t, self.config.psnr_cap_db) for p, t in pairs]
            lpips_values = [self._lpips_one(p, t) for p, t in pairs]
        rows = []
        for (p, t), mask, value_psnr, value_lpips in zip(pairs, masks, psnrs, lpips_values):
            row: dict[str, float | bool] = {"psnr": float(value_psnr), "ssim": ssim(p, t), "lpips": value_lpips}
            row.update(self._person_metrics(p, t, mask))
            row[LPIPS_FLAG_COLUMN] = self.lpips_computed
            rows.append(row)
        return rows
