"""Difix checkpoints: the official ``model_*.pkl`` layout, diffusers-style folders, Hub ids.

Official pkl keys (``save_ckpt`` in the released training code): ``vae_lora_target_modules``,
``rank_vae``, ``state_dict_unet`` (all UNet weights), ``state_dict_vae`` (VAE weights whose
name contains ``lora`` or ``skip``) and ``optimizer`` (the resumable checkpoints of a tuning run
hold its AdamW state; its final model and exported models hold an empty one).  The released
``Difix.save_model`` writes the same keys but keeps only the UNet weights whose name contains
``lora`` or ``conv_in``; its loader puts them on top of SD-Turbo's UNet, and so does
``load_model`` (the rest of the UNet comes from ``base_model_id``).  We add:

* ``hi4dfix_config``: the ``DifixConfig`` (preset and architecture) so that a tiny model can
  be rebuilt from the pkl alone; official pkls lack it and are treated as ``sd-turbo``;
* ``rank_unet`` and ``unet_lora_target_modules`` (img2img-turbo's keys): a UNet LoRA
  (``tuning.unet: lora``), whose weights ``state_dict_unet`` holds with the base UNet's;
* ``hi4dfix_base_state`` (tiny preset only): the frozen weights that an official pkl does
  not carry because they come from SD-Turbo (VAE base layers, text encoder);
* ``hi4dfix_train_state``: step, RNG states and training settings (resume).

Folders follow the ``nvidia/difix_ref`` Hub layout: ``model_index.json`` and the
subfolders ``scheduler``, ``text_encoder``, ``tokenizer``, ``unet``, ``vae``; the VAE
weights file holds the base, LoRA and skip weights together.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel, CLIPTokenizer

from hi4dfix.difix.config import CONFIG_KEY, SKIP_CONV_INIT_VALUE, VAE_ADAPTER_NAME, ArchitectureConfig, DifixConfig
from hi4dfix.difix.model import (
    DifixModel,
    add_unet_lora,
    assemble_difix,
    attach_skip_convs,
    build_random_difix,
    build_text_encoder,
    build_tiny_tokenizer,
    build_unet,
    build_vae,
    official_vae_lora_targets,
)
from hi4dfix.io import atomic_path

OFFICIAL_MODEL_KEYS = ("vae_lora_target_modules", "rank_vae", "state_dict_unet", "state_dict_vae")
OPTIMIZER_KEY = "optimizer"
BASE_STATE_KEY = "hi4dfix_base_state"
TRAIN_STATE_KEY = "hi4dfix_train_state"
RANDOM_TINY_SPEC = "tiny-random"

VAE_WEIGHTS = "diffusion_pytorch_model.safetensors"
HUB_ALLOW_PATTERNS = [
    "model_index.json",
    "hi4dfix_config.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/*",
    "unet/config.json",
    f"unet/{VAE_WEIGHTS}",
    "vae/config.json",
    f"vae/{VAE_WEIGHTS}",
]

_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_A\.(?P<adapter>[^.]+)\.weight$")
LOG = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the architecture."""


class FreshDifixPartsWarning(UserWarning):
    """A VAE weights file without Difix's LoRA and skip weights: they keep their fresh init."""


def is_save_model_unet(unet_state: Mapping[str, Any], unet_keys: set[str]) -> bool:
    """Whether ``state_dict_unet`` has the layout of the released ``Difix.save_model``: exactly
    the UNet weights whose name contains ``lora`` or ``conv_in``."""
    expected = {k for k in unet_keys if "lora" in k or "conv_in" in k}
    return bool(expected) and set(unet_state) == expected and len(expected) < len(unet_keys)


# ----------------------------------------------------------------------------- pkl files


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
    """Write a pkl atomically (a killed job never leaves half a checkpoint)."""
    payload = checkpoint_payload(model, optimizer_state, train_state)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


ACCEPTED_FORMATS = (
    "a model_*.pkl written by torch.save (the official Difix training code's layout, or hi4dfix's with "
    "its hi4dfix_config), a diffusers folder laid out like nvidia/difix_ref (model_index.json, unet/, vae/, "
    f"text_encoder/, tokenizer/, scheduler/), a Hugging Face Hub id (owner/name), or {RANDOM_TINY_SPEC!r}"
)

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
    _load_partial(model.unet, unet_state, where)
    _load_partial(model.vae, vae_state, where)


def _load_partial(module: torch.nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    current = module.state_dict()
    for key, value in state.items():
        if tuple(current[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"shape mismatch for {key}{where}: checkpoint {tuple(value.shape)} vs model {tuple(current[key].shape)}"
            )
    merged = dict(current)
    merged.update(state)
    module.load_state_dict(merged, strict=True)


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
        _load_exact(model.text_encoder, base["text_encoder"], f"{source} text_encoder")
        vae_base_expected = {k for k in model.vae.state_dict() if "lora" not in k and "skip" not in k}
        if set(base["vae"]) != vae_base_expected:
            raise CheckpointError(f"{source}: {BASE_STATE_KEY}.vae keys do not fit the tiny VAE")
        _load_partial(model.vae, base["vae"], f" in {source}")
    else:
        components = load_base_components(config.base_model_id, config.hub_cache_dir)
        model = _difix_from_components(config, components, rank, targets)
    if "rank_unet" in payload:  # a UNet LoRA (tuning.unet: lora): its adapter before its weights
        add_unet_lora(model.unet, int(payload["rank_unet"]), list(payload["unet_lora_target_modules"]))
    apply_official_state(model, payload, strict=strict, source=source, base_unet_loaded=config.preset != "tiny")
    model.set_eval()
    return model


def _load_exact(module: torch.nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    result = module.load_state_dict(dict(state), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{where}: missing {result.missing_keys[:3]} unexpected {result.unexpected_keys[:3]}")


# ----------------------------------------------------------------------------- folders and the Hub


class BaseComponents:
    """Plain (not yet Difix-modified) components read from a folder or Hub id."""

    def __init__(
        self,
        unet,
        vae,
        vae_state,
        text_encoder,
        tokenizer,
        architecture: ArchitectureConfig,
        vae_file: Path | None = None,
    ):
        self.unet = unet
        self.vae = vae
        self.vae_state = vae_state
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.architecture = architecture
        self.vae_file = vae_file  # where vae_state was read from (for messages)


def resolve_pretrained_dir(source: str, hub_cache_dir: str | None) -> Path:
    """A local folder as is, or a Hub id downloaded (or found in the cache) as a folder."""
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{source} is a file, not a Difix / SD-Turbo folder")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        raise CheckpointError(f"{source!r} is neither an existing folder, a .pkl file nor a Hub id (owner/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, cache_dir=hub_cache_dir, allow_patterns=HUB_ALLOW_PATTERNS))
    except Exception as exc:
        raise CheckpointError(
            f"cannot get {source} from the Hugging Face Hub (cache_dir={hub_cache_dir!r}): {exc}. "
            "Download it where the Hub is reachable (huggingface-cli download "
            f"{source} --cache-dir DIR) and pass that cache dir, or pass a local folder."
        ) from exc


def _json_safe(config: Mapping[str, Any]) -> dict[str, Any]:
    clean = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    return json.loads(json.dumps(clean, default=str))


def load_base_components(source: str, hub_cache_dir: str | None = None) -> BaseComponents:
    """UNet, VAE (config + raw weights), text encoder and tokenizer from a folder or Hub id."""
    root = resolve_pretrained_dir(source, hub_cache_dir)
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (root / sub).is_dir():
            raise CheckpointError(f"{root} lacks the subfolder {sub}/ of a diffusers pipeline folder")
    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet")
    vae_config = AutoencoderKL.load_config(root, subfolder="vae")
    vae = AutoencoderKL.from_config(vae_config)
    vae_file = root / "vae" / VAE_WEIGHTS
    if not vae_file.is_file():
        raise CheckpointError(f"{vae_file} does not exist")
    vae_state = load_file(str(vae_file))
    text_encoder = CLIPTextModel.from_pretrained(root, subfolder="text_encoder")
    tokenizer = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
    scheduler_config = DDPMScheduler.load_config(root, subfolder="scheduler")
    architecture = ArchitectureConfig(
        unet=_json_safe(unet.config),
        vae=_json_safe(vae.config),
        text_encoder=_json_safe(text_encoder.config.to_diff_dict()),
        scheduler=_json_safe(scheduler_config),
        tokenizer_max_length=int(tokenizer.model_max_length),
    )
    return BaseComponents(unet, vae, vae_state, text_encoder, tokenizer, architecture, vae_file)


def _vae_adapters_in(state: Mapping[str, torch.Tensor]) -> tuple[list[str], int | None]:
    """LoRA target modules and rank found in a VAE weights file."""
    modules, ranks = [], set()
    for key, value in state.items():
        match = _LORA_KEY.match(key)
        if match:
            modules.append(match["module"])
            ranks.add(int(value.shape[0]))
    if len(ranks) > 1:
        raise CheckpointError(f"VAE weights mix LoRA ranks {sorted(ranks)}")
    return modules, (ranks.pop() if ranks else None)


def _normalise_vae_key(key: str, model_keys: set[str]) -> str | None:
    """Map a file key onto the model (plain ``x.weight`` <-> PEFT ``x.base_layer.weight``)."""
    key = re.sub(r"\.lora_([AB])\.[^.]+\.", rf".lora_\1.{VAE_ADAPTER_NAME}.", key)
    if key in model_keys:
        return key
    head, _, leaf = key.rpartition(".")
    if f"{head}.base_layer.{leaf}" in model_keys:
        return f"{head}.base_layer.{leaf}"
    plain = key.replace(".base_layer.", ".")
    return plain if plain in model_keys else None


def _is_skip_conv_weight(key: str) -> bool:
    return ".skip_conv_" in key and "lora" not in key


def _load_vae_file_state(
    model: DifixModel,
    state: Mapping[str, torch.Tensor],
    source: str,
    allow_fresh_adapters: bool,
    warn_fresh: bool = False,
) -> None:
    """Load a VAE weights file (``source``: its path, for messages).

    LoRA or skip weights absent from it keep their fresh init (LoRA B = 0, skip convs 1e-5)
    when ``allow_fresh_adapters``: a plain SD-Turbo VAE has neither.  A file with LoRA weights
    but no skip convolutions is a Difix VAE that lost part of itself: an error.  ``warn_fresh``:
    a file with neither gives a ``FreshDifixPartsWarning`` naming it (the skip path then adds
    almost nothing: the model is not the released Difix).
    """
    model_state = model.vae.state_dict()
    model_keys = set(model_state)
    mapped: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in state.items():
        target = _normalise_vae_key(key, model_keys)
        if target is None:
            unexpected.append(key)
        else:
            mapped[target] = value
    missing = sorted(model_keys - set(mapped))
    has_lora = any("lora" in k for k in mapped)
    # skip-convolution weights proper: LoRA keys hold "skip" too (the adapter is "vae_skip")
    has_skip = any(_is_skip_conv_weight(k) for k in mapped)
    if has_lora and not has_skip:
        raise CheckpointError(
            f"{source} holds Difix VAE LoRA weights but no skip-convolution weights (decoder.skip_conv_*): "
            "an incomplete Difix VAE file; get the folder again"
        )
    if warn_fresh and not has_lora and not has_skip:
        message = (
            f"{source} has no Difix LoRA or skip-convolution weights (a plain SD-Turbo VAE): they start "
            f"fresh (LoRA B = 0, skip convolutions {SKIP_CONV_INIT_VALUE:g}), which is not a trained Difix"
        )
        warnings.warn(message, FreshDifixPartsWarning, stacklevel=3)
        LOG.warning(message)
    fresh_ok = [
        k
        for k in missing
        if allow_fresh_adapters and (("lora" in k and not has_lora) or (_is_skip_conv_weight(k) and not has_skip))
    ]
    missing = [k for k in missing if k not in fresh_ok]
    if unexpected or missing:
        raise CheckpointError(
            f"VAE weights of {source} do not fit: unexpected {unexpected[:3]} ({len(unexpected)}), "
            f"missing {missing[:3]} ({len(missing)})"
        )
    _load_partial(model.vae, mapped, f" in {source}")


def model_from_pretrained_dir(
    source: str, hub_cache_dir: str | None = None, config: DifixConfig | None = None
) -> DifixModel:
    """A Difix model from a ``nvidia/difix_ref``-style folder or Hub id.

    A plain SD-Turbo folder also works: its VAE has no LoRA / skip weights, which then get
    the official fresh initialisation (LoRA B = 0, skip convs 1e-5).
    """
    components = load_base_components(source, hub_cache_dir)
    root = resolve_pretrained_dir(source, hub_cache_dir)
    if config is None:
        saved = root / "hi4dfix_config.json"
        config = (
            DifixConfig.from_dict(json.loads(saved.read_text())) if saved.is_file() else DifixConfig(preset="sd-turbo")
        )
    if hub_cache_dir is not None:
        config.hub_cache_dir = hub_cache_dir
    modules, rank = _vae_adapters_in(components.vae_state)
    targets = None
    if modules:
        # Keep the official order: the decoder modules in registration order.
        probe = AutoencoderKL.from_config(components.vae.config)
        attach_skip_convs(probe)
        order = {name: i for i, name in enumerate(official_vae_lora_targets(probe))}
        targets = sorted(modules, key=lambda m: order.get(m, len(order)))
        config.lora_rank_vae = int(rank)
    model = _difix_from_components(config, components, config.lora_rank_vae, targets, warn_fresh=True)
    model.set_eval()
    return model


def _difix_from_components(
    config: DifixConfig,
    components: BaseComponents,
    rank: int,
    targets: list[str] | None,
    warn_fresh: bool = False,
) -> DifixModel:
    """DiFix assembled from a folder's plain components (``config.architecture`` set from them),
    with the folder's VAE weights; VAE adapters the folder lacks keep their fresh initialisation."""
    config.architecture = components.architecture
    model = assemble_difix(
        config,
        components.unet,
        components.vae,
        components.text_encoder,
        components.tokenizer,
        rank=rank,
        target_modules=targets,
    )
    _load_vae_file_state(
        model, components.vae_state, source=str(components.vae_file), allow_fresh_adapters=True, warn_fresh=warn_fresh
    )
    return model


def save_pretrained_dir(model: DifixModel, out_dir: str | os.PathLike) -> Path:
    """Write the folder layout of ``nvidia/difix_ref`` (atomically: whole folder or nothing)."""
    import diffusers

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model_index = {
            "_class_name": "DifixPipeline",
            "_diffusers_version": diffusers.__version__,
            "feature_extractor": [None, None],
            "image_encoder": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "DDPMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }
        (tmp / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n")
        config = model.difix_config.to_dict()
        (tmp / "hi4dfix_config.json").write_text(json.dumps(config, indent=2) + "\n")
        model.unet.save_pretrained(tmp / "unet")
        (tmp / "vae").mkdir()
        model.vae.save_config(tmp / "vae")
        vae_state = {k: v.detach().cpu().contiguous() for k, v in model.vae.state_dict().items()}
        save_file(vae_state, str(tmp / "vae" / VAE_WEIGHTS))
        model.text_encoder.save_pretrained(tmp / "text_encoder")
        if model.tokenizer is None:
            raise CheckpointError("cannot save a model without a tokenizer")
        model.tokenizer.save_pretrained(tmp / "tokenizer")
        model.scheduler.save_config(tmp / "scheduler")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


# ----------------------------------------------------------------------------- one entry point


def load_model(
    spec: str | os.PathLike,
    hub_cache_dir: str | None = None,
    base_model_id: str | None = None,
    strict: bool = True,
    init_seed: int = 0,
) -> DifixModel:
    """A Difix model from a pkl, a folder, a Hub id, or ``tiny-random`` (fresh tiny weights)."""
    spec = str(spec)
    if spec == RANDOM_TINY_SPEC:
        return build_random_difix(DifixConfig(preset="tiny", init_seed=init_seed))
    path = Path(spec)
    if path.suffix == ".pkl" or path.is_file():
        payload = read_checkpoint(path)
        return model_from_checkpoint(
            payload, source=spec, base_model_id=base_model_id, hub_cache_dir=hub_cache_dir, strict=strict
        )
    return model_from_pretrained_dir(spec, hub_cache_dir=hub_cache_dir)
