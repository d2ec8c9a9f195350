"""Triplet data for Difix training: (degraded image, clean target, reference view).

The triplets JSON (format of the released Difix training code)::

    {"train": {id: {"image": p, "target_image": p, "ref_image": p, "prompt": "..."}},
     "test": {...}}

hi4dfix adds two optional keys that Difix's code ignores: ``target_mask`` and ``ref_mask``, the
person masks (white where a person is) of ``target_image`` and ``ref_image``, which
``tuning.loss_region: person`` restricts the losses to.

Relative paths are resolved against the working directory, then against the JSON's folder.
The three images of a triplet must have one size (``ref_image`` included: it is resized with
the same transform as ``image``, and a reference of another size would reach the model at
another scale or aspect); :func:`load_training_triplets` refuses others, reading image headers only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Sampler

from hi4dfix.difix.geometry import PRESET_LONG_SIDE, inference_geometry, training_geometry  # noqa: F401 (re-exported)
from hi4dfix.io import read_image

SIZE_MULTIPLE = 16
DEFAULT_PROMPT = "remove degradation"


@dataclass(frozen=True)
class Triplet:
    id: str
    image: Path
    target_image: Path
    ref_image: Path | None
    prompt: str
    target_mask: Path | None = None
    ref_mask: Path | None = None


def _resolve(raw: str, json_dir: Path, where: str) -> Path:
    path = Path(raw)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [Path.cwd() / path, json_dir / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{where}: image file {raw} not found (tried {', '.join(str(c) for c in candidates)})")


def _image_size(path: Path, where: str, sizes: dict[Path, tuple[int, int]]) -> tuple[int, int]:
    """(width, height) from the file's header (no decoding), cached per path."""
    if path not in sizes:
        try:
            with Image.open(path) as image:
                sizes[path] = image.size
        except (OSError, ValueError, SyntaxError) as exc:
            raise ValueError(f"{where}: {path} is not a readable image ({exc})") from exc
    return sizes[path]


def _check_sizes(triplet: Triplet, where: str, sizes: dict[Path, tuple[int, int]]) -> None:
    paths = {
        "image": triplet.image,
        "target_image": triplet.target_image,
        "ref_image": triplet.ref_image,
        "target_mask": triplet.target_mask,
        "ref_mask": triplet.ref_mask,
    }
    found = {key: _image_size(path, where, sizes) for key, path in paths.items() if path is not None}
    if len(set(found.values())) > 1:
        listed = ", ".join(f"{key} {w}x{h}" for key, (w, h) in found.items())
        raise ValueError(
            f"{where}: the triplet's images differ in size ({listed}); image, target_image and ref_image "
            "(and their masks) must have one size (each would be resized on its own, so they would no longer line up)"
        )


def load_training_triplets(
    json_path: str | os.PathLike, split: str, require_ref: bool = True, require_masks: bool = False
) -> list[Triplet]:
    """The triplets of one split, with every image path checked to exist and the three images
    of each triplet checked to have one size (from their headers). ``require_masks``: each
    triplet must name ``target_mask`` (and ``ref_mask`` when ``require_ref``)."""
    json_path = Path(json_path)
    try:
        data = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"triplets file {json_path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"triplets file {json_path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"triplets file {json_path}: top level must be an object with 'train'/'test'")
    entries = data.get(split)
    if entries is None:
        return []
    if not isinstance(entries, dict):
        raise ValueError(f"triplets file {json_path}: '{split}' must map ids to entries")
    triplets = []
    sizes: dict[Path, tuple[int, int]] = {}
    for item_id, entry in entries.items():
        where = f"{json_path} [{split}][{item_id}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: entry must be an object")
        for key in ("image", "target_image"):
            if key not in entry:
                raise ValueError(f"{where}: missing '{key}'")
        ref = entry.get("ref_image")
        if ref is None and require_ref:
            raise ValueError(f"{where}: missing 'ref_image' (the reference view is required)")
        if require_masks:
            for key in ("target_mask", "ref_mask") if require_ref else ("target_mask",):
                if entry.get(key) is None:
                    raise ValueError(
                        f"{where}: missing '{key}', which tuning.loss_region: person needs (the person mask "
                        "of the view; triplets written by hi4dfix have it)"
                    )
        masks = {k: _resolve(entry[k], json_path.parent, where) for k in ("target_mask", "ref_mask") if entry.get(k)}
        triplet = Triplet(
            id=str(item_id),
            image=_resolve(entry["image"], json_path.parent, where),
            target_image=_resolve(entry["target_image"], json_path.parent, where),
            ref_image=_resolve(ref, json_path.parent, where) if ref is not None else None,
            prompt=str(entry.get("prompt", DEFAULT_PROMPT)),
            **masks,
        )
        _check_sizes(triplet, where, sizes)
        triplets.append(triplet)
    return triplets


def snap_size(value: int, multiple: int = SIZE_MULTIPLE) -> int:
    """Nearest multiple of ``multiple`` (at least ``multiple``)."""
    return max(multiple, int(round(value / multiple)) * multiple)


def parse_resolution(value: str | int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``512`` -> (512, 512); ``"112x160"`` / ``(112, 160)`` -> (height, width)."""
    if isinstance(value, int):
        h = w = value
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        h, w = int(value[0]), int(value[1])
    elif isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"resolution {value!r} must be 'N' or 'HxW'") from None
        if len(nums) == 1:
            h = w = nums[0]
        elif len(nums) == 2:
            h, w = nums
        else:
            raise ValueError(f"resolution {value!r} must be 'N' or 'HxW'")
    else:
        raise ValueError(f"resolution {value!r} must be 'N' or 'HxW'")
    if h <= 0 or w <= 0:
        raise ValueError(f"resolution {value!r} must be positive")
    return h, w


def snap_resolution(size: tuple[int, int], multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    return snap_size(size[0], multiple), snap_size(size[1], multiple)


def processing_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(H, W) at which DiFix processes a ``height`` x ``width`` image: the aspect ratio kept,
    the longer side scaled to ``long_side``, each side then snapped to the nearest multiple of
    16 (``snap_size``).  Hi4D's 940x1280 (WxH) frames at 512 give (512, 384); the synthetic
    120x160 frames at 160 give (160, 128)."""
    if height < 1 or width < 1:
        raise ValueError(f"image size {height}x{width} must be positive")
    if long_side < 1:
        raise ValueError(f"long_side must be >= 1, got {long_side}")
    scale = long_side / max(height, width)
    return snap_size(height * scale), snap_size(width * scale)


def model_input_size(
    height: int,
    width: int,
    resolution: str | int | tuple[int, int] | list[int] | None = None,
    long_side: int | None = None,
) -> tuple[int, int]:
    """The size an image is resized to before DiFix, by the one rule training and inference share.

    * ``resolution`` ('N' or 'HxW', snapped to 16): every image at that fixed size; frames of
      another aspect ratio are squashed.  Overrides ``long_side``.
    * ``long_side``: ``processing_size`` (aspect kept, no squashing).
    * neither: the image's own size snapped to 16 (no rescaling).
    """
    if resolution is not None:
        return snap_resolution(parse_resolution(resolution))
    if long_side is not None:
        return processing_size(height, width, long_side)
    return snap_resolution((height, width))


def to_model_range(image: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """(H, W, 3) float in [0, 1] -> (3, H, W) tensor in [-1, 1], on ``device`` (default: the CPU)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device)
    return tensor.permute(2, 0, 1) * 2.0 - 1.0


def resize_chw(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (..., C, H, W) with antialiased bicubic interpolation (no-op at the same size)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    out = F.interpolate(flat.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.reshape(*lead, *out.shape[-3:]).to(images.dtype)


class TripletDataset(Dataset):
    """Items: ``views`` (V, 3, H, W) = [image, ref], ``targets`` = [target, ref], in [-1, 1].

    As in the released training code the reference view's target is the reference itself.
    Every image of an item is resized to ``model_input_size`` of the item's ``image``
    (``resolution``: a fixed size; else ``long_side``, aspect kept; else its own size snapped).
    ``crop`` (h, w): a random window of that size, at the same place in every view of the
    item, cut after the resize; the window is drawn from the key the sampler yields
    (``(index, draw)``, see :class:`StepSampler`), so it is a pure function of the step.
    Crops keep the processing size's pixel scale and cost less per step than whole images.
    ``mask_dilation`` (not None): items also hold ``masks`` (V, 1, H, W) in {0, 1}, the views'
    person masks (``target_mask``, ``ref_mask``) at the processing size, grown by that many pixels
    (:func:`dilate_masks`), for the losses of ``loss_region: person``.
    """

    def __init__(
        self,
        triplets: list[Triplet],
        resolution: str | int | tuple[int, int] | None = None,
        use_ref: bool = True,
        long_side: int | None = None,
        crop: tuple[int, int] | None = None,
        seed: int = 0,
        mask_dilation: int | None = None,
    ) -> None:
        if not triplets:
            raise ValueError("TripletDataset needs at least one triplet")
        if use_ref and any(t.ref_image is None for t in triplets):
            missing = next(t.id for t in triplets if t.ref_image is None)
            raise ValueError(f"triplet {missing} has no ref_image but use_ref is set")
        self.triplets = triplets
        self.resolution = resolution
        self.long_side = long_side
        self.use_ref = use_ref
        self.crop = crop
        self.seed = seed
        self.mask_dilation = mask_dilation
        if mask_dilation is not None:
            lacking = next((t.id for t in triplets if t.target_mask is None or (use_ref and t.ref_mask is None)), None)
            if lacking is not None:
                raise ValueError(f"triplet {lacking} has no target_mask / ref_mask, which the person loss region needs")

    def __len__(self) -> int:
        return len(self.triplets)

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        return model_input_size(height, width, self.resolution, self.long_side)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, draw = key if isinstance(key, tuple) else (key, None)
        t = self.triplets[index]
        raw = to_model_range(read_image(t.image))
        size = self.size_for(raw.shape[1], raw.shape[2])

        def load(path: Path) -> torch.Tensor:
            return resize_chw(to_model_range(read_image(path)), size).clamp(-1, 1)

        image, target = resize_chw(raw, size).clamp(-1, 1), load(t.target_image)
        if self.use_ref:
            ref = load(t.ref_image)
            views, targets = torch.stack([image, ref]), torch.stack([target, ref])
        else:
            views, targets = image[None], target[None]
        masks = None
        if self.mask_dilation is not None:
            paths = [t.target_mask, t.ref_mask] if self.use_ref else [t.target_mask]
            masks = dilate_masks(torch.stack([load_mask(p, size) for p in paths]), self.mask_dilation)
        if self.crop is not None:
            if draw is None:
                raise ValueError(
                    "a cropping TripletDataset needs (index, draw) keys: use StepSampler(..., with_draw=True)"
                )
            if self.crop[0] > size[0] or self.crop[1] > size[1]:
                raise ValueError(
                    f"triplet {t.id}: crop {self.crop[0]}x{self.crop[1]} is larger than its processing size "
                    f"{size[0]}x{size[1]}"
                )
            rng = np.random.default_rng([self.seed, 7_777_777, draw])
            top = int(rng.integers(size[0] - self.crop[0] + 1))
            left = int(rng.integers(size[1] - self.crop[1] + 1))
            window = (..., slice(top, top + self.crop[0]), slice(left, left + self.crop[1]))
            views, targets = views[window], targets[window]
            masks = None if masks is None else masks[window]
        item = {"views": views, "targets": targets, "prompt": t.prompt, "index": index}
        if masks is not None:
            item["masks"] = masks
        return item


def load_mask(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """A person mask (white: person) as a (1, H, W) float tensor in {0, 1} at ``size`` (nearest)."""
    raw = np.asarray(Image.open(path))
    if raw.ndim == 3:
        raw = raw[..., 0]
    mask = torch.from_numpy((raw > 127).astype(np.float32))[None, None]
    return F.interpolate(mask, size=size, mode="nearest")[0]


def dilate_masks(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Masks (..., 1, H, W) in {0, 1} grown by ``pixels`` (a square window: max pooling)."""
    if pixels <= 0:
        return masks
    flat = masks.reshape(-1, 1, *masks.shape[-2:])
    grown = F.max_pool2d(flat, kernel_size=2 * pixels + 1, stride=1, padding=pixels)
    return grown.reshape(masks.shape)


def stream_index(step: int, slot: int, batch_size: int, rank: int, world_size: int, n: int, seed: int) -> int:
    """Dataset index used at (1-based) ``step`` by ``rank`` in batch ``slot``.

    One infinite stream of epochs, each a seeded permutation; position is a pure function
    of the step, so a resumed run sees exactly the batches the killed one would have.
    """
    flat = ((step - 1) * world_size + rank) * batch_size + slot
    epoch, position = divmod(flat, n)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return int(order[position])


class StepSampler(Sampler):
    """Indices for steps ``first_step..last_step`` of one rank (use with ``batch_size``).

    ``with_draw``: yield ``(index, draw)`` where ``draw`` numbers the sample in the whole
    stream (step, rank, slot), for datasets that draw a random crop per sample.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        first_step: int,
        last_step: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        with_draw: bool = False,
    ):
        if n <= 0:
            raise ValueError("empty dataset")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.first_step, self.last_step = first_step, last_step
        self.rank, self.world_size = rank, world_size
        self.with_draw = with_draw

    def __len__(self) -> int:
        return max(0, self.last_step - self.first_step + 1) * self.batch_size

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        for step in range(self.first_step, self.last_step + 1):
            for slot in range(self.batch_size):
                index = stream_index(step, slot, self.batch_size, self.rank, self.world_size, self.n, self.seed)
                if self.with_draw:
                    yield index, ((step - 1) * self.world_size + self.rank) * self.batch_size + slot
                else:
                    yield index


def collate(items: list[dict]) -> dict:
    sizes = sorted({tuple(it["views"].shape[-2:]) for it in items})
    if len(sizes) > 1:
        raise ValueError(
            f"one batch holds images of processing sizes {sizes} (their source images differ in size); "
            "use batch size 1 or a fixed resolution"
        )
    batch = {
        "views": torch.stack([it["views"] for it in items]),
        "targets": torch.stack([it["targets"] for it in items]),
        "prompts": [it["prompt"] for it in items],
        "indices": [it["index"] for it in items],
    }
    if "masks" in items[0]:
        batch["masks"] = torch.stack([it["masks"] for it in items])
    return batch
