"""The settings of a DiFix tuning run (``TrainConfig``), each declaring how it bears on resumption.

A field's metadata (:func:`decides_weights`, :func:`by_content`, :func:`may_change`) says whether
its value decides the weights, and so is part of the resume fingerprint (``RESUME_FINGERPRINT``,
``hi4dfix.difix.runs``), names data or a model that the fingerprint holds by content, or may change
between a run and its resumption (logging, checkpointing, speed and memory: compile,
channels_last, gradient_checkpointing, tf32..., e.g. gradient checkpointing after an
out-of-memory kill).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hi4dfix.config_cli import option_help
from hi4dfix.difix.data import PRESET_LONG_SIDE, parse_resolution
from hi4dfix.difix.model import TrainableParts
from hi4dfix.difix.trackers import tracker_problem

MIXED_PRECISION = ("no", "bf16", "fp16")
LR_SCHEDULES = ("constant", "cosine")
LOSS_REGIONS = ("image", "person")

# Preset-dependent defaults for settings left at None (sd-turbo: Difix's released recipe).
PRESET_DEFAULTS = {
    "tiny": {"lr": 3e-4, "long_side": PRESET_LONG_SIDE["tiny"], "lambda_lpips": 0.0, "lambda_gram": 0.0},
    "sd-turbo": {"lr": 2e-5, "long_side": PRESET_LONG_SIDE["sd-turbo"], "lambda_lpips": 1.0, "lambda_gram": 1.0},
}

# How a field bears on resumption (its metadata key ``RESUME``).
RESUME = "resume"
IN_FINGERPRINT = "fingerprint"  # its value decides the weights: a checkpoint resumes only with the same value
BY_CONTENT = "content"  # names data or a model: the fingerprint holds what it names by content
MAY_CHANGE = "may change"  # leaves the weights alone: may change between a run and its resumption
RESUME_KINDS = (IN_FINGERPRINT, BY_CONTENT, MAY_CHANGE)
# Names in setting_names besides the fields: what the errors name that is no option.
OTHER_SETTING_NAMES = ("num_processes",)


def decides_weights(text: str) -> dict[str, str]:
    """Metadata of a setting that decides the weights (in ``RESUME_FINGERPRINT``), with its help."""
    return {**option_help(text), RESUME: IN_FINGERPRINT}


def by_content(text: str) -> dict[str, str]:
    """Metadata of a setting naming data or a model, fingerprinted by content, with its help."""
    return {**option_help(text), RESUME: BY_CONTENT}


def may_change(text: str) -> dict[str, str]:
    """Metadata of a setting that may change when a run resumes, with its help."""
    return {**option_help(text), RESUME: MAY_CHANGE}


@dataclass
class TrainConfig:
    triplets: str = field(metadata=by_content("triplets JSON (train/test splits)"))
    output: str = field(metadata=may_change("final model pkl, written at the end only"))
    output_dir: str = field(metadata=may_change("checkpoints, logs; a rerun resumes from here"))
    base: str = field(default="tiny-random", metadata=by_content("start model: .pkl, folder, Hub id or tiny-random"))
    steps: int = field(default=200, metadata=decides_weights("optimisation steps in total"))
    lr: float | None = field(default=None, metadata=decides_weights("learning rate (None: 3e-4 tiny, 2e-5 sd-turbo)"))
    batch_size: int = field(default=1, metadata=decides_weights("samples per process and step"))
    resolution: str | None = field(
        default=None,
        metadata=decides_weights(
            "fixed 'N' or 'HxW' instead of long_side, snapped to 16 (squashes frames of another aspect)"
        ),
    )
    long_side: int | None = field(
        default=None,
        metadata=decides_weights(
            "processing size: the longer image side scaled to this, aspect kept, each side snapped to 16 "
            "(None: 160 tiny, 512 sd-turbo)"
        ),
    )
    crop: str | None = field(
        default=None,
        metadata=decides_weights(
            "'N' or 'HxW': train on random windows of this size cut from the images at the processing size "
            "(None: whole images)"
        ),
    )
    timestep: int | None = field(
        default=None, metadata=decides_weights("the one diffusion timestep (None: the base model's, 199 for Difix)")
    )
    mixed_precision: str = field(
        default="no", metadata=decides_weights("no | bf16 | fp16 (fp16 needs a GPU); weights stay fp32")
    )
    max_grad_norm: float = field(default=1.0, metadata=decides_weights("gradient clipping norm (0: off)"))
    lambda_l2: float = field(default=1.0, metadata=decides_weights("L2 loss weight"))
    lambda_lpips: float | None = field(
        default=None, metadata=decides_weights("LPIPS weight (None: 0 tiny, 1 sd-turbo)")
    )
    lambda_gram: float | None = field(
        default=None, metadata=decides_weights("Gram (VGG16) weight (None: 0 tiny, 1 sd-turbo)")
    )
    gram_warmup_steps: int = field(
        default=2000,
        metadata=decides_weights("Gram loss is off until more than this many steps are done (Difix's rule)"),
    )
    lpips_net: str = field(default="vgg", metadata=decides_weights("LPIPS backbone: vgg | alex"))
    seed: int = field(default=0, metadata=decides_weights("seed of data order and noise"))
    use_ref: bool = field(default=True, metadata=decides_weights("feed the reference view as a second view"))
    lr_warmup_steps: int = field(default=0, metadata=decides_weights("linear learning-rate warm-up steps"))
    lr_schedule: str = field(
        default="constant",
        metadata=decides_weights("constant (Difix's recipe) | cosine (decay to 0 at the last step, after the warm-up)"),
    )
    weight_decay: float = field(default=1e-2, metadata=decides_weights("AdamW weight decay"))
    adam_beta1: float = field(default=0.9, metadata=decides_weights("AdamW beta1"))
    adam_beta2: float = field(default=0.999, metadata=decides_weights("AdamW beta2"))
    adam_eps: float = field(default=1e-8, metadata=decides_weights("AdamW epsilon"))
    unet: str = field(
        default="full",
        metadata=decides_weights("what of the UNet trains: full (every weight, as Difix) | lora (a UNet LoRA only)"),
    )
    unet_lora_rank: int = field(default=8, metadata=decides_weights("rank of the UNet LoRA (unet: lora)"))
    vae_skip: str = field(
        default="train",
        metadata=decides_weights(
            "VAE decoder LoRA and skip convolutions: train (as Difix) | frozen (kept as the base's)"
        ),
    )
    loss_region: str = field(
        default="image",
        metadata=decides_weights(
            "pixels the losses see: image (all) | person (the triplet's target_mask / ref_mask, dilated)"
        ),
    )
    loss_mask_dilation: int = field(
        default=4, metadata=decides_weights("person masks grow by this many pixels at the processing size")
    )
    mv_attention: bool = field(
        default=True,
        metadata=decides_weights(
            "UNet self-attention across the views of a sample (the reference view) in training and validation; "
            "False: views denoised independently, as Difix trains without --mv_unet (inference attends across views)"
        ),
    )
    gram_crop: int = field(
        default=400,
        metadata=decides_weights(
            "side of the random square crop the Gram loss sees, clipped to the image (Difix: 400 of 576x1024)"
        ),
    )
    val_every: int = field(
        default=50, metadata=may_change("validate on the test split every N steps (0: only at the end)")
    )
    val_max_items: int = field(default=16, metadata=may_change("test triplets used per validation"))
    ckpt_every: int = field(default=50, metadata=may_change("checkpoint every N steps (0: none)"))
    keep_checkpoints: int = field(default=2, metadata=may_change("newest checkpoints kept (0: all)"))
    num_workers: int = field(default=0, metadata=may_change("data loader worker processes"))
    gradient_checkpointing: bool = field(
        default=False, metadata=may_change("UNet gradient checkpointing (saves GPU memory)")
    )
    compile: bool = field(
        default=False,
        metadata=may_change("torch.compile the model: minutes of compilation at start, faster steps on GPUs"),
    )
    compile_mode: str = field(
        default="reduce-overhead",
        metadata=may_change(
            "torch.compile mode on GPUs: reduce-overhead (CUDA graphs), default, max-autotune-no-cudagraphs..."
        ),
    )
    channels_last: bool | None = field(
        default=None,
        metadata=may_change(
            "channels-last weights and activations with group norms that suit them (hi4dfix.difix.memory_format); "
            "None: on when compiled on a GPU (1.4x faster compiled steps, as close to exact float32 as NCHW)"
        ),
    )
    compile_cache_dir: str | None = field(
        default=None,
        metadata=may_change(
            "study compile cache folder (hi4dfix.difix.compile_cache): compiled graphs are loaded from and "
            "saved to it, the live caches kept node-local (None: no study cache)"
        ),
    )
    cudnn_benchmark: bool = field(
        default=False,
        metadata=may_change("cuDNN autotuning on GPUs (every convolution shape is tried out in the first step)"),
    )
    allow_tf32: bool = field(
        default=True, metadata=may_change("TF32 matmuls and convolutions on Ampere+ GPUs (False: exact float32)")
    )
    hub_cache_dir: str | None = field(default=None, metadata=may_change("Hugging Face cache dir"))
    base_model_id: str | None = field(
        default=None, metadata=by_content("SD-Turbo source for sd-turbo pkls (Hub id or folder)")
    )
    run_per_fingerprint: bool = field(
        default=False,
        metadata=may_change(
            "train in output_dir/<fingerprint[:12]>/: a run whose training data (content), base or settings "
            "differ starts fresh in a folder of its own and earlier folders (with their model.pkl) stay"
        ),
    )
    output_train_log: str | None = field(
        default=None, metadata=may_change("a copy of the run's train_log.csv, written at the end")
    )
    log_with: str = field(
        default="none",
        metadata=may_change(
            "training curves through accelerate's trackers, beside the CSV logs: none | tensorboard | wandb "
            "(offline), under the run folder's trackers/ (hi4dfix.difix.trackers)"
        ),
    )
    setting_names: dict[str, str] | None = field(
        default=None,
        metadata=may_change(
            "how errors name settings: a JSON object {option: config key} (the workflow passes the keys that "
            "set its options); an option it leaves out, or None: the command-line option"
        ),
    )

    def __post_init__(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"TrainConfig.mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}"
            )
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("val_every", "ckpt_every", "keep_checkpoints", "num_workers", "lr_warmup_steps", "val_max_items"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_grad_norm < 0:
            raise ValueError(f"TrainConfig.max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if self.resolution is not None:
            parse_resolution(self.resolution)
        if self.long_side is not None and self.long_side < 16:
            raise ValueError(f"TrainConfig.long_side must be >= 16, got {self.long_side}")
        if self.crop is not None:
            parse_resolution(self.crop)
        TrainableParts(self.unet, self.vae_skip)  # validates both
        if self.unet_lora_rank < 1:
            raise ValueError(f"TrainConfig.unet_lora_rank must be >= 1, got {self.unet_lora_rank}")
        if self.loss_region not in LOSS_REGIONS:
            raise ValueError(f"TrainConfig.loss_region must be one of {LOSS_REGIONS}, got {self.loss_region!r}")
        if self.gram_crop < 16:
            raise ValueError(f"TrainConfig.gram_crop must be >= 16, got {self.gram_crop}")
        if self.loss_mask_dilation < 0:
            raise ValueError(f"TrainConfig.loss_mask_dilation must be >= 0, got {self.loss_mask_dilation}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"TrainConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.setting_names is not None:
            check_setting_names(self.setting_names)
        if (problem := tracker_problem(self.log_with, self.setting_name("log_with"))) is not None:
            raise ValueError(problem)

    def resolved(self, preset: str) -> "TrainConfig":
        """A copy with preset defaults filled in for settings left at None."""
        defaults = PRESET_DEFAULTS[preset]
        updates = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **updates)

    @property
    def trainable_parts(self) -> TrainableParts:
        return TrainableParts(self.unet, self.vae_skip)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the weights (``RESUME_FINGERPRINT``)."""
        return {k: getattr(self, k) for k in RESUME_FINGERPRINT}

    def setting_name(self, option: str) -> str:
        """What a user changes to change ``option``: its config key (``setting_names``) or the option."""
        names = self.setting_names or {}
        if option in names:
            return names[option]
        return f"--{option.replace('_', '-')}"


# The settings that decide the weights, in field order: the fields are ordered as the hand-kept
# list they replace was, so that run records (run.json) keep their bytes.
RESUME_FINGERPRINT = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata[RESUME] == IN_FINGERPRINT)


def check_setting_names(names: Any) -> None:
    """Refuse a ``setting_names`` that is not a mapping of options (or ``OTHER_SETTING_NAMES``) to names."""
    if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
        raise ValueError(f"TrainConfig.setting_names must map options to config keys (strings), got {names!r}")
    known = {f.name for f in dataclasses.fields(TrainConfig)} | set(OTHER_SETTING_NAMES)
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"TrainConfig.setting_names names no option of the trainer: {', '.join(unknown)}")
