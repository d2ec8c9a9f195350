"""A TorchScript image-to-image fixer, run as an arm beside DiFix's.

Made for the successor of DiFix, nv-tlabs/Fixer, whose release includes a TorchScript model
(``models/pretrained/pretrained_fixer_jit.pt``): one RGB image resized to one of the sizes it was
exported for (W x H 1024x576, 832x448, 704x384 or 512x288), as a bf16 tensor ``[1, 3, H, W]`` in
[-1, 1]; the output has the same shape and range and is resized back. Its inference script imports
``transformer_engine`` before loading the file (the archive's operators live there). Any model of
that kind fits: :class:`TorchScriptContract` says what it takes, and :class:`TorchScriptFixer` is a
fixer with the interface of :class:`hi4dfix.difix.infer.DifixFixer` (``fixer(images, refs)``, images
float ``(H, W, 3)`` in [0, 1]; the reference views are ignored: such a model has no reference input).

Fitting an image to the model's size: ``stretch`` resizes it to the size as upstream's script does
(a 940x1280 Hi4D frame is squeezed into 576x1024); ``pad`` keeps the aspect ratio, scales the image to
fit inside the size and pads with black (the study's renders are composited over black), then crops
the padding off the output before resizing back.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

# torch is imported where a model runs: the plan parses contracts at every DAG build (hi4dfix.extra_arms)
if TYPE_CHECKING:
    import torch

    from hi4dfix.difix.infer import FixerTiming

log = logging.getLogger(__name__)

DTYPES = ("bfloat16", "float16", "float32")  # torch dtypes by name
FITS = ("stretch", "pad")
# nv-tlabs/Fixer's exported sizes (W, H), from its README and inference script
FIXER_RESOLUTIONS = ((1024, 576), (832, 448), (704, 384), (512, 288))


class TorchScriptFixerError(ValueError):
    """A TorchScript fixer that cannot run: bad contract, missing module, not a model, wrong output."""


@dataclass(frozen=True)
class TorchScriptContract:
    """What a TorchScript fixer takes: the size it runs at (W, H) among those it supports, the value range and
    dtype of its input and output, the modules to import before loading it, and how an image is fitted."""

    resolution: tuple[int, int]
    resolutions: tuple[tuple[int, int], ...] = FIXER_RESOLUTIONS
    value_range: tuple[float, float] = (-1.0, 1.0)
    dtype: str = "bfloat16"
    imports: tuple[str, ...] = ()
    fit: str = "pad"

    def check(self, where: str) -> None:
        """Raise :class:`TorchScriptFixerError` naming ``where`` (the setting) for a contract that cannot hold."""
        supported = ", ".join(f"{w}x{h}" for w, h in self.resolutions)
        if tuple(self.resolution) not in {tuple(r) for r in self.resolutions}:
            w, h = self.resolution
            raise TorchScriptFixerError(
                f"{where}.resolution {w}x{h} (W x H) is not one the model was exported for ({supported}); set "
                f"{where}.resolution to one of them"
            )
        low, high = self.value_range
        if not low < high:
            raise TorchScriptFixerError(f"{where}.value_range {list(self.value_range)} must be [low, high], low < high")
        if self.dtype not in DTYPES:
            raise TorchScriptFixerError(f"{where}.dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.fit not in FITS:
            raise TorchScriptFixerError(f"{where}.fit {self.fit!r} is not one of {', '.join(FITS)}")
        missing = [name for name in self.imports if importlib.util.find_spec(name) is None]
        if missing:
            raise TorchScriptFixerError(
                f"{where}.imports: module(s) {', '.join(missing)} are not installed where the evaluation runs; the "
                f"model's operators need them (for nv-tlabs/Fixer: pip install transformer-engine[pytorch])"
            )


def _fit(image: torch.Tensor, size_hw: tuple[int, int], fit: str) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """``image`` (1, 3, h, w) brought to ``size_hw``; the box (top, left, height, width) the image fills."""
    import torch.nn.functional as F

    height, width = size_hw
    if fit == "stretch":
        stretched = F.interpolate(image, size=size_hw, mode="bilinear", align_corners=False, antialias=True)
        return stretched, (0, 0, height, width)
    scale = min(height / image.shape[2], width / image.shape[3])
    inner = (max(1, round(image.shape[2] * scale)), max(1, round(image.shape[3] * scale)))
    scaled = F.interpolate(image, size=inner, mode="bilinear", align_corners=False, antialias=True)
    top, left = (height - inner[0]) // 2, (width - inner[1]) // 2
    padded = F.pad(scaled, (left, width - inner[1] - left, top, height - inner[0] - top), value=0.0)
    return padded, (top, left, *inner)


class TorchScriptFixer:
    """A fixer running a TorchScript model one image at a time under its :class:`TorchScriptContract`."""

    batch_size = 1

    def __init__(self, path: str | os.PathLike, contract: TorchScriptContract, device: str | torch.device, name: str):
        import torch

        self.path, self.contract, self.name = Path(path), contract, name
        self.device = torch.device(device)
        contract.check(f"arm {name}")
        for module in contract.imports:
            importlib.import_module(module)  # registers the archive's operators before loading it
        if not self.path.is_file():
            raise TorchScriptFixerError(f"arm {name}: TorchScript file {self.path} does not exist")
        try:
            self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TorchScriptFixerError(
                f"arm {name}: {self.path} is not a TorchScript model torch.jit.load can read ({first})"
            ) from None
        self.dtype = getattr(torch, contract.dtype)
        self._timed, self._first = [0, 0.0], [0, 0.0]  # views, seconds (the first view apart: warm-up)
        width, height = contract.resolution
        log.info("arm %s: TorchScript fixer %s at %dx%d (W x H), %s", name, self.path, width, height, contract.dtype)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        autocast = self.device.type == "cuda" and self.dtype != torch.float32
        with torch.inference_mode(), torch.autocast(device_type=self.device.type, dtype=self.dtype, enabled=autocast):
            out = self.model(x.to(self.dtype))
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TorchScriptFixerError(
                f"arm {self.name}: {self.path} returned {got} for an input of {tuple(x.shape)}; a fixer's output must "
                "have its input's shape"
            )
        return out.float()

    def __call__(self, images: Sequence[np.ndarray], refs: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        low, high = self.contract.value_range
        width, height = self.contract.resolution
        outputs = []
        for image in images:
            started = time.perf_counter()
            h, w = image.shape[:2]
            x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None].to(self.device)
            fitted, (top, left, ih, iw) = _fit(x, (height, width), self.contract.fit)
            out = (self._run(fitted * (high - low) + low) - low) / (high - low)
            out = out[:, :, top : top + ih, left : left + iw].clamp(0, 1)
            back = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
            outputs.append(back[0].permute(1, 2, 0).contiguous().cpu().numpy())
            tally = self._timed if self._first[0] else self._first
            tally[0] += 1
            tally[1] += time.perf_counter() - started  # the output is on the host: the device is done
        return outputs

    def timing(self) -> FixerTiming:
        """Wall time per view, as :class:`hi4dfix.difix.infer.DifixFixer` reports it (the first view apart)."""
        from hi4dfix.difix.infer import FixerTiming

        return FixerTiming(self._timed[0], self._timed[1], self._first[0], self._first[1])
