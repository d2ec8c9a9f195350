"""The Difix forward pass recomputed from diffusers building blocks, and the released pkl layouts.

The reference below follows the order of the released ``src/model.py`` (nv-tlabs/Difix3D):
the patched VAE encoder keeps the input of every down block, the UNet runs once at t=199 with
``mv_unet``'s self-attention over the tokens of both views of a sample, ``DDPMScheduler.step``
gives the denoised latents, and the patched decoder adds ``skip_conv_i(acts[::-1][i] * gamma)``
before each up block.  It is written here from the model's sub-modules, without hi4dfix's
``encode_with_skips`` / ``decode_with_skips`` / ``MultiViewAttnProcessor``.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from safetensors.torch import load_file, save_file

from difix_fixtures import difix_with_active_adapters
from hi4dfix.difix import checkpoint as ck
from hi4dfix.difix import official_pkl, pretrained_dir
from hi4dfix.difix.checkpoint_base import CheckpointError, FreshDifixPartsWarning
from hi4dfix.difix.config import SD_TURBO_SCHEDULER_CONFIG

torch.set_num_threads(1)
PROMPT = "remove degradation"
TIMESTEP = 199


class JointViews(torch.nn.Module):
    """``attn1`` seeing the tokens of all views of a sample, as mv_unet's block does:
    ``(b v) n d -> b (v n) d`` before self-attention, back after.  (mv_unet regroups before
    ``norm1``; a LayerNorm acts per token, so regrouping just around ``attn1`` is the same.)"""

    def __init__(self, attn: torch.nn.Module, num_views: int) -> None:
        super().__init__()
        self.attn, self.num_views = attn, num_views

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        bv, n, d = hidden_states.shape
        grouped = hidden_states.reshape(bv // self.num_views, self.num_views * n, d)
        out = self.attn(grouped, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask, **kwargs)
        return out.reshape(bv, n, d)


def reference_unet(model, num_views: int, joint: bool = True):
    unet = copy.deepcopy(model.unet)
    unet.set_attn_processor(AttnProcessor2_0())  # diffusers' own attention, not hi4dfix's processor
    if joint:
        for block in unet.modules():
            if isinstance(block, BasicTransformerBlock):
                block.attn1 = JointViews(block.attn1, num_views)
    return unet


@torch.no_grad()
def reference_forward(model, views, prompt_embeds, noise=None, joint=True, gamma=1.0):
    """Difix.forward of the released code, step by step."""
    b, v, _, h, w = views.shape
    vae = copy.deepcopy(model.vae)
    vae.set_attn_processor(AttnProcessor2_0())
    x = views.reshape(b * v, 3, h, w)  # 'b v c h w -> (b v) c h w'

    # my_vae_encoder_fwd: keep the input of every down block
    enc = vae.encoder
    sample = enc.conv_in(x)
    down_acts = []
    for down_block in enc.down_blocks:
        down_acts.append(sample)
        sample = down_block(sample)
    sample = enc.mid_block(sample)
    sample = enc.conv_out(enc.conv_act(enc.conv_norm_out(sample)))
    posterior = DiagonalGaussianDistribution(vae.quant_conv(sample))  # AutoencoderKL.encode
    z = posterior.mean if noise is None else posterior.mean + posterior.std * noise
    z = z * vae.config.scaling_factor

    # UNet at t=199, the caption repeated per view ('b n c -> (b v) n c')
    text = prompt_embeds.repeat_interleave(v, dim=0)
    timesteps = torch.tensor([TIMESTEP]).long()
    model_pred = reference_unet(model, v, joint)(z, timesteps, encoder_hidden_states=text).sample

    # one DDPM step. The released code calls set_timesteps(1) and steps at 199, for which the
    # diffusers of its time took 199 - 1000 as the previous timestep (alpha_prev = 1); current
    # diffusers need 199 in the timestep list, whose previous timestep is then also "none".
    scheduler = DDPMScheduler.from_config(SD_TURBO_SCHEDULER_CONFIG)
    scheduler.set_timesteps(timesteps=[TIMESTEP])
    z_denoised = scheduler.step(model_pred, TIMESTEP, z, generator=torch.Generator().manual_seed(0)).prev_sample

    # my_vae_decoder_fwd with incoming_skip_acts = the encoder's down-block inputs
    dec = vae.decoder
    sample = dec.conv_in(vae.post_quant_conv(z_denoised / vae.config.scaling_factor))
    sample = dec.mid_block(sample, None)
    skip_convs = [dec.skip_conv_1, dec.skip_conv_2, dec.skip_conv_3, dec.skip_conv_4]
    for idx, up_block in enumerate(dec.up_blocks):
        sample = sample + skip_convs[idx](down_acts[::-1][idx] * gamma)
        sample = up_block(sample, None)
    sample = dec.conv_out(dec.conv_act(dec.conv_norm_out(sample)))
    return sample.clamp(-1, 1).reshape(b, v, 3, h, w)  # '(b v) c h w -> b v c h w'


def example_views(b=2, h=32, w=48, seed=0):
    return torch.rand(b, 2, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_forward_equals_the_released_order_of_operations():
    model = difix_with_active_adapters()
    views = example_views()
    emb = model.encode_prompts([PROMPT] * views.shape[0])
    with torch.no_grad():
        ours = model(views, emb)
    expected = reference_forward(model, views, emb)
    assert ours.shape == expected.shape == (2, 2, 3, 32, 48)
    torch.testing.assert_close(ours, expected, atol=2e-5, rtol=1e-4)
    # the check can fail: views attending separately give another image
    separate = reference_forward(model, views, emb, joint=False)
    assert (ours - separate).abs().max() > 1e-3


def test_forward_with_posterior_samples_equals_the_reference():
    """latent_sampling 'sample' (the released ``latent_dist.sample()``), same noise on both sides."""
    model = difix_with_active_adapters(5, latent_sampling="sample")
    views = example_views(b=1, seed=2)
    emb = model.encode_prompts([PROMPT])
    with torch.no_grad():
        ours = model(views, emb, generator=torch.Generator().manual_seed(11))
    noise = torch.randn(model.latent_shape(2, 32, 48), generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(ours, reference_forward(model, views, emb, noise=noise), atol=2e-5, rtol=1e-4)


def test_set_timestep_changes_the_update_and_is_saved(tmp_path):
    model = difix_with_active_adapters()
    views = example_views(b=1)
    emb = model.encode_prompts([PROMPT])
    with torch.no_grad():
        at_199 = model(views, emb)
        model.set_timestep(399)
        at_399 = model(views, emb)
    assert not torch.allclose(at_199, at_399)
    assert ck.load_model(official_pkl.save_checkpoint(tmp_path / "m.pkl", model)).difix_config.timestep == 399
    with pytest.raises(ValueError, match="timestep"):
        model.set_timestep(1000)


# ----------------------------------------------------------------------------- released pkl layouts


def released_payload(model, layout: str) -> dict:
    """What the released ``save_ckpt`` / ``Difix.save_model`` write, keyed as they key it."""
    params = [p for _, p in model.trainable_named_parameters()]
    unet_state = model.unet.state_dict()
    if layout == "save_model":
        unet_state = {k: v for k, v in unet_state.items() if "lora" in k or "conv_in" in k}
    return {
        "vae_lora_target_modules": model.vae_lora_target_modules,
        "rank_vae": model.lora_rank_vae,
        "state_dict_unet": unet_state,
        "state_dict_vae": {k: v for k, v in model.vae.state_dict().items() if "lora" in k or "skip" in k},
        "optimizer": torch.optim.AdamW(params, lr=2e-5).state_dict(),
    }


def plain_base_folder(model, path):
    """A pipeline folder from ``model`` whose VAE file holds no LoRA / skip weights (as SD-Turbo's)."""
    folder = pretrained_dir.save_pretrained_dir(model, path)
    vae_file = folder / "vae" / pretrained_dir.VAE_WEIGHTS
    state = load_file(str(vae_file))
    plain = {k.replace(".base_layer.", "."): v for k, v in state.items() if "lora" not in k and "skip" not in k}
    save_file(plain, str(vae_file))
    return folder


@pytest.fixture(scope="module")
def base_and_tuned():
    """A base model and a 'tuned' one that differs from it in UNet conv_in and the VAE LoRA/skips only."""
    base = difix_with_active_adapters(7)
    tuned = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        tuned.unet.conv_in.weight.add_(torch.randn(tuned.unet.conv_in.weight.shape, generator=gen) * 0.1)
        for name, p in tuned.vae.named_parameters():
            if "lora_B" in name or "skip" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return base, tuned


def run(model, views):
    with torch.no_grad():
        return model(views, model.encode_prompts([PROMPT] * views.shape[0]))


@pytest.mark.parametrize("layout", ["save_ckpt", "save_model"])
def test_released_pkls_load_on_their_base_folder(base_and_tuned, tmp_path, layout):
    """A tiny model's pkl in a released layout (no hi4dfix keys) is an official pkl: the
    ``sd-turbo`` path loads it on top of the base folder (``base_model_id``), here one built
    from the tiny preset in place of SD-Turbo."""
    base, tuned = base_and_tuned
    folder = plain_base_folder(base, tmp_path / "sd-turbo-like")
    pkl = tmp_path / "model_1001.pkl"
    torch.save(released_payload(tuned, layout), pkl)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FreshDifixPartsWarning)  # the pkl brings the skips: no warning
        loaded = ck.load_model(pkl, base_model_id=str(folder))
    assert loaded.difix_config.preset == "sd-turbo"
    loaded.difix_config.latent_sampling = tuned.difix_config.latent_sampling
    views = example_views(b=1)
    assert torch.equal(run(loaded, views), run(tuned, views))
    assert not torch.equal(run(base, views), run(tuned, views))


def test_save_model_layout_needs_a_base_unet(base_and_tuned, tmp_path):
    """Our tiny pkls carry their own base; a partial UNet there would be random weights: refused."""
    _, tuned = base_and_tuned
    payload = official_pkl.checkpoint_payload(tuned)
    payload["state_dict_unet"] = {k: v for k, v in payload["state_dict_unet"].items() if "conv_in" in k}
    torch.save(payload, tmp_path / "model_5.pkl")
    with pytest.raises(CheckpointError, match="model_5.pkl.*state_dict_unet.*missing"):
        ck.load_model(tmp_path / "model_5.pkl")


def test_folder_without_difix_parts_warns_naming_its_vae_file(base_and_tuned, tmp_path):
    base, _ = base_and_tuned
    folder = plain_base_folder(base, tmp_path / "plain")
    vae_file = folder / "vae" / pretrained_dir.VAE_WEIGHTS
    with pytest.warns(FreshDifixPartsWarning, match=str(vae_file)):
        model = ck.load_model(folder)
    assert torch.all(model.vae.decoder.skip_conv_1.base_layer.weight == 1e-5)


def test_folder_with_lora_but_no_skip_convs_is_an_error(base_and_tuned, tmp_path):
    _, tuned = base_and_tuned
    folder = pretrained_dir.save_pretrained_dir(tuned, tmp_path / "difix_ref")
    vae_file = folder / "vae" / pretrained_dir.VAE_WEIGHTS
    state = load_file(str(vae_file))
    save_file({k: v for k, v in state.items() if "skip_conv" not in k}, str(vae_file))
    with pytest.raises(
        CheckpointError, match=f"{vae_file} holds Difix VAE LoRA weights but no skip-convolution weights"
    ):
        ck.load_model(folder)
    # the skip convolutions' own weights alone missing (their LoRA kept): the same error
    save_file({k: v for k, v in state.items() if not (".skip_conv_" in k and "lora" not in k)}, str(vae_file))
    with pytest.raises(CheckpointError, match="no skip-convolution weights"):
        ck.load_model(folder)


def test_cudnn_autotuning_is_off_for_compiled_inference_unless_asked():
    from hi4dfix.difix.infer import cudnn_benchmark_wanted

    assert cudnn_benchmark_wanted(None, compiled=False) is True  # eager: pays off over many images
    assert cudnn_benchmark_wanted(None, compiled=True) is False  # compiled: same speed, less memory
    assert cudnn_benchmark_wanted(True, compiled=True) is True
    assert cudnn_benchmark_wanted(False, compiled=False) is False
