"""Difix inference on numpy images: load the model once, fix many images.

    model = load_difix("model_300.pkl", device="cuda", dtype=torch.bfloat16)
    fixed = fix_images(model, renders, refs, batch_size=4)

Images are float32 (H, W, 3) arrays in [0, 1].  Each is resized to its processing size
(``hi4dfix.difix.data.model_input_size``, the rule training uses: ``long_side`` with the
aspect kept, or a fixed ``resolution``, or its own size snapped to 16), fixed together with
its same-frame reference view, and resized back to its input size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from hi4dfix.difix.checkpoint import load_model
from hi4dfix.difix.data import model_input_size, resize_chw, to_model_range
from hi4dfix.difix.memory_format import channels_last_wanted, to_channels_last
from hi4dfix.difix.model import DifixModel


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
