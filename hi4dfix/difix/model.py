"""The Difix architecture: SD-Turbo UNet + skip-connected LoRA VAE, one denoising step.

Module layout and state-dict keys follow the released Difix code so that official
``model_*.pkl`` files load unchanged:

* ``vae.decoder.skip_conv_{1..4}``: 1x1 convolutions that feed the encoder's down-block
  inputs (scaled by ``gamma``) into the decoder before each up block.
* LoRA (PEFT adapter ``vae_skip``) on the decoder's conv / attention layers and on the
  skip convolutions (``OFFICIAL_VAE_LORA_SUFFIXES``).
* The reference view is a second view; every UNet self-attention (``attn1``) attends over
  the tokens of all views of a sample (``MultiViewAttnProcessor``).

Instead of patching ``forward`` methods, the skip path is written out in
``encode_with_skips`` / ``decode_with_skips``, which walk the diffusers sub-modules and
pass the activations explicitly; the number of views reaches the attention processors
through ``cross_attention_kwargs``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from peft import LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from hi4dfix.difix.config import (
    OFFICIAL_VAE_LORA_SUFFIXES,
    SKIP_CONV_INIT_VALUE,
    UNET_ADAPTER_NAME,
    UNET_LORA_TARGETS,
    VAE_ADAPTER_NAME,
    ArchitectureConfig,
    DifixConfig,
)

# ----------------------------------------------------------------------------- tokenizer


def _byte_unicode_alphabet() -> list[str]:
    """The 256 printable characters that byte-level BPE uses for the 256 byte values."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def build_tiny_tokenizer(model_max_length: int) -> CLIPTokenizer:
    """A CLIP tokenizer made offline: byte-level alphabet, no merges (every byte is a token)."""
    alphabet = _byte_unicode_alphabet()
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    for ch in alphabet:
        vocab[ch + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


# ----------------------------------------------------------------------------- VAE skips


def skip_conv_channels(vae_block_out_channels: Sequence[int]) -> list[tuple[int, int]]:
    """(in, out) channels of skip_conv_1..n, derived from the VAE widths.

    The encoder records the input of every down block (deepest first once reversed); the
    decoder adds skip i to the input of up block i.  For SD's VAE (128, 256, 512, 512) this
    gives 512<-512, 512<-256, 512<-128, 256<-128.
    """
    widths = list(vae_block_out_channels)
    encoder_inputs = [widths[0]] + widths[:-1]
    reversed_widths = widths[::-1]
    decoder_inputs = [reversed_widths[0]] + reversed_widths[:-1]
    return [(cin, cout) for cin, cout in zip(encoder_inputs[::-1], decoder_inputs)]


def attach_skip_convs(vae: AutoencoderKL, init_value: float = SKIP_CONV_INIT_VALUE) -> None:
    """Register ``decoder.skip_conv_{i}`` (bias-free 1x1 convs) on a plain AutoencoderKL."""
    channels = skip_conv_channels(vae.config.block_out_channels)
    if len(channels) != len(vae.decoder.up_blocks):
        raise ValueError("VAE encoder and decoder have different numbers of blocks")
    ref = vae.decoder.conv_in.weight
    for i, (cin, cout) in enumerate(channels, start=1):
        conv = torch.nn.Conv2d(cin, cout, kernel_size=1, stride=1, bias=False, device=ref.device, dtype=ref.dtype)
        torch.nn.init.constant_(conv.weight, init_value)
        vae.decoder.add_module(f"skip_conv_{i}", conv)


def skip_convs(vae: AutoencoderKL) -> list[torch.nn.Module]:
    n = len(vae.decoder.up_blocks)
    try:
        return [getattr(vae.decoder, f"skip_conv_{i}") for i in range(1, n + 1)]
    except AttributeError as exc:
        raise ValueError("this VAE has no skip convolutions; call attach_skip_convs first") from exc


def official_vae_lora_targets(vae: AutoencoderKL) -> list[str]:
    """Full names of the decoder modules that get LoRA, selected as the official recipe does."""
    return [
        name
        for name, _ in vae.named_modules()
        if "decoder" in name and any(name.endswith(suffix) for suffix in OFFICIAL_VAE_LORA_SUFFIXES)
    ]


def add_vae_lora(vae: AutoencoderKL, target_modules: Sequence[str], rank: int) -> None:
    config = LoraConfig(r=rank, init_lora_weights="gaussian", target_modules=list(target_modules))
    vae.add_adapter(config, adapter_name=VAE_ADAPTER_NAME)


def add_unet_lora(unet: UNet2DConditionModel, rank: int, target_modules: Sequence[str] | None = None) -> list[str]:
    """A LoRA of ``rank`` on the UNet (PEFT adapter ``UNET_ADAPTER_NAME``); returns its target list.

    ``target_modules``: module-name suffixes (default ``UNET_LORA_TARGETS``). B starts at zero, so
    the UNet computes what it did before."""
    if rank < 1:
        raise ValueError(f"UNet LoRA rank must be >= 1, got {rank}")
    if unet_lora_rank(unet) is not None:
        raise ValueError("this UNet already has a LoRA adapter")
    targets = list(target_modules) if target_modules is not None else list(UNET_LORA_TARGETS)
    unet.add_adapter(
        LoraConfig(r=rank, init_lora_weights="gaussian", target_modules=targets), adapter_name=UNET_ADAPTER_NAME
    )
    return targets


def unet_lora_rank(unet: UNet2DConditionModel) -> int | None:
    """The rank of the UNet's LoRA, or None when it has none."""
    config = getattr(unet, "peft_config", {}).get(UNET_ADAPTER_NAME)
    return None if config is None else int(config.r)


UNET_CHOICES = ("full", "lora")
VAE_SKIP_CHOICES = ("train", "frozen")


@dataclass(frozen=True)
class TrainableParts:
    """What a tuning run updates. ``unet``: ``full`` (every UNet weight, as Difix) or ``lora`` (only
    the UNet LoRA's weights; the model must have one: :func:`add_unet_lora`). ``vae_skip``: ``train``
    (the VAE decoder's LoRA and skip convolutions, as Difix) or ``frozen``."""

    unet: str = "full"
    vae_skip: str = "train"

    def __post_init__(self) -> None:
        if self.unet not in UNET_CHOICES:
            raise ValueError(f"tuning.unet must be one of {UNET_CHOICES}, got {self.unet!r}")
        if self.vae_skip not in VAE_SKIP_CHOICES:
            raise ValueError(f"tuning.vae_skip must be one of {VAE_SKIP_CHOICES}, got {self.vae_skip!r}")


def encode_with_skips(vae: AutoencoderKL, x: torch.Tensor) -> tuple[DiagonalGaussianDistribution, list[torch.Tensor]]:
    """VAE encoding that also returns the input of every encoder down block."""
    enc = vae.encoder
    h = enc.conv_in(x)
    skips = []
    for block in enc.down_blocks:
        skips.append(h)
        h = block(h)
    h = enc.mid_block(h)
    h = enc.conv_act(enc.conv_norm_out(h))
    h = enc.conv_out(h)
    if vae.quant_conv is not None:
        h = vae.quant_conv(h)
    return DiagonalGaussianDistribution(h), skips


def decode_with_skips(
    vae: AutoencoderKL, z: torch.Tensor, skips: Sequence[torch.Tensor] | None, gamma: float
) -> torch.Tensor:
    """VAE decoding with the encoder activations added before each up block (None: no skips)."""
    dec = vae.decoder
    if vae.post_quant_conv is not None:
        z = vae.post_quant_conv(z)
    h = dec.conv_in(z)
    h = dec.mid_block(h, None)
    convs = skip_convs(vae) if skips is not None else None
    for i, block in enumerate(dec.up_blocks):
        if convs is not None:
            h = h + convs[i](skips[-1 - i] * gamma)
        h = block(h, None)
    h = dec.conv_act(dec.conv_norm_out(h))
    return dec.conv_out(h)


# ----------------------------------------------------------------------------- multi-view attention


class MultiViewAttnProcessor:
    """Scaled-dot-product attention where self-attention spans all views of a sample.

    Hidden states arrive as ``(batch * views, tokens, dim)`` with the views of one sample
    consecutive; for self-attention they are regrouped to ``(batch, views * tokens, dim)``,
    which is what the released ``mv_unet`` does around ``attn1``.  Cross-attention (text)
    stays per view.  ``num_views`` comes from ``cross_attention_kwargs``.
    """

    def __init__(self) -> None:
        self._sdpa = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        num_views: int = 1,
    ) -> torch.Tensor:
        joint = num_views > 1 and encoder_hidden_states is None and hidden_states.ndim == 3
        if not joint:
            return self._sdpa(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if attention_mask is not None:
            raise ValueError("multi-view self-attention does not support attention masks")
        bv, tokens, dim = hidden_states.shape
        if bv % num_views:
            raise ValueError(f"batch of {bv} token sets is not a multiple of num_views={num_views}")
        grouped = hidden_states.reshape(bv // num_views, num_views * tokens, dim)
        out = self._sdpa(attn, grouped, None, None, temb)
        return out.reshape(bv, tokens, dim)


def enable_multiview_attention(unet: UNet2DConditionModel) -> None:
    unet.set_attn_processor(MultiViewAttnProcessor())


def use_explicit_vae_attention(vae: AutoencoderKL) -> None:
    """Attention as two batched matmuls and a softmax in the VAE's mid blocks.

    Their attention has one head of 512 channels: too wide for the flash kernels, so
    ``scaled_dot_product_attention`` falls back to a generic memory-efficient kernel whose
    backward took ~9 ms a step at 512 px on an H100 (BENCHMARKS.md); the explicit form is
    a few large matmuls.  Same mathematics (softmax in fp32, as the VAE's config asks).
    """
    vae.set_attn_processor(AttnProcessor())


# ----------------------------------------------------------------------------- scheduler


def make_one_step_scheduler(scheduler_config: dict[str, Any], timestep: int) -> DDPMScheduler:
    """DDPMScheduler from SD-Turbo's config with the single timestep ``timestep``.

    The released code calls ``set_timesteps(1)`` and then steps at t=199; older diffusers
    derived the previous timestep as ``t - 1000`` (< 0, so alpha_prev = 1).  Current
    diffusers look ``t`` up in the timestep list, so the list is set to ``[t]``, whose
    previous timestep is also "none" (alpha_prev = 1): the same update, x0 prediction.
    """
    with torch.device("cpu"):  # small tables, also when the model is built under a meta/cuda device context
        scheduler = DDPMScheduler.from_config(scheduler_config)
        scheduler.set_timesteps(timesteps=[int(timestep)])
    return scheduler


@dataclass(frozen=True)
class OneStepUpdate:
    """``DDPMScheduler.step`` at the scheduler's only timestep, as a pure tensor function.

    With a single timestep the previous one is "none" (alpha_prev = 1): the step returns the
    predicted clean latents x0, plus the scheduler's variance noise, whose standard deviation
    is its 1e-20 variance floor (1e-10), below float32 resolution.  Written out, the update has
    no data-dependent timestep lookup, so the forward pass needs no GPU-to-CPU sync and
    compiles as one graph.
    """

    alpha_prod_t: float
    prediction_type: str
    clip_range: float | None  # clip_sample_range when the scheduler clips x0

    @classmethod
    def from_scheduler(cls, scheduler: DDPMScheduler) -> "OneStepUpdate":
        if len(scheduler.timesteps) != 1:
            raise ValueError(f"expected a one-step scheduler, got timesteps {scheduler.timesteps.tolist()}")
        config = scheduler.config
        if config.thresholding:
            raise ValueError("scheduler config: dynamic thresholding is not supported for one-step Difix")
        if config.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"scheduler config: unknown prediction_type {config.prediction_type!r}")
        timestep = int(scheduler.timesteps[0])
        return cls(
            alpha_prod_t=float(scheduler.alphas_cumprod[timestep]),
            prediction_type=config.prediction_type,
            clip_range=float(config.clip_sample_range) if config.clip_sample else None,
        )

    def __call__(self, model_pred: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        a = self.alpha_prod_t
        if self.prediction_type == "epsilon":
            x0 = (latents - (1.0 - a) ** 0.5 * model_pred) / a**0.5
        elif self.prediction_type == "v_prediction":
            x0 = a**0.5 * latents - (1.0 - a) ** 0.5 * model_pred
        else:
            x0 = model_pred
        if self.clip_range is not None:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
        return x0


# ----------------------------------------------------------------------------- the model


class DifixModel(torch.nn.Module):
    """Difix with a reference view: ``forward(views, prompt_embeds) -> views``.

    ``views``: (B, V, 3, H, W) in [-1, 1]; view 0 is the image to fix, view 1 (optional)
    the reference.  H and W must be multiples of 8.
    """

    def __init__(
        self,
        config: DifixConfig,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer | None,
        vae_lora_target_modules: Sequence[str],
    ) -> None:
        super().__init__()
        self.difix_config = config
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.vae_lora_target_modules = list(vae_lora_target_modules)
        self.scheduler = make_one_step_scheduler(config.architecture.scheduler, config.timestep)
        self.one_step = OneStepUpdate.from_scheduler(self.scheduler)
        self._compiled_fix: Callable[..., torch.Tensor] | None = None
        # whether UNet self-attention spans the views of a sample (``MultiViewAttnProcessor``); off,
        # every view is denoised on its own, as Difix trains without ``--mv_unet``. Not saved: a
        # loaded model attends across views (Difix's inference with a reference does)
        self.joint_view_attention = True
        self.register_buffer("timesteps", torch.tensor([config.timestep], dtype=torch.long), persistent=False)
        self.text_encoder.requires_grad_(False)
        self._prompt_cache: dict[str, torch.Tensor] = {}

    def set_timestep(self, timestep: int) -> None:
        """Use another single diffusion timestep (stored in ``difix_config``, so checkpoints keep it)."""
        config = dataclasses.replace(self.difix_config, timestep=int(timestep))  # validates the range
        self.scheduler = make_one_step_scheduler(config.architecture.scheduler, config.timestep)
        self.one_step = OneStepUpdate.from_scheduler(self.scheduler)
        self.timesteps.fill_(config.timestep)
        self.difix_config = config

    @property
    def lora_rank_vae(self) -> int:
        return int(self.vae.peft_config[VAE_ADAPTER_NAME].r)

    # --- text
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings (B, L, D); computed once per distinct prompt (the encoder is frozen)."""
        if self.tokenizer is None:
            raise ValueError("this Difix model was built without a tokenizer")
        device = self.text_encoder.device
        dtype = self.text_encoder.dtype
        out = []
        for prompt in prompts:
            cached = self._prompt_cache.get(prompt)
            if cached is None or cached.device != device or cached.dtype != dtype:
                ids = self.tokenizer(
                    prompt,
                    max_length=self.tokenizer.model_max_length,
                    padding="max_length",
                    truncation=True,
                    return_tensors="pt",
                ).input_ids.to(device)
                cached = self.text_encoder(ids)[0][0].detach()
                self._prompt_cache[prompt] = cached
            out.append(cached)
        return torch.stack(out)

    # --- forward
    def forward(
        self,
        views: torch.Tensor,
        prompt_embeds: torch.Tensor,
        generator: torch.Generator | None = None,
        first_view_only: bool = False,
    ) -> torch.Tensor:
        """Fixed views (B, V, 3, H, W); ``first_view_only``: (B, 1, 3, H, W), the fixed image
        alone.  The views interact only in the UNet, so decoding view 0 alone gives the same
        image for less than the cost of decoding all views (the decoder is the costliest part
        at full resolution)."""
        if views.ndim != 5 or views.shape[2] != 3:
            raise ValueError(f"views must be (B, V, 3, H, W), got {tuple(views.shape)}")
        b, v, _, h, w = views.shape
        if h % 8 or w % 8:
            raise ValueError(f"image size {h}x{w} must be a multiple of 8")
        if prompt_embeds.shape[0] != b:
            raise ValueError(f"{prompt_embeds.shape[0]} prompt embeddings for a batch of {b}")
        x = views.reshape(b * v, 3, h, w).to(self.vae.dtype)
        noise = None
        if self.difix_config.latent_sampling == "sample":
            # drawn here, as DiagonalGaussianDistribution.sample would, to keep the tensor path pure
            noise = torch.randn(self.latent_shape(b * v, h, w), generator=generator, device=x.device, dtype=x.dtype)
        # (b, n, c) -> (b v, n, c), views of one sample consecutive like the latents
        text = prompt_embeds.to(self.unet.dtype).repeat_interleave(v, dim=0)
        fix = self._compiled_fix or self.fix_flat_views
        return fix(x, text, noise, v, first_view_only).reshape(b, 1 if first_view_only else v, 3, h, w)

    def latent_shape(self, n: int, height: int, width: int) -> tuple[int, int, int, int]:
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return (n, self.vae.config.latent_channels, height // factor, width // factor)

    def fix_flat_views(
        self,
        x: torch.Tensor,
        text: torch.Tensor,
        noise: torch.Tensor | None,
        num_views: int,
        first_view_only: bool = False,
    ) -> torch.Tensor:
        """The tensor path: (b v, 3, H, W) views -> fixed views, (b v) or (b) of them;
        ``noise`` samples the posterior (None: its mode)."""
        posterior, skips = encode_with_skips(self.vae, x)
        z = posterior.mode() if noise is None else posterior.mean + posterior.std * noise
        scale = self.vae.config.scaling_factor
        z = z * scale
        attention_views = num_views if self.joint_view_attention else 1
        pred = self.unet(
            z, self.timesteps, encoder_hidden_states=text, cross_attention_kwargs={"num_views": attention_views}
        ).sample
        # fp32 for the update, as the scheduler computes it; the decoder runs in the VAE's dtype
        z_denoised = (self.one_step(pred.float(), z.float()) / scale).to(self.vae.dtype)
        if first_view_only:  # views of a sample are consecutive: every num_views-th is a view 0
            z_denoised = z_denoised[::num_views]
            skips = [skip[::num_views] for skip in skips]
        out = decode_with_skips(self.vae, z_denoised, skips, self.difix_config.skip_gamma)
        return out.clamp(-1, 1)

    def merge_vae_lora(self) -> None:
        """Fold the VAE LoRA into the decoder weights, for inference: the same outputs without
        the extra low-rank convolutions at every decoder layer.  The LoRA tensors stay (unused)
        so ``official_state`` is unchanged; do not train a merged model."""
        for module in self.vae.modules():
            if isinstance(module, BaseTunerLayer) and not module.merged:
                module.merge()

    def compile_forward(self, mode: str | None = None) -> None:
        """``torch.compile`` the tensor path (encoder, UNet, update, decoder) as one graph.

        Fuses the GroupNorm / SiLU / dtype-cast chains that dominate eager time at 512 px;
        the first call (and each new image size) compiles for a few minutes.  State-dict keys
        are unchanged.  ``mode`` is torch.compile's (e.g. ``max-autotune-no-cudagraphs``).
        """
        self._compiled_fix = torch.compile(self.fix_flat_views, mode=mode)

    # --- training state
    def trainable_named_parameters(
        self, parts: TrainableParts = TrainableParts()
    ) -> list[tuple[str, torch.nn.Parameter]]:
        """What ``parts`` trains, in a stable order, without duplicates: by default (Difix's recipe)
        the whole UNet (its LoRA included when it has one), the VAE LoRA and skip convolutions."""
        if parts.unet == "lora" and unet_lora_rank(self.unet) is None:
            raise ValueError("tuning.unet: lora needs a UNet LoRA (hi4dfix.difix.model.add_unet_lora)")
        params = [
            (f"unet.{n}", p) for n, p in self.unet.named_parameters() if parts.unet == "full" or "lora_" in n
        ]
        if parts.vae_skip == "train":
            params += [(f"vae.{n}", p) for n, p in self.vae.named_parameters() if "lora" in n or "skip" in n]
        return params

    def set_train(self, parts: TrainableParts = TrainableParts()) -> None:
        self.train()
        self.text_encoder.eval()
        self.requires_grad_(False)
        for _, p in self.trainable_named_parameters(parts):
            p.requires_grad_(True)

    def set_eval(self) -> None:
        self.eval()
        self.requires_grad_(False)

    # --- official checkpoint content
    def official_state(self) -> dict[str, Any]:
        """The model part of an official ``model_*.pkl`` (everything but ``optimizer``)."""
        vae_state = {k: v for k, v in self.vae.state_dict().items() if "lora" in k or "skip" in k}
        state = {
            "vae_lora_target_modules": list(self.vae_lora_target_modules),
            "rank_vae": self.lora_rank_vae,
            "state_dict_unet": self.unet.state_dict(),
            "state_dict_vae": vae_state,
        }
        rank_unet = unet_lora_rank(self.unet)
        if rank_unet is not None:  # img2img-turbo's keys for a UNet LoRA
            state["rank_unet"] = rank_unet
            state["unet_lora_target_modules"] = sorted(self.unet.peft_config[UNET_ADAPTER_NAME].target_modules)
        return state


# ----------------------------------------------------------------------------- builders


def build_unet(unet_config: dict[str, Any]) -> UNet2DConditionModel:
    return UNet2DConditionModel.from_config(unet_config)


def build_vae(vae_config: dict[str, Any]) -> AutoencoderKL:
    return AutoencoderKL.from_config(vae_config)


def build_text_encoder(text_config: dict[str, Any]) -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(**text_config))


def make_difix_vae(
    vae: AutoencoderKL, rank: int, target_modules: Sequence[str] | None = None
) -> list[str]:
    """Turn a plain VAE into the Difix VAE in place; returns the LoRA target list used."""
    attach_skip_convs(vae)
    targets = list(target_modules) if target_modules is not None else official_vae_lora_targets(vae)
    add_vae_lora(vae, targets, rank)
    return targets


def assemble_difix(
    config: DifixConfig,
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer | None,
    rank: int | None = None,
    target_modules: Sequence[str] | None = None,
) -> DifixModel:
    """Add the Difix parts (skip convs, LoRA, multi-view attention) to plain components.

    Fresh LoRA / skip weights are drawn from ``config.init_seed`` without touching the
    global RNG.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.init_seed)
        targets = make_difix_vae(vae, rank or config.lora_rank_vae, target_modules)
    enable_multiview_attention(unet)
    use_explicit_vae_attention(vae)
    model = DifixModel(config, unet, vae, text_encoder, tokenizer, targets)
    model.set_eval()
    return model


def build_random_difix(config: DifixConfig, with_tokenizer: bool = True) -> DifixModel:
    """All components from ``config.architecture`` with random weights (seeded).

    Works under ``torch.device("meta")`` to get the full-size architecture without memory.
    """
    arch: ArchitectureConfig = config.architecture
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.init_seed)
        unet = build_unet(arch.unet)
        vae = build_vae(arch.vae)
        text_encoder = build_text_encoder(arch.text_encoder)
    tokenizer = build_tiny_tokenizer(arch.tokenizer_max_length) if with_tokenizer else None
    if tokenizer is not None and len(tokenizer) > text_encoder.config.vocab_size:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the text encoder only {text_encoder.config.vocab_size}"
        )
    return assemble_difix(config, unet, vae, text_encoder, tokenizer)


def describe(model: DifixModel) -> str:
    """One line per component with parameter counts (for logs)."""
    def count(m: torch.nn.Module, trainable: bool = False) -> int:
        return sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable)

    info = {
        "preset": model.difix_config.preset,
        "unet_params": count(model.unet),
        "vae_params": count(model.vae),
        "text_encoder_params": count(model.text_encoder),
        "trainable_params": sum(p.numel() for _, p in model.trainable_named_parameters()),
        "vae_lora_targets": len(model.vae_lora_target_modules),
    }
    return json.dumps(info)
