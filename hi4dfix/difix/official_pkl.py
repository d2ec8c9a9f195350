"""DiFix in the official ``model_*.pkl`` format (a ``torch.save`` dict).

Official keys (``save_ckpt`` in the released training code): ``vae_lora_target_modules``,
``rank_vae``, ``state_dict_unet`` (all UNet weights), ``state_dict_vae`` (VAE weights whose
name contains ``lora`` or ``skip``) and ``optimizer`` (the resumable checkpoints of a tuning run
hold its AdamW state; its final model and exported models hold an empty one).  The released
``Difix.save_model`` writes the same keys but keeps only the UNet weights whose name contains
``lora`` or ``conv_in``; its loader puts them on top of SD-Turbo's UNet, and so does
``model_from_checkpoint`` (the rest of the UNet comes from ``base_model_id``).  We add:

* ``hi4dfix_config``: the ``DifixConfig`` (preset and architecture) so that a tiny model can
  be rebuilt from the pkl alone; official pkls lack it and are treated as ``sd-turbo``;
* ``rank_unet`` and ``unet_lora_target_modules`` (img2img-turbo's keys): a UNet LoRA
  (``tuning.unet: lora``), whose weights ``state_dict_unet`` holds with the base UNet's;
* ``hi4dfix_base_state`` (tiny preset only): the frozen weights that an official pkl does
  not carry because they come from SD-Turbo (VAE base layers, text encoder);
* ``hi4dfix_train_state``: step, RNG states and training settings (resume).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hi4dfix.difix.checkpoint_base import ACCEPTED_FORMATS, CheckpointError, load_exact, load_partial
from hi4dfix.difix.config import CONFIG_KEY, DifixConfig
from hi4dfix.difix.model import (
    DifixModel,
    add_unet_lora,
    assemble_difix,
    build_text_encoder,
    build_tiny_tokenizer,
    build_unet,
    build_vae,
)
from hi4dfix.difix.pretrained_dir import difix_from_components, load_base_components
from hi4dfix.io import atomic_path

LOG = logging.getLogger(__name__)


OFFICIAL_MODEL_KEYS = ("vae_lora_target_modules", "rank_vae", "state_dict_unet", "state_dict_vae")


OPTIMIZER_KEY = "optimizer"


BASE_STATE_KEY = "hi4dfix_base_state"


TRAIN_STATE_KEY = "hi4dfix_train_state"


def is_save_model_unet(unet_state: Mapping[str, Any], unet_keys: set[str]) -> bool:
    """Whether ``state_dict_unet`` has the layout of the released ``Difix.save_model``: exactly
    the UNet weights whose name contains ``lora`` or ``conv_in``."""
    expected = {k for k in unet_keys if "lora" in k or "conv_in" in k}
    return bool(expected) and set(unet_state) == expected and len(expected) < len(unet_keys)


def checkpoint_payload(
    model: DifixModel,
    optimizer_state: Mapping[str, Any] | None = None,
    train_state: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a ``model_*.pkl`` holds, tensors moved to CPU."""
    payload: dict[str, Any] = dict(model.official_state())
    payload[OPTIMIZER_KEY] = dict(optimizer_state) if optimizer_state is not None else _empty_optimizer_state()
    payload[CONFIG_KEY] = model.difix_config.to_dict()
    if model.difix_config.preset == "tiny":
        payload[BASE_STATE_KEY] = frozen_base_state(model)
    if train_state is not None:
        payload[TRAIN_STATE_KEY] = dict(train_state)
    return _to_cpu(payload)


def save_checkpoint(
    path: str | os.PathLike,
    model: DifixModel,
    optimizer_state: Mapping[str, Any] | None = None,
    train_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a pkl atomically (a killed job never leaves half a checkpoint); equal contents give
    equal bytes (no file name or time inside)."""
    payload = checkpoint_payload(model, optimizer_state, train_state)
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        # through a file object: torch.save given a path names the archive's root folder after
        # the (temporary) file, so equal weights would give other bytes
        torch.save(payload, fh)
    return path


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"PK\x03\x04", "a zip archive that torch.load cannot read"),
    (b"\x93NUMPY", "a NumPy .npy array"),
)


def _what_file_is(path: Path, exc: BaseException) -> str:
    """What an unreadable file seems to be, from its first bytes (never torch's advice to
    re-run with weights_only=False: that would execute whatever the file holds)."""
    head = path.read_bytes()[:512] if path.stat().st_size else b""
    if not head:
        return "the file is empty"
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    if refused is not None:
        return (
            f"it holds Python objects other than tensors, dicts, lists and numbers ({refused.group(1)}), "
            "which hi4dfix does not load (unpickling them could run code from the file)"
        )
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"it is {what}"
    if head[:1] == b"\x80":
        return "it is a Python pickle, not a file written by torch.save"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "its bytes are not a torch.save file"
    return "it is a text file, not a file written by torch.save"


def _check_model_keys(payload: Mapping[str, Any], path: Path) -> None:
    """The official keys hold what the Difix loader needs, or the error names file and key."""
    rank = payload["rank_vae"]
    if isinstance(rank, torch.Tensor) and rank.numel() == 1 and not rank.is_floating_point():
        rank = rank.item()
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise CheckpointError(
            f"checkpoint {path}: key rank_vae must be a positive integer (the VAE LoRA rank), got {rank!r}"
        )
    targets = payload["vae_lora_target_modules"]
    if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
        raise CheckpointError(
            f"checkpoint {path}: key vae_lora_target_modules must be a list of module names, got {targets!r:.80}"
        )
    if "rank_unet" in payload:
        rank_unet, unet_targets = payload["rank_unet"], payload.get("unet_lora_target_modules")
        if isinstance(rank_unet, bool) or not isinstance(rank_unet, int) or rank_unet < 1:
            raise CheckpointError(f"checkpoint {path}: key rank_unet must be a positive integer, got {rank_unet!r}")
        if not isinstance(unet_targets, (list, tuple)) or not all(isinstance(t, str) for t in unet_targets):
            raise CheckpointError(
                f"checkpoint {path}: rank_unet needs unet_lora_target_modules, a list of module names; got "
                f"{unet_targets!r:.80}"
            )
    for key in ("state_dict_unet", "state_dict_vae"):
        state = payload[key]
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"checkpoint {path}: key {key} must map parameter names to tensors")


# Train-state entries that only resuming needs; a final model keeps step and settings alone.
RESUME_ONLY_KEYS = ("rng", "scaler")


def save_model_weights(
    path: str | os.PathLike, model: DifixModel, train_state: Mapping[str, Any] | None = None
) -> Path:
    """A final model: weights and where they came from, without optimizer moments or RNG states.

    ``optimizer`` is written empty, as for an untrained model: Difix's inference loader never
    reads it and its resume loader indexes it (resume from a full checkpoint instead).
    """
    kept = None if train_state is None else {k: v for k, v in train_state.items() if k not in RESUME_ONLY_KEYS}
    return save_checkpoint(path, model, None, kept)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a pkl (tensors, lists and numbers only: ``weights_only``) and check its keys.

    A file that is not a Difix checkpoint is refused saying what it seems to be and which
    formats are accepted.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, wrong format
        raise CheckpointError(
            f"{path} is not a Difix checkpoint: {_what_file_is(path, exc)}. Accepted: {ACCEPTED_FORMATS}"
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"{path} is not a Difix checkpoint: it holds a {type(payload).__name__}, not a dict of "
            f"{', '.join(OFFICIAL_MODEL_KEYS)}. Accepted: {ACCEPTED_FORMATS}"
        )
    missing = [k for k in OFFICIAL_MODEL_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the Difix keys {missing}")
    _check_model_keys(payload, path)
    return payload


def _looks_tiny(payload: Mapping[str, Any]) -> bool:
    """Whether the pkl's UNet has exactly the tiny preset's parameter shapes."""
    with torch.device("meta"):
        tiny = build_unet(DifixConfig(preset="tiny").architecture.unet)
    expected = {k: tuple(v.shape) for k, v in tiny.state_dict().items()}
    return {k: tuple(v.shape) for k, v in payload["state_dict_unet"].items()} == expected


def _refuse_configless_hi4dfix_pkl(payload: Mapping[str, Any], source: str, base_model_id: str) -> None:
    """A pkl without hi4dfix_config is read as an official sd-turbo one, whose base weights
    may come from the Hub: refuse, offline, one that is really a tiny hi4dfix model."""
    if BASE_STATE_KEY in payload:
        why = f"it holds {BASE_STATE_KEY!r}, which only hi4dfix's tiny preset writes"
    elif not Path(base_model_id).is_dir() and _looks_tiny(payload):
        why = "its UNet has the tiny preset's parameter shapes, not SD-Turbo's"
    else:
        return
    raise CheckpointError(
        f"checkpoint {source} lacks {CONFIG_KEY!r}, so it would be read as an official sd-turbo Difix pkl "
        f"(and its base fetched from {base_model_id}), but {why}. It is a tiny hi4dfix checkpoint that lost "
        "its config: use the pkl as hi4dfix wrote it (save_checkpoint keeps the key), or restore "
        f"{CONFIG_KEY!r}. Nothing was downloaded."
    )


def frozen_base_state(model: DifixModel) -> dict[str, dict[str, torch.Tensor]]:
    """Weights an official pkl does not store (they come from SD-Turbo for the full model)."""
    vae = {k: v for k, v in model.vae.state_dict().items() if "lora" not in k and "skip" not in k}
    return {"vae": vae, "text_encoder": model.text_encoder.state_dict()}


def _empty_optimizer_state() -> dict[str, Any]:
    # Official loaders read this key; a model exported without training has no moments.
    return {"state": {}, "param_groups": []}


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return obj


def apply_official_state(
    model: DifixModel,
    payload: Mapping[str, Any],
    strict: bool = True,
    source: str = "",
    base_unet_loaded: bool = False,
) -> None:
    """Load ``state_dict_unet`` / ``state_dict_vae`` into a model built with the pkl's LoRA.

    Unexpected keys are always an error; missing keys are an error when ``strict`` (the
    released loader keeps the base value of keys absent from the pkl: ``strict=False``).
    ``base_unet_loaded``: the model's UNet holds pretrained base weights, so a pkl in
    ``save_model``'s layout (UNet ``conv_in`` / LoRA weights only) is complete on top of it.
    """
    where = f" in {source}" if source else ""
    unet_state = payload["state_dict_unet"]
    vae_state = payload["state_dict_vae"]
    unet_expected = set(model.unet.state_dict())
    vae_expected = {k for k in model.vae.state_dict() if "lora" in k or "skip" in k}
    if base_unet_loaded and is_save_model_unet(unet_state, unet_expected):
        LOG.info(
            "%s: save_model layout; its %d UNet tensors go on top of the base UNet", source or "pkl", len(unet_state)
        )
        unet_expected = set(unet_state)
    problems = []
    for name, given, expected in (
        ("state_dict_unet", unet_state, unet_expected),
        ("state_dict_vae", vae_state, vae_expected),
    ):
        unexpected = sorted(set(given) - expected)
        missing = sorted(expected - set(given))
        if unexpected:
            problems.append(f"{name}: {len(unexpected)} unexpected keys, e.g. {unexpected[:3]}")
        if missing and strict:
            problems.append(f"{name}: {len(missing)} missing keys, e.g. {missing[:3]}")
    if problems:
        raise CheckpointError(f"checkpoint does not fit the Difix architecture{where}: " + "; ".join(problems))
    load_partial(model.unet, unet_state, where)
    load_partial(model.vae, vae_state, where)


def model_from_checkpoint(
    payload: Mapping[str, Any],
    source: str = "",
    base_model_id: str | None = None,
    hub_cache_dir: str | None = None,
    strict: bool = True,
) -> DifixModel:
    """Rebuild a model from a pkl payload (ours or official)."""
    raw_config = payload.get(CONFIG_KEY)
    if raw_config is None:  # official pkl
        config = DifixConfig(preset="sd-turbo")
        _refuse_configless_hi4dfix_pkl(payload, source, base_model_id or config.base_model_id)
    else:
        config = DifixConfig.from_dict(dict(raw_config))
    if base_model_id is not None:
        config.base_model_id = base_model_id
    if hub_cache_dir is not None:
        config.hub_cache_dir = hub_cache_dir
    rank = int(payload["rank_vae"])
    targets = list(payload["vae_lora_target_modules"])
    config.lora_rank_vae = rank

    if config.preset == "tiny":
        base = payload.get(BASE_STATE_KEY)
        if base is None:
            raise CheckpointError(f"tiny checkpoint {source} lacks {BASE_STATE_KEY!r} (VAE base and text encoder)")
        arch = config.architecture
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.init_seed)
            unet, vae, text_encoder = build_unet(arch.unet), build_vae(arch.vae), build_text_encoder(arch.text_encoder)
        tokenizer = build_tiny_tokenizer(arch.tokenizer_max_length)
        model = assemble_difix(config, unet, vae, text_encoder, tokenizer, rank=rank, target_modules=targets)
        load_exact(model.text_encoder, base["text_encoder"], f"{source} text_encoder")
        vae_base_expected = {k for k in model.vae.state_dict() if "lora" not in k and "skip" not in k}
        if set(base["vae"]) != vae_base_expected:
            raise CheckpointError(f"{source}: {BASE_STATE_KEY}.vae keys do not fit the tiny VAE")
        load_partial(model.vae, base["vae"], f" in {source}")
    else:
        components = load_base_components(config.base_model_id, config.hub_cache_dir)
        model = difix_from_components(config, components, rank, targets)
    if "rank_unet" in payload:  # a UNet LoRA (tuning.unet: lora): its adapter before its weights
        add_unet_lora(model.unet, int(payload["rank_unet"]), list(payload["unet_lora_target_modules"]))
    apply_official_state(model, payload, strict=strict, source=source, base_unet_loaded=config.preset != "tiny")
    model.set_eval()
    return model
