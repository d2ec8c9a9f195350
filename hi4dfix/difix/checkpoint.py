"""Difix checkpoints: the official ``model_*.pkl`` layout, diffusers-style folders, Hub ids.

Official pkl keys (``save_ckpt`` in the released training code): ``vae_lora_target_modules``,
``rank_vae``, ``state_dict_unet`` (all UNet weights), ``state_dict_vae`` (VAE weights whose
name contains ``lora`` or ``skip``) and ``optimizer`` (the resumable checkpoints of a tuning run
hold its AdamW state; its final model and exported models hold an empty one).  We add:

* ``hi4dfix_config``: the ``DifixConfig`` (preset and architecture) so that a tiny model can
  be rebuilt from the pkl alone; official pkls lack it and are treated as ``sd-turbo``;
* ``hi4dfix_base_state`` (tiny preset only): the frozen weights that an official pkl does
  not carry because they come from SD-Turbo (VAE base layers, text encoder);
* ``hi4dfix_train_state``: step, RNG states and training settings (resume).

Folders follow the ``nvidia/difix_ref`` Hub layout: ``model_index.json`` and the
subfolders ``scheduler``, ``text_encoder``, ``tokenizer``, ``unet``, ``vae``; the VAE
weights file holds the base, LoRA and skip weights together.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel, CLIPTokenizer

from hi4dfix.difix.config import VAE_ADAPTER_NAME, ArchitectureConfig, DifixConfig
from hi4dfix.difix.model import (
    DifixModel,
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
CONFIG_KEY = "hi4dfix_config"
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


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the architecture."""


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
    """Load a pkl (tensors, lists and numbers only: ``weights_only``) and check its keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, wrong format
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} is not a dict")
    missing = [k for k in OFFICIAL_MODEL_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the Difix keys {missing}")
    return payload


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


def apply_official_state(model: DifixModel, payload: Mapping[str, Any], strict: bool = True, source: str = "") -> None:
    """Load ``state_dict_unet`` / ``state_dict_vae`` into a model built with the pkl's LoRA.

    Unexpected keys are always an error; missing keys are an error when ``strict`` (the
    released loader keeps the base value of keys absent from the pkl: ``strict=False``).
    """
    where = f" in {source}" if source else ""
    unet_state = payload["state_dict_unet"]
    vae_state = payload["state_dict_vae"]
    unet_expected = set(model.unet.state_dict())
    vae_expected = {k for k in model.vae.state_dict() if "lora" in k or "skip" in k}
    problems = []
    for name, given, expected in (("state_dict_unet", unet_state, unet_expected), ("state_dict_vae", vae_state, vae_expected)):
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
        _load_vae_file_state(model, components.vae_state, source=config.base_model_id, allow_fresh_adapters=True)
    apply_official_state(model, payload, strict=strict, source=source)
    model.set_eval()
    return model


def _load_exact(module: torch.nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    result = module.load_state_dict(dict(state), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{where}: missing {result.missing_keys[:3]} unexpected {result.unexpected_keys[:3]}"
        )


# ----------------------------------------------------------------------------- folders and the Hub


class BaseComponents:
    """Plain (not yet Difix-modified) components read from a folder or Hub id."""

    def __init__(self, unet, vae, vae_state, text_encoder, tokenizer, architecture: ArchitectureConfig):
        self.unet = unet
        self.vae = vae
        self.vae_state = vae_state
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.architecture = architecture


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
    return BaseComponents(unet, vae, vae_state, text_encoder, tokenizer, architecture)


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


def _load_vae_file_state(
    model: DifixModel, state: Mapping[str, torch.Tensor], source: str, allow_fresh_adapters: bool
) -> None:
    """Load a VAE weights file; LoRA or skip weights absent from it keep their fresh init."""
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
    has_skip = any("skip" in k for k in mapped)
    fresh_ok = [k for k in missing if allow_fresh_adapters and (("lora" in k and not has_lora) or ("skip" in k and not has_skip))]
    missing = [k for k in missing if k not in fresh_ok]
    if unexpected or missing:
        raise CheckpointError(
            f"VAE weights of {source} do not fit: unexpected {unexpected[:3]} ({len(unexpected)}), "
            f"missing {missing[:3]} ({len(missing)})"
        )
    _load_partial(model.vae, mapped, f" in {source}/vae")


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
        config = DifixConfig.from_dict(json.loads(saved.read_text())) if saved.is_file() else DifixConfig(preset="sd-turbo")
    config.architecture = components.architecture
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
    model = assemble_difix(
        config,
        components.unet,
        components.vae,
        components.text_encoder,
        components.tokenizer,
        rank=config.lora_rank_vae,
        target_modules=targets,
    )
    _load_vae_file_state(model, components.vae_state, source=str(source), allow_fresh_adapters=True)
    model.set_eval()
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
        return model_from_checkpoint(payload, source=spec, base_model_id=base_model_id, hub_cache_dir=hub_cache_dir, strict=strict)
    return model_from_pretrained_dir(spec, hub_cache_dir=hub_cache_dir)
