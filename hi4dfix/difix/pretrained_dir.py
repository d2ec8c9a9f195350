"""DiFix as a folder of the ``nvidia/difix_ref`` Hub layout, or as a Hub id.

``model_index.json`` and the subfolders ``scheduler``, ``text_encoder``, ``tokenizer``, ``unet``,
``vae``; the VAE weights file holds the base, LoRA and skip weights together. A plain SD-Turbo
folder also loads (its VAE adapters start fresh); the official pkl format
(``hi4dfix.difix.official_pkl``) takes its base components from here.
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

from hi4dfix.difix.checkpoint_base import CheckpointError, FreshDifixPartsWarning, load_partial
from hi4dfix.difix.config import SKIP_CONV_INIT_VALUE, VAE_ADAPTER_NAME, ArchitectureConfig, DifixConfig
from hi4dfix.difix.model import DifixModel, assemble_difix, attach_skip_convs, official_vae_lora_targets

LOG = logging.getLogger(__name__)


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
    load_partial(model.vae, mapped, f" in {source}")


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
    model = difix_from_components(config, components, config.lora_rank_vae, targets, warn_fresh=True)
    model.set_eval()
    return model


def difix_from_components(
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
