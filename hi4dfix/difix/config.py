"""Typed configuration of the DiFix model and its two presets.

Both presets use the same module classes and the same code path; they differ only in the
architecture dictionaries below.  The ``sd-turbo`` dictionaries hold the numbers of the
public ``stabilityai/sd-turbo`` ``config.json`` files (SD 2.1 architecture).  They are
written here because the Hub is not reachable from every machine that has to build the
architecture (key checks on the meta device, the benchmark with random weights); when
real weights are loaded, the configs that come with the weights are used instead.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

PRESETS = ("tiny", "sd-turbo")
# The pkl key holding a DifixConfig (preset, architecture); official Difix pkls have none (sd-turbo).
CONFIG_KEY = "hi4dfix_config"
LATENT_SAMPLING_MODES = ("sample", "mode")

# Name of the PEFT adapter that holds the VAE LoRA weights (part of the official key names).
VAE_ADAPTER_NAME = "vae_skip"

# PEFT adapter of an optional UNet LoRA (tuning.unet: lora). "default" is the name PEFT's
# ``add_adapter`` gives when none is passed, as img2img-turbo's pix2pix_turbo loader does, so its
# keys (``...lora_A.default.weight``) load there too.
UNET_ADAPTER_NAME = "default"

# UNet modules that get LoRA (name suffixes, PEFT's matching): img2img-turbo's pix2pix_turbo list,
# the code Difix grew from: attention projections, feed-forward, resnet and sampler convolutions.
UNET_LORA_TARGETS = (
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
    "proj_in", "proj_out", "ff.net.2", "ff.net.0.proj",
)  # fmt: skip

# The official recipe puts LoRA on every *decoder* module whose name ends with one of these.
OFFICIAL_VAE_LORA_SUFFIXES = (
    "conv1",
    "conv2",
    "conv_in",
    "conv_shortcut",
    "conv",
    "conv_out",
    "skip_conv_1",
    "skip_conv_2",
    "skip_conv_3",
    "skip_conv_4",
    "to_k",
    "to_q",
    "to_v",
    "to_out.0",
)

# Skip convolutions start near zero so that a fresh model behaves like the plain VAE.
SKIP_CONV_INIT_VALUE = 1e-5

SD_TURBO_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
    "upcast_attention": None,
    "use_linear_projection": True,
}

SD_TURBO_VAE_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 768,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

SD_TURBO_TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 4096,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "pad_token_id": 1,
    "projection_dim": 512,
    "vocab_size": 49408,
}

# SD-Turbo's scheduler_config.json; Difix reads it into a DDPMScheduler (``make_1step_sched``).
SD_TURBO_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "trailing",
    "trained_betas": None,
}

# Tiny preset: same classes, small widths.  The VAE keeps four blocks so that its
# downsampling factor stays 8 as in SD; the UNet has one downsampling step.
TINY_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 4,
    "block_out_channels": [32, 64],
    "cross_attention_dim": 32,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "in_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "out_channels": 4,
    "sample_size": 16,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": True,
}

# The same VAE with small widths: 4 blocks, so the downsampling factor stays 8 as in SD.
TINY_VAE_CONFIG: dict[str, Any] = {
    **SD_TURBO_VAE_CONFIG,
    "block_out_channels": [16, 32, 64, 64],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 128,
}

TINY_TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 1,
    "hidden_act": "gelu",
    "hidden_size": 32,
    "initializer_range": 0.02,
    "intermediate_size": 64,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "pad_token_id": 1,
    "projection_dim": 32,
    "vocab_size": 1000,
}

TOKENIZER_MAX_LENGTH = 77


@dataclass(frozen=True)
class ArchitectureConfig:
    """Constructor arguments of every component (JSON-compatible, stored in checkpoints)."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    scheduler: dict[str, Any]
    tokenizer_max_length: int = TOKENIZER_MAX_LENGTH

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ArchitectureConfig":
        missing = {"unet", "vae", "text_encoder", "scheduler"} - set(data)
        if missing:
            raise ValueError(f"architecture config lacks {sorted(missing)}")
        return cls(
            unet=dict(data["unet"]),
            vae=dict(data["vae"]),
            text_encoder=dict(data["text_encoder"]),
            scheduler=dict(data["scheduler"]),
            tokenizer_max_length=int(data.get("tokenizer_max_length", TOKENIZER_MAX_LENGTH)),
        )


def preset_architecture(preset: str) -> ArchitectureConfig:
    """The architecture of a preset, as fresh copies that callers may modify."""
    if preset == "sd-turbo":
        parts = (SD_TURBO_UNET_CONFIG, SD_TURBO_VAE_CONFIG, SD_TURBO_TEXT_ENCODER_CONFIG)
    elif preset == "tiny":
        parts = (TINY_UNET_CONFIG, TINY_VAE_CONFIG, TINY_TEXT_ENCODER_CONFIG)
    else:
        raise ValueError(f"DifixConfig.preset must be one of {PRESETS}, got {preset!r}")
    unet, vae, text = (copy.deepcopy(p) for p in parts)
    return ArchitectureConfig(unet=unet, vae=vae, text_encoder=text, scheduler=copy.deepcopy(SD_TURBO_SCHEDULER_CONFIG))


@dataclass
class DifixConfig:
    """What a Difix model is, independent of where its weights come from.

    preset: ``tiny`` (small random-init widths, CPU and tests) or ``sd-turbo`` (full size).
    timestep: the single diffusion timestep used in training and inference (199 as released).
    lora_rank_vae: LoRA rank on the VAE decoder (official default 4).
    skip_gamma: scale of the encoder activations fed through the skip convolutions.
    prompt: the text condition.
    latent_sampling: ``sample`` draws from the VAE posterior as the official code does;
        ``mode`` takes its mean.  None: ``sample`` for sd-turbo, ``mode`` for tiny (its small
        VAE is trained as a deterministic autoencoder, see ``pretrain``).
    base_model_id: where sd-turbo base weights come from (Hub id or local directory).
    hub_cache_dir: Hugging Face cache directory (None: the library default).
    init_seed: seed of the random initialisation (tiny preset, fresh LoRA / skip weights).
    """

    preset: str = "tiny"
    timestep: int = 199
    lora_rank_vae: int = 4
    skip_gamma: float = 1.0
    prompt: str = "remove degradation"
    latent_sampling: str | None = None
    base_model_id: str = "stabilityai/sd-turbo"
    hub_cache_dir: str | None = None
    init_seed: int = 0
    architecture: ArchitectureConfig | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"DifixConfig.preset must be one of {PRESETS}, got {self.preset!r}")
        if self.latent_sampling is None:
            self.latent_sampling = "mode" if self.preset == "tiny" else "sample"
        if self.latent_sampling not in LATENT_SAMPLING_MODES:
            raise ValueError(
                f"DifixConfig.latent_sampling must be one of {LATENT_SAMPLING_MODES}, got {self.latent_sampling!r}"
            )
        if self.lora_rank_vae < 1:
            raise ValueError(f"DifixConfig.lora_rank_vae must be >= 1, got {self.lora_rank_vae}")
        if isinstance(self.architecture, dict):
            self.architecture = ArchitectureConfig.from_dict(self.architecture)
        if self.architecture is None:
            self.architecture = preset_architecture(self.preset)
        steps = int(self.architecture.scheduler.get("num_train_timesteps", 1000))
        if not 0 <= self.timestep < steps:
            raise ValueError(f"DifixConfig.timestep must be in [0, {steps}), got {self.timestep}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form, stored as ``hi4dfix_config`` in checkpoints."""
        data = {k: v for k, v in asdict(self).items() if k != "architecture"}
        data["architecture"] = self.architecture.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DifixConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown DifixConfig fields {sorted(unknown)}")
        return cls(**data)
