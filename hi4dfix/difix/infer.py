"""Difix inference on numpy images: load the model once, fix many images.

    model = load_difix("model_300.pkl", device="cuda", dtype=torch.bfloat16)
    fixed = fix_images(model, renders, refs, batch_size=4)

or, as the pipeline's arms run it (config ``difix.inference``: compilation, dtype, batches of
fixed shape, the study compile cache, timing):

    fixer = difix_fixer("model.pkl", inference={"compile": "auto"}, long_side=512)
    fixed = fixer(renders, refs)

Images are float32 (H, W, 3) arrays in [0, 1].  Each is resized to its processing size
(``hi4dfix.difix.data.model_input_size``, the rule training uses: ``long_side`` with the
aspect kept, or a fixed ``resolution``, or its own size snapped to 16), fixed together with
its same-frame reference view, and resized back to its input size.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hi4dfix.difix.checkpoint import load_model
from hi4dfix.difix.compile_cache import CompileKey, open_study_cache, use_node_local_caches
from hi4dfix.difix.data import model_input_size, resize_chw, to_model_range
from hi4dfix.difix.memory_format import channels_last_wanted, to_channels_last, uses_channels_last
from hi4dfix.difix.model import DifixModel

LOG = logging.getLogger(__name__)


def load_difix(
    spec: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    hub_cache_dir: str | None = None,
    base_model_id: str | None = None,
    compile_mode: str | None = None,
    cudnn_benchmark: bool | None = None,
) -> DifixModel:
    """A model ready for inference from a pkl, a local folder, a Hub id or ``tiny-random``.

    ``compile_mode`` (CUDA): ``reduce-overhead`` (CUDA graphs, the fastest measured),
    ``default``... compiles the forward pass (minutes, once per image size) for the fastest
    fixing of many images.
    """
    model = load_model(spec, hub_cache_dir=hub_cache_dir, base_model_id=base_model_id)
    return prepare_for_inference(model, torch.device(device), dtype, compile_mode, cudnn_benchmark=cudnn_benchmark)


def prepare_for_inference(
    model: DifixModel,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    compile_mode: str | None = None,
    channels_last: bool | None = None,
    cudnn_benchmark: bool | None = None,
) -> DifixModel:
    """Eval mode, VAE LoRA merged (before any cast, in fp32), device and dtype, cuDNN
    autotuning on CUDA (``cudnn_benchmark``, see :func:`cudnn_benchmark_wanted`), optionally compiled.
    ``channels_last`` None: on when compiled on CUDA (tensor-core convolutions read NHWC
    natively), with ``hi4dfix.difix.memory_format``'s group norm: 17.9 against 21.9 ms a view at 512 px
    with torch's on an H200 (BENCHMARKS.md)."""
    model.set_eval()
    model.merge_vae_lora()
    model.to(device=device, dtype=dtype)
    if channels_last_wanted(channels_last, compile_mode is not None, device):
        to_channels_last(model)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cudnn_benchmark_wanted(cudnn_benchmark, compile_mode is not None)
    if compile_mode is not None:
        model.compile_forward(None if compile_mode == "default" else compile_mode)
    return model


def cudnn_benchmark_wanted(setting: bool | None, compiled: bool) -> bool:
    """cuDNN autotuning for inference; None: on for eager models (it pays off over many same-size
    images), off for compiled ones: at 512 px on an H200 the compiled model took 18.1 ms a view
    either way, and the pipeline's fixer at 940x1280 (batch 4 at 384x512) reserved 4.57 GiB of GPU
    memory without it against 5.78 GiB with it (BENCHMARKS.md, "GPU jobs as a cluster runs them")."""
    return (not compiled) if setting is None else setting


def _check_image(image: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{what} must be an (H, W, 3) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{what} must be float in [0, 1], got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


@torch.inference_mode()
def fix_images(
    model: DifixModel,
    images: Sequence[np.ndarray] | np.ndarray,
    refs: Sequence[np.ndarray] | np.ndarray | None,
    batch_size: int = 1,
    resolution: str | int | tuple[int, int] | None = None,
    seed: int = 0,
    prompt: str | None = None,
    long_side: int | None = None,
    pad_batches: bool = False,
    index_offset: int = 0,
) -> list[np.ndarray] | np.ndarray:
    """Fixed images, in input order and sizes (an array in, an array out).

    Processing size: ``model_input_size(h, w, resolution, long_side)``; pass the values the
    model was trained with to run it at its training scale.

    refs: one reference view per image (the same frame seen from a training camera), or
    None to run without reference.  Noise is drawn from ``seed`` and the batch's first
    index (plus ``index_offset``, for callers that fix a long list in pieces), so results
    are reproducible for a given batch size.  ``pad_batches``: every model call gets exactly
    ``batch_size`` samples (a short last batch is filled up with copies of its last view,
    whose outputs are dropped), so a compiled model sees one input shape per processing
    size and captures its CUDA graphs once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    stacked = isinstance(images, np.ndarray) and images.ndim == 4
    images = [_check_image(im, f"images[{i}]") for i, im in enumerate(images)]
    if refs is not None:
        refs = [_check_image(r, f"refs[{i}]") for i, r in enumerate(refs)]
        if len(refs) != len(images):
            raise ValueError(f"{len(images)} images but {len(refs)} reference views")
    device = model.timesteps.device
    dtype = model.vae.dtype
    text = prompt if prompt is not None else model.difix_config.prompt

    # Images that share a processing size are batched together.
    groups: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(model_input_size(image.shape[0], image.shape[1], resolution, long_side), []).append(index)

    outputs: list[np.ndarray | None] = [None] * len(images)
    for size, indices in groups.items():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            padded = chunk + [chunk[-1]] * (batch_size - len(chunk)) if pad_batches else chunk
            # Full-size images are resized on the model's device: on the CPU, the antialiased
            # resizing of 940x1280 views took most of a compiled model's time per view.
            views = []
            for i in padded:
                per_image = [resize_chw(to_model_range(images[i], device), size)]
                if refs is not None:
                    per_image.append(resize_chw(to_model_range(refs[i], device), size))
                views.append(torch.stack(per_image))
            batch = torch.stack(views).clamp(-1, 1).to(dtype=dtype)
            emb = model.encode_prompts([text] * len(padded))
            generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + index_offset + chunk[0])
            fixed = model(batch, emb, generator=generator, first_view_only=True)[:, 0].float()
            fixed = (fixed * 0.5 + 0.5).clamp(0, 1)
            for j, i in enumerate(chunk):
                h, w = images[i].shape[:2]
                out = resize_chw(fixed[j], (h, w)).clamp(0, 1)
                outputs[i] = out.permute(1, 2, 0).contiguous().cpu().numpy()
    return np.stack(outputs) if stacked else outputs


# ----------------------------------------------------------------------------- the pipeline's fixer


COMPILE_CHOICES = ("auto", True, False)


DTYPE_CHOICES = ("auto", "bfloat16", "float32")


@dataclass(frozen=True)
class InferenceConfig:
    """How the pipeline runs DiFix (config ``difix.inference``).

    compile: ``auto`` compiles (``torch.compile``, CUDA graphs with ``reduce-overhead``) where the
    model runs on CUDA and stays eager on CPU. Compiled, every model call gets ``batch_size``
    samples (the last batch is padded), so the graphs of a processing size are captured once.
    dtype: ``auto`` is bfloat16 on CUDA, float32 on CPU.
    """

    batch_size: int = 4
    compile: str | bool = "auto"
    compile_mode: str = "reduce-overhead"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"difix.inference.batch_size must be >= 1, got {self.batch_size}")
        if self.compile not in COMPILE_CHOICES:
            raise ValueError(f"difix.inference.compile must be one of {COMPILE_CHOICES}, got {self.compile!r}")
        if self.dtype not in DTYPE_CHOICES:
            raise ValueError(f"difix.inference.dtype must be one of {DTYPE_CHOICES}, got {self.dtype!r}")

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> "InferenceConfig":
        options = dict(options or {})
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"difix.inference: unknown keys {unknown}")
        return cls(**options)

    def compiled_on(self, device_type: str) -> bool:
        return device_type == "cuda" if self.compile == "auto" else bool(self.compile)

    def dtype_name_on(self, device_type: str) -> str:
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if device_type == "cuda" else "float32"


@dataclass(frozen=True)
class FixerTiming:
    """Wall time of a fixer's batches (model call, resizing, copies to and from the device).

    The first batch of each processing size is kept apart: it includes compilation and CUDA
    graph capture when the model is compiled."""

    views: int  # views in the timed batches
    seconds: float
    first_views: int  # views in the first batch of each size
    first_seconds: float

    @property
    def views_per_s(self) -> float:
        return self.views / self.seconds if self.seconds > 0 else float("nan")

    @property
    def ms_per_view(self) -> float:
        return 1000.0 * self.seconds / self.views if self.views else float("nan")

    def describe(self) -> str:
        return (
            f"DiFix: {self.views} views in {self.seconds:.2f} s after the first batch of each size: "
            f"{self.views_per_s:.2f} views/s, {self.ms_per_view:.1f} ms/view; first batches "
            f"({self.first_views} views, with any compilation) {self.first_seconds:.2f} s"
        )


class DifixFixer:
    """A fixer (``hi4dfix.evaluate.Fixer``) running a loaded DiFix model one batch at a time, timing each batch.

    Noise is drawn from the fixer's count of views fixed so far, so fixing a list in chunks
    whose sizes are multiples of ``batch_size`` gives the same images as fixing it at once.
    ``fix_options`` go to :func:`fix_images` (``resolution``, ``seed``...).
    """

    def __init__(
        self,
        model,
        batch_size: int = 4,
        fixed_shapes: bool = False,
        compile_cache_dir: str | Path | None = None,
        compile_mode: str | None = None,
        **fix_options: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.fixed_shapes = fixed_shapes
        self.fix_options = fix_options
        self.views_done = 0
        self.name = "DiFix"
        self._sizes_seen: set[tuple[int, int]] = set()
        self._image_sizes_logged: set[tuple[int, int]] = set()
        self._timed = [0, 0.0]  # views, seconds
        self._first = [0, 0.0]
        # a compiled model: the study compile cache's entry of each processing size, loaded before
        # its first batch compiles, saved after it (hi4dfix.difix.compile_cache)
        self.compile_cache_dir, self.compile_mode = compile_cache_dir, compile_mode
        self.compile_caches: dict[tuple[int, int], Any] = {}

    def _open_compile_caches(self, sizes: set[tuple[int, int]], with_refs: bool) -> list[Any]:
        if self.compile_cache_dir is None or getattr(self.model, "_compiled_fix", None) is None:
            return []
        opened = []
        for size in sorted(sizes - set(self.compile_caches)):
            key = CompileKey.for_process(
                "infer", self.model.difix_config, size, self.batch_size, self.compile_mode, self.model.timesteps.device,
                dtype=str(self.model.vae.dtype).removeprefix("torch."), views=2 if with_refs else 1,
                channels_last=uses_channels_last(self.model),
            )
            self.compile_caches[size] = open_study_cache(self.compile_cache_dir, key)
            opened.append(self.compile_caches[size])
        return opened

    def __call__(self, images: Sequence[np.ndarray], refs: Sequence[np.ndarray] | None) -> list[np.ndarray]:
        outputs: list[np.ndarray] = []
        resolution, long_side = self.fix_options.get("resolution"), self.fix_options.get("long_side")
        for start in range(0, len(images), self.batch_size):
            batch = list(images[start : start + self.batch_size])
            batch_refs = None if refs is None else list(refs[start : start + self.batch_size])
            sizes = set()
            for height, width in {im.shape[:2] for im in batch}:
                size = model_input_size(height, width, resolution, long_side)
                if (height, width) not in self._image_sizes_logged:
                    LOG.info("%s: processing size %dx%d (HxW) for %dx%d images", self.name, *size, height, width)
                    self._image_sizes_logged.add((height, width))
                sizes.add(size)
            new_caches = self._open_compile_caches(sizes, refs is not None)
            started = time.perf_counter()
            outputs.extend(fix_images(
                self.model, batch, batch_refs, batch_size=self.batch_size, pad_batches=self.fixed_shapes,
                index_offset=self.views_done, **self.fix_options,
            ))  # fmt: skip
            seconds = time.perf_counter() - started  # outputs are on the host: the device is done
            tally = self._timed if sizes <= self._sizes_seen else self._first
            tally[0] += len(batch)
            tally[1] += seconds
            self._sizes_seen |= sizes
            self.views_done += len(batch)
            for cache in new_caches:
                cache.save()
        return outputs

    def timing(self) -> FixerTiming:
        return FixerTiming(self._timed[0], self._timed[1], self._first[0], self._first[1])


def difix_fixer(
    spec: str | Path | None,
    hub_cache_dir: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    *,
    inference: InferenceConfig | Mapping[str, Any] | None = None,
    long_side: int | None = None,
    resolution: str | None = None,
    compile_cache_dir: str | Path | None = None,
    cudnn_benchmark: bool | None = None,
    **fix_options: Any,
) -> DifixFixer | None:
    """A fixer running DiFix from ``spec`` (pkl, folder or Hub id), loaded once; None for the raw arm.

    ``inference``: the config's ``difix.inference`` (compilation, dtype, batch size; ``batch_size``
    given here wins). ``long_side`` / ``resolution``: the processing size
    (``hi4dfix.difix.data.model_input_size``); the workflow passes the tuning run's, so both arms
    run at the scale the tuned model saw. ``compile_cache_dir``: the study compile cache
    (``difix.compile_cache_dir``; compiled models load their graphs from it and save new ones, the
    live caches kept node-local). ``fix_options`` go to
    :func:`fix_images` (``seed``...).
    """
    if spec is None:
        return None
    settings = inference if isinstance(inference, InferenceConfig) else InferenceConfig.from_dict(inference)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device_type = torch.device(device).type
    compiled = settings.compiled_on(device_type)
    if compiled and compile_cache_dir is not None:
        use_node_local_caches()
    model = load_difix(
        str(spec),
        device=device,
        dtype=getattr(torch, settings.dtype_name_on(device_type)),
        hub_cache_dir=hub_cache_dir,
        compile_mode=settings.compile_mode if compiled else None,
        cudnn_benchmark=cudnn_benchmark,
    )
    fixer = DifixFixer(
        model,
        batch_size or settings.batch_size,
        fixed_shapes=compiled,
        compile_cache_dir=compile_cache_dir if compiled else None,
        compile_mode=settings.compile_mode if compiled else None,
        resolution=resolution,
        long_side=long_side,
        **fix_options,
    )
    fixer.name = str(spec)
    return fixer
