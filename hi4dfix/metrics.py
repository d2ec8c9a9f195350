"""Image metrics for novel-view synthesis, on the full frame and on the people; the one vocabulary of metrics.

Conventions (all inputs float HxWx3 in [0, 1], ``pred`` first, ``target`` second):

* PSNR uses data range 1 and is capped at ``MetricsConfig.psnr_cap_db`` (default 100 dB), so identical
  images give the cap rather than ``inf``; a finite value keeps means and deltas meaningful.
* SSIM is scikit-image's ``structural_similarity(..., data_range=1, channel_axis=-1)`` with the window of
  ``MetricsConfig.ssim``: ``gaussian`` (11x11 Gaussian weights, sigma 1.5, population covariances: the
  window of torchmetrics' SSIM, which Difix3D's evaluation uses) or ``uniform`` (scikit-image's default
  7x7 uniform window, the study's SSIM before the option existed). Crops smaller than the window use the
  largest odd window that fits (the Gaussian filter stays 11 taps, edges reflected).
* LPIPS is the ``lpips`` package, AlexNet trunk, version 0.1, inputs scaled to [-1, 1]. Its linear-layer
  weights ship inside the package; the AlexNet trunk comes from torchvision through the torch hub cache.
  It runs on a GPU where there is one (``MetricsConfig.device`` ``auto``; exact fp32, no TF32): on a
  CPU core a 940x1280 frame takes seconds. This module never downloads: when the trunk file is
  missing, LPIPS is NaN, one warning is issued per :class:`MetricComputer`, and every result carries
  ``lpips_computed = False``.
* FLIP, HaarPSI and GMSD need no downloaded weights: NVIDIA's LDR-FLIP (``flip-evaluator``, sRGB inputs,
  67 pixels per degree), HaarPSI and GMSD of ``piq`` (data range 1). HaarPSI is NaN under 16 px a side.
  FLIP costs several times every other weight-free metric together on a CPU (BENCHMARKS.md: 1.6 s per
  940x1280 view on one thread); ``MetricsConfig.flip`` false leaves it NaN (``config/hi4d.yaml`` does).
* Where LPIPS runs on a GPU, :class:`MetricComputer` computes HaarPSI, GMSD and the gaussian SSIM there too
  (``piq``, exact fp32; SSIM as ``piq.ssim`` without its downsampling, the same window and moments, within
  ~1e-6 of scikit-image's): on one CPU core they are most of an evaluation job's time at 940x1280
  (BENCHMARKS.md, "Full-size study at Difix's scale, finished"). On a CPU nothing changes.
* The temporal metrics (``flicker``, ``flicker_flow``: :mod:`hi4dfix.temporal`) compare a view with the
  previous frame of its camera; :func:`hi4dfix.evaluate.evaluate_views` fills them.
* The person region is the bounding box of the mask, grown to at least ``person_min_side`` pixels per side
  (LPIPS's AlexNet needs about 32 px); an empty or missing mask gives NaN person metrics.

:data:`METRICS` says, for every metric, its direction, range, window and display; tables, charts and the
comparison of versions read it (:func:`higher_is_better`, :func:`metric_title`, :func:`metric_digits`).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np
from skimage.metrics import structural_similarity

if TYPE_CHECKING:  # torch is imported lazily so that tables and tests of pure metrics stay light
    import torch

PERSON_SUFFIX = "_person"
SSIM_WINDOWS = ("gaussian", "uniform")


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is: how tables and charts name it, which way is better, its range and what it looks at."""

    title: str  # display name (tables, charts); ``(people)`` is added for the person variant
    higher_is_better: bool
    value_range: str
    window: str  # what the metric compares, over which pixels
    digits: int  # decimals shown in tables


# The metrics of the per-view CSVs (each also with ``_person``: the person region), in column order.
METRICS: dict[str, MetricInfo] = {
    "psnr": MetricInfo("PSNR (dB)", True, "0 to metrics.psnr_cap_db (100 dB)", "squared error of every pixel", 2),
    "ssim": MetricInfo(
        "SSIM", True, "-1 to 1 (1: identical)",
        "local means, variances and covariance per channel; metrics.ssim: gaussian 11x11 sigma 1.5 "
        "(torchmetrics, Difix3D's evaluation) or uniform 7x7 (scikit-image's default)", 4,
    ),
    "lpips": MetricInfo("LPIPS", False, "0 to about 1", "AlexNet features (lpips v0.1; needs cached weights)", 4),
    "flip": MetricInfo(
        "FLIP", False, "0 to 1", "NVIDIA LDR-FLIP: colour and edge/point differences as seen at 67 px per degree", 4
    ),
    "haarpsi": MetricInfo(
        "HaarPSI", True, "0 to 1 (1: identical)", "Haar-wavelet phase similarity on YIQ, image halved (piq)", 4
    ),
    "gmsd": MetricInfo(
        "GMSD", False, "0 to about 0.35", "deviation of the gradient-magnitude similarity, luminance halved, "
        "3x3 Prewitt (piq)", 4,
    ),
    "flicker": MetricInfo(
        "flicker", False, "0 to 2",
        "mean |(F_t - F_t-1) - (G_t - G_t-1)| over pixels and channels: the fixed frames' change from the "
        "camera's previous frame against the ground truth's (NaN on a camera's first frame)", 4,
    ),
    "flicker_flow": MetricInfo(
        "flicker (flow-warped)", False, "0 to 2",
        "flicker with frame t-1 warped onto t by OpenCV DIS optical flow of the ground truth, so motion "
        "is not counted as change", 4,
    ),
}  # fmt: skip
IMAGE_METRICS = ("psnr", "ssim", "lpips", "flip", "haarpsi", "gmsd")  # one image pair each (MetricComputer)
TEMPORAL_METRICS = ("flicker", "flicker_flow")  # a view and its camera's previous frame (hi4dfix.temporal)
PERSON_REGION = (
    "the bounding box of the person mask grown to metrics.person_min_side px a side (flicker: of the "
    "masks of both frames)"
)
# Per-view CSV columns: the first six as before these metrics, new ones appended.
METRIC_COLUMNS: tuple[str, ...] = (
    "psnr", "ssim", "lpips", "psnr_person", "ssim_person", "lpips_person",
    "flip", "haarpsi", "gmsd", "flip_person", "haarpsi_person", "gmsd_person",
    "flicker", "flicker_person", "flicker_flow", "flicker_flow_person",
)  # fmt: skip
TEMPORAL_COLUMNS = tuple(c for c in METRIC_COLUMNS if c.removesuffix(PERSON_SUFFIX) in TEMPORAL_METRICS)
IMAGE_COLUMNS = tuple(c for c in METRIC_COLUMNS if c not in TEMPORAL_COLUMNS)
# Whole-frame metrics of the delta tables, charts and compare.md (the person variants are in the CSVs).
DEFAULT_DELTA_METRICS = ("psnr", "ssim", "lpips", "flip", "haarpsi", "gmsd", "flicker", "flicker_flow")
METRIC_TITLES = {name: info.title for name, info in METRICS.items()}
LPIPS_FLAG_COLUMN = "lpips_computed"

_SSIM_DEFAULT_WINDOW = 7
_SSIM_SIGMA = 1.5
_SSIM_GAUSSIAN_RADIUS = 5  # 11x11, torchmetrics' kernel_size for sigma 1.5
_HAARPSI_MIN_SIDE = 16  # piq halves the image, then needs 2**scales (8) px


def metric_info(metric: str) -> MetricInfo:
    """The registry entry of a metric or its ``_person`` variant; a clear error for an unknown name."""
    info = METRICS.get(metric.removesuffix(PERSON_SUFFIX))
    if info is None:
        names = ", ".join(METRICS)
        raise ValueError(f"unknown metric {metric!r}: expected one of {names} (optionally with {PERSON_SUFFIX})")
    return info


def higher_is_better(metric: str) -> bool:
    """Direction of a metric (``*_person`` variants alike): PSNR, SSIM and HaarPSI up, the others down."""
    return metric_info(metric).higher_is_better


def metric_title(metric: str) -> str:
    """``PSNR (dB) ↑``: the metric's name, ``(people)`` for the person variants, and its good direction."""
    info = metric_info(metric)
    people = " (people)" if metric.endswith(PERSON_SUFFIX) else ""
    return f"{info.title}{people} {'↑' if info.higher_is_better else '↓'}"


def metric_digits(metric: str) -> int:
    """Decimals shown for a metric: PSNR in dB to 0.01, the others to 0.0001."""
    return metric_info(metric).digits


def metric_legend(metrics: Sequence[str], ssim_window: str | None = None, primary: str | None = None) -> str:
    """Markdown lines saying what each metric is (direction, range, window), what the person region is and,
    given, which metric is the primary endpoint (``stats.primary``)."""
    lines = ["Metrics (↑ higher is better, ↓ lower is better):", ""]
    for metric in dict.fromkeys(m.removesuffix(PERSON_SUFFIX) for m in metrics):
        info = metric_info(metric)
        window = info.window
        if metric == "ssim" and ssim_window is not None:
            window = f"{window}; here: {ssim_window}"
        lines.append(f"- **{metric_title(metric)}**: {info.value_range}; {window}.")
    lines += ["", f"`*_person` columns: the same on {PERSON_REGION}."]
    if primary is not None:
        lines += ["", f"Primary endpoint (`stats.primary`): **{metric_title(primary)}**, the metric a decision is "
                      "made on (`compare.md`, on the internal evaluation); the others are secondary."]  # fmt: skip
    return "\n".join(lines) + "\n"


class LpipsUnavailableWarning(UserWarning):
    """The LPIPS AlexNet trunk is not in the torch hub cache, so LPIPS is reported as NaN."""


@dataclass(frozen=True)
class MetricsConfig:
    psnr_cap_db: float = 100.0  # PSNR reported for (near-)identical images instead of inf
    person_min_side: int = 32  # person box grown to this many pixels per side (LPIPS/SSIM need room)
    lpips_batch_size: int = 8  # full frames per LPIPS forward pass
    device: str = "auto"  # torch device for LPIPS (on cuda also SSIM, HaarPSI, GMSD); auto: cuda where available
    require_lpips: bool = False  # raise instead of reporting NaN when the AlexNet trunk is not cached
    chunk_views: int = 8  # views an evaluation job holds at once (hi4dfix.evaluate; at 940x1280 ~3.9 GB, BENCHMARKS.md)
    ssim: str = "gaussian"  # SSIM window: gaussian (torchmetrics/Difix3D) or uniform (scikit-image's 7x7)
    flip: bool = True  # compute FLIP (false: NaN; its CPU cost dominates evaluation at Hi4D's size)

    def __post_init__(self) -> None:
        if not self.psnr_cap_db > 0:
            raise ValueError(f"metrics.psnr_cap_db must be > 0, got {self.psnr_cap_db}")
        if self.person_min_side < 1:
            raise ValueError(f"metrics.person_min_side must be >= 1, got {self.person_min_side}")
        if self.chunk_views < 1:
            raise ValueError(f"metrics.chunk_views must be >= 1, got {self.chunk_views}")
        if self.lpips_batch_size < 1:
            raise ValueError(f"metrics.lpips_batch_size must be >= 1, got {self.lpips_batch_size}")
        if self.ssim not in SSIM_WINDOWS:
            raise ValueError(f"metrics.ssim must be one of {', '.join(SSIM_WINDOWS)}, got {self.ssim!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"metrics.flip must be true or false, got {self.flip!r}")

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> "MetricsConfig":
        """The config's ``metrics`` block; unknown keys are refused, naming them."""
        options = dict(options or {})
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"metrics: unknown keys {unknown}")
        return cls(**options)


FLIP_COLUMNS = ("flip", f"flip{PERSON_SUFFIX}")


def decisive_settings(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The ``metrics`` block's keys that decide an evaluation job's numbers (its Snakemake params: a change
    reruns it): all but ``chunk_views`` (how many views a job holds), and ``flip`` only when off, so the runs
    made before the key existed (FLIP always computed) stay up to date."""
    return {key: value for key, value in metrics.items() if key != "chunk_views" and (key, value) != ("flip", True)}


def check_disabled_metrics(config: Mapping[str, Any]) -> None:
    """With ``metrics.flip`` false, no table or chart may ask for FLIP: a clear error naming the settings that
    do (``stats.primary``, ``stats.secondary``, ``report.metric_charts.metrics``), before any job runs."""
    if config.get("metrics", {}).get("flip", True):
        return
    stats = config.get("stats", {})
    charts = (config.get("report") or {}).get("metric_charts") or {}
    asked = {
        "stats.primary": [stats.get("primary")],
        "stats.secondary": list(stats.get("secondary") or ()),
        "report.metric_charts.metrics": list(charts.get("metrics") or ()),
    }
    uses = [f"{key} names {', '.join(m for m in names if m in FLIP_COLUMNS)}" for key, names in asked.items()
            if any(m in FLIP_COLUMNS for m in names)]  # fmt: skip
    if uses:
        raise ValueError(
            f"metrics.flip is false (FLIP not computed), but {'; '.join(uses)}: drop flip there "
            "(config/hi4d.yaml's stats.secondary does) or set metrics.flip: true"
        )


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


def ssim(pred: np.ndarray, target: np.ndarray, window: str = "gaussian", torch_device: str | None = None) -> float:
    """SSIM (scikit-image, data range 1, channels last) with a ``gaussian`` or ``uniform`` window (module doc);
    NaN when the image is under 3 px on a side. ``torch_device``: the gaussian window through ``piq`` on that
    device (the same window, population moments and mean over the windows inside the image; fp32)."""
    side = min(pred.shape[0], pred.shape[1])
    if side < 3:
        return math.nan
    largest_odd = side if side % 2 else side - 1
    if window == "uniform":
        win = min(_SSIM_DEFAULT_WINDOW, largest_odd)
        return float(structural_similarity(pred, target, data_range=1.0, channel_axis=-1, win_size=win))
    if window != "gaussian":
        raise ValueError(f"SSIM window must be one of {', '.join(SSIM_WINDOWS)}, got {window!r}")
    if torch_device is not None and side >= 2 * _SSIM_GAUSSIAN_RADIUS + 1:
        import piq
        import torch

        x, y = _piq_pair(pred, target, torch_device)
        kernel = 2 * _SSIM_GAUSSIAN_RADIUS + 1
        with exact_fp32_convolutions(torch):  # no downsampling: piq halves images over 256 px a side by default
            return float(piq.ssim(x, y, data_range=1.0, kernel_size=kernel, kernel_sigma=_SSIM_SIGMA, downsample=False))
    # Under 11 px a side: scikit-image's 11-tap filter (edges reflected), mean over the largest odd window's
    # inner region.
    win = min(2 * _SSIM_GAUSSIAN_RADIUS + 1, largest_odd)
    return float(
        structural_similarity(
            pred, target, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=_SSIM_SIGMA,
            use_sample_covariance=False, win_size=win,
        )
    )  # fmt: skip


def flip(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean LDR-FLIP error (``flip_evaluator``: sRGB inputs, 67 pixels per degree); 0 for identical images."""
    import flip_evaluator

    reference = np.ascontiguousarray(target, dtype=np.float32)
    test = np.ascontiguousarray(pred, dtype=np.float32)
    return float(flip_evaluator.evaluate(reference, test, "LDR", applyMagma=False)[1])


def _piq_pair(pred: np.ndarray, target: np.ndarray, device: str | None = None) -> tuple["torch.Tensor", "torch.Tensor"]:
    import torch

    def tensor(image: np.ndarray) -> "torch.Tensor":  # piq asserts values in [0, data_range]: clip rounding
        array = np.clip(image, 0.0, 1.0).astype(np.float32).transpose(2, 0, 1)[None].copy()
        return torch.from_numpy(array).to(device or "cpu")

    return tensor(pred), tensor(target)


def haarpsi(pred: np.ndarray, target: np.ndarray, torch_device: str | None = None) -> float:
    """HaarPSI (``piq``, data range 1, YIQ, image halved first) on ``torch_device`` (default: the CPU); NaN under
    16 px on a side."""
    if min(pred.shape[0], pred.shape[1]) < _HAARPSI_MIN_SIDE:
        return math.nan
    import piq
    import torch

    x, y = _piq_pair(pred, target, torch_device)
    with exact_fp32_convolutions(torch):  # on a GPU, TF32 would move the metric by ~1e-3
        return float(piq.haarpsi(x, y, data_range=1.0, reduction="none")[0])


def gmsd(pred: np.ndarray, target: np.ndarray, torch_device: str | None = None) -> float:
    """GMSD (``piq``, data range 1, luminance, image halved first, 3x3 Prewitt) on ``torch_device`` (default: the
    CPU); NaN under 6 px on a side."""
    if min(pred.shape[0], pred.shape[1]) < 6:
        return math.nan
    import piq
    import torch

    x, y = _piq_pair(pred, target, torch_device)
    with exact_fp32_convolutions(torch):  # on a GPU, TF32 would move the metric by ~1e-3
        return float(piq.gmsd(x, y, data_range=1.0, reduction="none")[0])


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
        import torch

        self.config = config or MetricsConfig()
        self._torch = torch
        self.device = lpips_device(self.config.device, torch.cuda.is_available())
        # the weight-free metrics that piq computes go to the GPU with LPIPS; on a CPU they stay numpy/scikit-image
        self._metric_device = self.device if torch.device(self.device).type == "cuda" else None
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

    def _pair_metrics(self, pred: np.ndarray, target: np.ndarray, suffix: str = "") -> dict[str, float]:
        """The weight-free metrics of one pair (PSNR, SSIM, FLIP, HaarPSI, GMSD; LPIPS apart: it batches)."""
        device = self._metric_device
        return {
            f"ssim{suffix}": ssim(pred, target, self.config.ssim, torch_device=device),
            f"flip{suffix}": flip(pred, target) if self.config.flip else math.nan,
            f"haarpsi{suffix}": haarpsi(pred, target, torch_device=device),
            f"gmsd{suffix}": gmsd(pred, target, torch_device=device),
        }

    def _person_metrics(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None) -> dict[str, float]:
        if mask is not None and np.shape(mask) != pred.shape[:2]:
            raise ValueError(f"person mask shape {np.shape(mask)} does not match image {pred.shape[:2]}")
        box = person_bbox(mask, self.config.person_min_side)
        if box is None:
            return {c: math.nan for c in IMAGE_COLUMNS if c.endswith(PERSON_SUFFIX)}
        p, t = crop(pred, box), crop(target, box)
        return {
            "psnr_person": psnr(p, t, self.config.psnr_cap_db),
            "lpips_person": self._lpips_one(p, t),
            **self._pair_metrics(p, t, PERSON_SUFFIX),
        }

    def _row(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None, value_psnr: float,
             value_lpips: float) -> dict[str, float | bool]:  # fmt: skip
        values = {"psnr": float(value_psnr), "lpips": value_lpips, **self._pair_metrics(pred, target)}
        values.update(self._person_metrics(pred, target, mask))
        row: dict[str, float | bool] = {c: values[c] for c in IMAGE_COLUMNS}  # the CSVs' column order
        row[LPIPS_FLAG_COLUMN] = self.lpips_computed
        return row

    def compute(
        self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None, label: str = ""
    ) -> dict[str, float | bool]:
        """The image metrics (:data:`IMAGE_COLUMNS`) plus ``lpips_computed`` for one pair; ``label`` names it in
        errors. The temporal columns need the previous frame: :func:`hi4dfix.evaluate.evaluate_views` adds them."""
        pred, target = _check_pair(pred, target, label)
        return self._row(pred, target, mask, psnr(pred, target, self.config.psnr_cap_db), self._lpips_one(pred, target))

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
        return [
            self._row(p, t, mask, value_psnr, value_lpips)
            for (p, t), mask, value_psnr, value_lpips in zip(pairs, masks, psnrs, lpips_values)
        ]
