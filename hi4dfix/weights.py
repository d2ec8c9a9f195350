"""Pretrained weights a study config needs, where they are cached, and fetching them.

Compute nodes often have no internet: ``hi4dfix fetch-weights`` (run where the internet is) puts
every item of :func:`wanted_weights` into the caches the jobs read, and the workflow refuses to
start when an item of :func:`required_weights` is missing (:func:`missing_weights_message`).

* a DiFix base given as a Hub id (``difix.base: nvidia/difix_ref``): a pipeline folder in the
  Hugging Face cache (``difix.hub_cache_dir``, else the library's default);
* SD-Turbo (``stabilityai/sd-turbo``) for ``difix.preset: sd-turbo``: pkls in Difix's layout hold
  the UNet and the VAE's LoRA and skip weights only and are rebuilt on the SD-Turbo base;
* an extra arm's weights (``difix.extra_arms``, :mod:`hi4dfix.extra_arms`): a DiFix Hub id's pipeline
  folder, or the TorchScript file of a Hub repository (nv-tlabs/Fixer's ``nvidia/Fixer``) in the same cache;
* torchvision's ImageNet VGG16 (LPIPS with ``lpips_net: vgg`` and the Gram loss of tuning) and
  AlexNet (the LPIPS metric; LPIPS loss with ``lpips_net: alex``) in the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``).

Presence is checked offline and cheaply (file tests, ``huggingface_hub.try_to_load_from_cache``);
downloads are the libraries' own (``huggingface_hub.snapshot_download``,
``torch.hub.download_url_to_file``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from hi4dfix.difix.config import CONFIG_KEY, DifixConfig

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
LOCAL_SPECS = ("pretrain", "tiny-random")
# Files of a diffusers pipeline folder that loading needs (hi4dfix.difix.pretrained_dir.HUB_ALLOW_PATTERNS
# says what is downloaded; hi4dfix_config.json there is optional).
HUB_REQUIRED_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)
FETCH_COMMAND = "hi4dfix fetch-weights"


@dataclass(frozen=True)
class WeightItem:
    """One thing to fetch: a Hub repository (``kind='hub'``) or a file at a URL (``kind='url'``)."""

    name: str
    kind: str
    source: str  # Hub repository id, or URL
    destination: Path  # the Hub cache folder, or the file torchvision reads
    needed_by: tuple[str, ...]  # config keys that need it
    files: tuple[str, ...] = ()  # a Hub item's files (an extra arm's TorchScript file); none: a DiFix pipeline folder

    def describe(self) -> str:
        return f"{self.name} ({self.source}), needed by {', '.join(self.needed_by)}"


# ---- what a config needs -----------------------------------------------------------------------


def is_hub_id(spec: str | None) -> bool:
    """A DiFix source that would be fetched from the Hub: not a local file, folder or keyword."""
    if not spec or spec in LOCAL_SPECS or spec.endswith(".pkl") or Path(spec).exists():
        return False
    return HUB_ID.fullmatch(spec) is not None


def hub_cache_dir(config: Mapping[str, Any]) -> Path:
    from huggingface_hub import constants

    configured = config.get("difix", {}).get("hub_cache_dir")
    return Path(configured) if configured else Path(constants.HF_HUB_CACHE)


def torch_hub_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def sd_turbo_source(base: str) -> str:
    """Where sd-turbo pkls get their base weights: a local base folder's saved DifixConfig, else
    the default (official pkls and the Hub's nvidia/difix_ref carry no setting of their own)."""
    saved = Path(base) / "hi4dfix_config.json"
    if Path(base).is_dir() and saved.is_file():
        import json

        return DifixConfig.from_dict(json.loads(saved.read_text())).base_model_id
    return DifixConfig(preset="sd-turbo").base_model_id


def _tuning_weight(tuning: Mapping[str, Any], key: str, preset: str) -> float:
    value = tuning.get(key)
    if value is None:  # left to the trainer's preset default
        from hi4dfix.difix.train_config import PRESET_DEFAULTS

        value = PRESET_DEFAULTS[preset].get(key, 0.0)
    return float(value)


def _backbone_item(net: str, needed_by: str) -> WeightItem:
    from hi4dfix.difix.losses import BACKBONE_URLS

    url = BACKBONE_URLS[net]
    name = {"vgg": "VGG16 (ImageNet, torchvision)", "alex": "AlexNet (ImageNet, torchvision)"}[net]
    return WeightItem(name, "url", url, torch_hub_checkpoints() / url.rsplit("/", 1)[-1], (needed_by,))


def _hub_item(name: str, repo: str, config: Mapping[str, Any], needed_by: str) -> WeightItem:
    return WeightItem(name, "hub", repo, hub_cache_dir(config), (needed_by,))


def _merged(items: list[WeightItem]) -> list[WeightItem]:
    """One item per source (and files), listing every key that needs it."""
    by_source: dict[tuple[str, tuple[str, ...]], WeightItem] = {}
    for item in items:
        key = (item.source, item.files)
        known = by_source.get(key)
        if known is None:
            by_source[key] = item
        elif not set(item.needed_by) <= set(known.needed_by):
            by_source[key] = replace(known, needed_by=known.needed_by + item.needed_by)
    return list(by_source.values())


def extra_arm_items(config: Mapping[str, Any]) -> list[WeightItem]:
    """The Hub weights of the extra arms (``difix.extra_arms``): a DiFix Hub id's folder, a TorchScript file
    of a ``repo``; local files are the arms' own (checked at DAG build by :mod:`hi4dfix.extra_arms`)."""
    from hi4dfix.extra_arms import DifixArm, extra_arms, is_hub_model

    items = []
    for arm in extra_arms(config.get("difix", {})).values():
        if isinstance(arm, DifixArm) and arm.model.endswith(".pkl"):
            found = saved_preset(arm.model, config.get("difix", {}).get("hub_cache_dir"))
            if found is None or found[0] == "sd-turbo":  # an official pkl holds the UNet and adapters only
                source = DifixConfig(preset="sd-turbo").base_model_id
                items.append(_hub_item("SD-Turbo base", source, config, f"{arm.setting}.model (pkls rebuild on it)"))
        if not is_hub_model(arm):
            continue
        if isinstance(arm, DifixArm):
            items.append(_hub_item(f"DiFix of arm {arm.name}", arm.model, config, f"{arm.setting}.model"))
        else:
            items.append(WeightItem(f"TorchScript fixer of arm {arm.name}", "hub", arm.repo, hub_cache_dir(config),
                                    (f"{arm.setting}.file",), (arm.file,)))  # fmt: skip
    return items


def required_weights(config: Mapping[str, Any]) -> list[WeightItem]:
    """Weights without which a job of this config fails (the workflow checks them at DAG build)."""
    difix = config.get("difix", {})
    base, preset = difix.get("base", "pretrain"), difix.get("preset", "tiny")
    items = []
    if is_hub_id(base):
        items.append(_hub_item("DiFix base", base, config, "difix.base"))
    if preset == "sd-turbo":
        source = sd_turbo_source(base)
        if is_hub_id(source):
            items.append(_hub_item("SD-Turbo base", source, config, "difix.preset: sd-turbo (pkls rebuild on it)"))
    model_preset = "tiny" if base in LOCAL_SPECS else preset
    for name, version in sorted(config.get("versions", {}).items()):
        tuning = version.get("tuning", {}) or {}
        if _tuning_weight(tuning, "lambda_gram", model_preset) > 0:
            items.append(_backbone_item("vgg", f"versions.{name}.tuning.lambda_gram"))
        if _tuning_weight(tuning, "lambda_lpips", model_preset) > 0:
            items.append(_backbone_item(tuning.get("lpips_net") or "vgg", f"versions.{name}.tuning.lambda_lpips"))
    if config.get("metrics", {}).get("require_lpips"):
        items.append(_backbone_item("alex", "metrics.require_lpips"))
    return _merged(items + extra_arm_items(config))


def wanted_weights(config: Mapping[str, Any]) -> list[WeightItem]:
    """Everything ``fetch-weights`` gets: the required weights and AlexNet for the LPIPS metric
    (without it the metric is reported as NaN rather than failing)."""
    return _merged([*required_weights(config), _backbone_item("alex", "metrics (LPIPS)")])


def saved_preset(spec: str, hub_cache_dir: str | None = None) -> tuple[str, str] | None:
    """The preset of the DiFix model at ``spec`` and what says so, read offline and cheaply (a
    pkl's config key through a memory map, a folder's hi4dfix_config.json); None when it cannot
    be known without downloading (a Hub id not in the cache)."""
    if spec in LOCAL_SPECS:
        return "tiny", f"{spec} builds a tiny model"
    path = Path(spec)
    if path.is_file():
        import torch

        try:
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # not a zip archive (no memory map), or not a checkpoint: the loader says which
            return None
        saved = payload.get(CONFIG_KEY) if isinstance(payload, dict) else None
        if saved is None:
            return "sd-turbo", f"{spec} has no {CONFIG_KEY!r}: an official Difix pkl, rebuilt on SD-Turbo"
        return str(saved.get("preset", "sd-turbo")), f"its {CONFIG_KEY!r} says so"
    if path.is_dir():
        folder_config = path / "hi4dfix_config.json"
    elif is_hub_id(spec):
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(spec, "hi4dfix_config.json", cache_dir=hub_cache_dir)
        if not isinstance(found, str):
            index = try_to_load_from_cache(spec, "model_index.json", cache_dir=hub_cache_dir)
            return ("sd-turbo", f"the cached {spec} is a full-size pipeline folder") if isinstance(index, str) else None
        folder_config = Path(found)
    else:
        return None
    if not folder_config.is_file():
        return "sd-turbo", f"{spec} is a pipeline folder without hi4dfix_config.json (an official one)"
    import json

    return str(json.loads(folder_config.read_text()).get("preset", "sd-turbo")), f"{folder_config} says so"


def preset_mismatch_message(config: Mapping[str, Any]) -> str | None:
    """None when ``difix.base`` holds a model of ``difix.preset`` (or cannot be read offline); else an
    error naming both presets and the file, before a job would load it (an official pkl read as a
    tiny model would otherwise send its loader to the Hub for SD-Turbo)."""
    difix = config.get("difix", {})
    base, preset = difix.get("base", "pretrain"), difix.get("preset", "tiny")
    found = saved_preset(base, difix.get("hub_cache_dir"))
    if found is None or found[0] == preset:
        return None
    saved, why = found
    return (
        f"difix.preset is {preset!r}, but difix.base ({base}) holds a {saved!r} model ({why}). "
        f"Set difix.preset: {saved}, or point difix.base at a {preset} model."
    )


# ---- presence, size, fetching --------------------------------------------------------------------


def is_present(item: WeightItem) -> bool:
    """Offline: is the item where the jobs will look for it?"""
    if item.kind == "url":
        return item.destination.is_file()
    from huggingface_hub import try_to_load_from_cache

    for filename in item.files or HUB_REQUIRED_FILES:
        found = try_to_load_from_cache(item.source, filename, cache_dir=item.destination)
        if not isinstance(found, str) or not Path(found).is_file():
            return False
    return True


def local_size(item: WeightItem) -> int | None:
    """Bytes on disk of a present item."""
    if item.kind == "url":
        return item.destination.stat().st_size if item.destination.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    total = 0
    for filename in item.files or HUB_REQUIRED_FILES:
        found = try_to_load_from_cache(item.source, filename, cache_dir=item.destination)
        if not isinstance(found, str):
            return None
        total += Path(found).stat().st_size
    return total


def remote_size(item: WeightItem) -> int | None:
    """Bytes to download, from the Hub's metadata or an HTTP HEAD; None when it cannot be asked."""
    try:
        return hub_repo_size(item.source, item.files) if item.kind == "hub" else url_size(item.source)
    except Exception:  # offline, unreachable, unknown repository: the size stays unknown
        return None


def hub_repo_size(repo: str, files: tuple[str, ...] = ()) -> int | None:
    """Sum of the sizes of the files ``snapshot_download`` would fetch, or of ``files`` (the Hub's metadata)."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import filter_repo_objects

    from hi4dfix.difix.pretrained_dir import HUB_ALLOW_PATTERNS

    if constants.HF_HUB_OFFLINE:
        return None
    info = HfApi().model_info(repo, files_metadata=True, timeout=10)
    patterns = list(files) or HUB_ALLOW_PATTERNS
    chosen = filter_repo_objects(info.siblings or [], allow_patterns=patterns, key=lambda s: s.rfilename)
    sizes = [sibling.size for sibling in chosen]
    return None if not sizes or any(size is None for size in sizes) else sum(sizes)


def url_size(url: str) -> int | None:
    """Content-Length of an HTTP HEAD request."""
    from urllib.request import Request, urlopen

    with urlopen(Request(url, method="HEAD"), timeout=10) as response:
        length = response.headers.get("Content-Length")
    return int(length) if length else None


def fetch(item: WeightItem) -> Path:
    """Download ``item`` into its cache (the libraries skip what is already there)."""
    if item.kind == "hub" and item.files:
        from huggingface_hub import hf_hub_download

        paths = [hf_hub_download(item.source, name, cache_dir=str(item.destination)) for name in item.files]
        return Path(paths[0])
    if item.kind == "hub":
        return download_hub_snapshot(item.source, item.destination)
    download_url(item.source, item.destination)
    return item.destination


def download_hub_snapshot(repo: str, cache_dir: Path) -> Path:
    """``snapshot_download`` with the files the loaders read (the call they make themselves)."""
    from huggingface_hub import snapshot_download

    from hi4dfix.difix.pretrained_dir import HUB_ALLOW_PATTERNS

    return Path(snapshot_download(repo, cache_dir=str(cache_dir), allow_patterns=HUB_ALLOW_PATTERNS))


def download_url(url: str, destination: Path) -> None:
    """torch.hub's download, checking the hash prefix torchvision puts in its file names."""
    import torch.hub

    destination.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(destination.name)
    torch.hub.download_url_to_file(url, str(destination), hash_prefix=match.group(1) if match else None)


def format_size(size: int | None) -> str:
    if size is None:
        return "unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def missing_weights_message(config: Mapping[str, Any]) -> str | None:
    """None when every required weight is cached; else what is missing, where it is looked for,
    and the command that fetches it (for the error at DAG build)."""
    missing = [item for item in required_weights(config) if not is_present(item)]
    if not missing:
        return None
    lines = [f"- {item.describe()}: not in {item.destination}" for item in missing]
    return (
        "pretrained weights this config needs are not cached (compute nodes may have no internet):\n"
        + "\n".join(lines)
        + f"\nRun `{FETCH_COMMAND}` (with the same --configfile options) where the internet is, "
        "with the same HF/TORCH_HOME environment as the jobs (set TORCH_HOME / difix.hub_cache_dir "
        "to shared storage on a cluster)."
    )
