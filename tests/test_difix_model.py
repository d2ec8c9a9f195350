"""Difix architecture, official checkpoint keys, save/load round trips and inference."""

from __future__ import annotations

import copy
import hashlib
import json
import zipfile

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0
from peft import LoraConfig
from safetensors.torch import load_file, save_file

from difix_fixtures import difix_with_active_adapters
from hi4dfix.difix import checkpoint as ck
from hi4dfix.difix import official_pkl, pretrained_dir
from hi4dfix.difix.checkpoint_base import CheckpointError, FreshDifixPartsWarning
from hi4dfix.difix.config import (
    CONFIG_KEY,
    SD_TURBO_UNET_CONFIG,
    SD_TURBO_VAE_CONFIG,
    DifixConfig,
    preset_architecture,
)
from hi4dfix.difix.infer import fix_images, load_difix
from hi4dfix.difix.model import (
    MultiViewAttnProcessor,
    OneStepUpdate,
    build_random_difix,
    build_tiny_tokenizer,
    make_one_step_scheduler,
    skip_conv_channels,
    use_explicit_vae_attention,
)

torch.set_num_threads(1)
PROMPT = "remove degradation"
# Counts of the public SD-Turbo / Difix weight files (tensor elements), for the key checks.
SD_TURBO_UNET_PARAMS = 865_910_724


@pytest.fixture(scope="module")
def tiny_model():
    """A tiny model whose LoRA and skip weights are non-trivial (so that they matter)."""
    return difix_with_active_adapters(3, weight_seed=0)


def run(model, views, seed=0):
    emb = model.encode_prompts([PROMPT] * views.shape[0])
    with torch.no_grad():
        return model(views, emb, generator=torch.Generator().manual_seed(seed))


def example_views(b=1, h=32, w=48, seed=0):
    return torch.rand(b, 2, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_views_are_denoised_independently_without_joint_view_attention():
    model = difix_with_active_adapters(3, weight_seed=0)
    views = example_views()
    other_ref = views.clone()
    other_ref[:, 1] = -views[:, 1]
    assert model.joint_view_attention  # a loaded model attends across views (Difix's inference with a reference)
    assert not torch.allclose(run(model, views)[:, 0], run(model, other_ref)[:, 0])
    model.joint_view_attention = False  # TrainConfig.mv_attention: false, Difix training without --mv_unet
    torch.testing.assert_close(run(model, views)[:, 0], run(model, other_ref)[:, 0])
    single = run(model, views[:, :1])
    # fp32 rounding of a batch of 2 against 1 reaches 1.5e-5; attending across views moves it by ~0.09
    torch.testing.assert_close(run(model, views)[:, 0], single[:, 0], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- architecture


def test_skip_conv_channels_of_sd_vae_match_official():
    assert skip_conv_channels([128, 256, 512, 512]) == [(512, 512), (256, 512), (128, 512), (128, 256)]


def test_tiny_tokenizer_is_offline_and_deterministic():
    tok = build_tiny_tokenizer(77)
    ids = tok(PROMPT, max_length=77, padding="max_length", truncation=True).input_ids
    assert len(ids) == 77
    assert ids[0] == tok.bos_token_id and tok.eos_token_id in ids
    assert ids == build_tiny_tokenizer(77)(PROMPT, max_length=77, padding="max_length").input_ids
    assert tok("remove degradation").input_ids != tok("something else").input_ids


def test_tiny_forward_shapes_range_and_vae_factor(tiny_model):
    assert 2 ** (len(tiny_model.vae.config.block_out_channels) - 1) == 8
    out = run(tiny_model, example_views(b=2))
    assert out.shape == (2, 2, 3, 32, 48)
    assert out.min() >= -1 and out.max() <= 1
    with pytest.raises(ValueError, match="multiple of 8"):
        run(tiny_model, example_views(h=30))


def test_reference_view_changes_the_fixed_view(tiny_model):
    views = example_views()
    other = views.clone()
    other[:, 1] = -other[:, 1]
    assert not torch.allclose(run(tiny_model, views)[:, 0], run(tiny_model, other)[:, 0])
    # Samples of a batch do not attend to each other.
    pair = torch.cat([views, example_views(seed=5)])
    both = run(tiny_model, pair)
    alone = run(tiny_model, views)
    assert torch.allclose(both[0, 0], alone[0, 0], atol=1e-5)


def test_first_view_only_decodes_the_same_fixed_images(tiny_model):
    views = torch.cat([example_views(seed=1), example_views(seed=2)])  # 2 samples x 2 views
    emb = tiny_model.encode_prompts([PROMPT] * 2)
    with torch.no_grad():
        every = tiny_model(views, emb, generator=torch.Generator().manual_seed(4))
        first = tiny_model(views, emb, generator=torch.Generator().manual_seed(4), first_view_only=True)
    assert first.shape == (2, 1, 3, 32, 48)
    torch.testing.assert_close(first[:, 0], every[:, 0], atol=1e-5, rtol=0)
    assert not torch.allclose(first[:, 0], every[:, 1], atol=1e-2)


def test_explicit_vae_attention_matches_fused_attention(tiny_model):
    """The VAE's mid-block attention as matmuls + softmax gives what SDPA gives."""
    views = example_views(b=2).flatten(0, 1)
    vae = tiny_model.vae
    with torch.no_grad():
        explicit = vae.encode(views).latent_dist.mean
        vae.set_attn_processor(AttnProcessor2_0())
        try:
            fused = vae.encode(views).latent_dist.mean
        finally:
            use_explicit_vae_attention(vae)
    assert {type(p) for p in vae.attn_processors.values()} == {AttnProcessor}
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)


def test_multiview_processor_is_joint_attention_over_views():
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    hidden = torch.randn(4, 5, 16)  # (batch 2 * views 2, tokens, dim)
    ours = MultiViewAttnProcessor()(attn, hidden, num_views=2)
    reference = AttnProcessor2_0()(attn, hidden.reshape(2, 10, 16)).reshape(4, 5, 16)
    assert torch.allclose(ours, reference, atol=1e-6)
    # one view, or cross-attention: plain attention
    text = torch.randn(4, 3, 16)
    multi_view = MultiViewAttnProcessor()(attn, hidden, text, num_views=2)
    assert torch.allclose(multi_view, AttnProcessor2_0()(attn, hidden, text))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"prediction_type": "v_prediction"},
        {"prediction_type": "sample"},
        {"clip_sample": True, "clip_sample_range": 0.5},
    ],
    ids=["epsilon", "v_prediction", "sample", "clipped"],
)
def test_one_step_update_is_the_schedulers_step(overrides):
    arch = preset_architecture("tiny")
    sched = make_one_step_scheduler({**arch.scheduler, **overrides}, 199)
    z, pred = torch.randn(2, 4, 4, 6), torch.randn(2, 4, 4, 6)
    expected = sched.step(pred, torch.tensor([199]), z, generator=torch.Generator().manual_seed(0)).prev_sample
    ours = OneStepUpdate.from_scheduler(sched)(pred, z)
    assert torch.allclose(ours, expected, atol=1e-6)
    if not overrides:  # SD-Turbo's epsilon prediction: x0 = (z - sqrt(1 - abar) eps) / sqrt(abar)
        abar = sched.alphas_cumprod[199]
        assert torch.allclose(ours, (z - (1 - abar).sqrt() * pred) / abar.sqrt(), atol=1e-5)


def test_merged_vae_lora_gives_the_same_output(tiny_model):
    views = torch.rand(1, 2, 3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    emb = tiny_model.encode_prompts(["remove degradation"])
    merged = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for name, p in merged.vae.named_parameters():  # non-zero LoRA, so the merge matters
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
        unmerged_out = merged(views, emb)
        merged.merge_vae_lora()
        merged_out = merged(views, emb)
    assert not torch.allclose(unmerged_out, tiny_model(views, emb), atol=1e-3)
    assert torch.allclose(merged_out, unmerged_out, atol=1e-4)  # float rounding only
    assert merged.official_state()["state_dict_vae"].keys() == tiny_model.official_state()["state_dict_vae"].keys()


def test_one_step_update_refuses_thresholding():
    arch = preset_architecture("tiny")
    with pytest.raises(ValueError, match="thresholding"):
        OneStepUpdate.from_scheduler(make_one_step_scheduler({**arch.scheduler, "thresholding": True}, 199))


def test_trainable_parameters_are_unet_vae_lora_and_skips(tiny_model):
    names = [n for n, _ in tiny_model.trainable_named_parameters()]
    assert len(names) == len(set(names))
    unet_count = len(list(tiny_model.unet.parameters()))
    assert sum(n.startswith("unet.") for n in names) == unet_count
    vae_names = [n for n in names if n.startswith("vae.")]
    assert vae_names and all("lora" in n or "skip" in n for n in vae_names)
    assert not any("encoder." in n and "decoder" not in n for n in vae_names)
    assert not any(n.startswith("text_encoder") for n in names)


# ----------------------------------------------------------------------------- official keys, full size


def _official_recipe_vae_keys() -> dict[str, tuple[int, ...]]:
    """The VAE keys the released Difix code saves, restated from its source independently."""
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(SD_TURBO_VAE_CONFIG)
        sizes = [(512, 512), (256, 512), (128, 512), (128, 256)]  # (in, out) as in model.py of Difix
        for i, (cin, cout) in enumerate(sizes, start=1):
            vae.decoder.add_module(f"skip_conv_{i}", torch.nn.Conv2d(cin, cout, 1, bias=False))
        suffixes = [
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
        ]
        targets = [n for n, _ in vae.named_modules() if "decoder" in n and any(n.endswith(s) for s in suffixes)]
        vae.add_adapter(LoraConfig(r=4, init_lora_weights="gaussian", target_modules=targets), adapter_name="vae_skip")
    return {k: tuple(v.shape) for k, v in vae.state_dict().items() if "lora" in k or "skip" in k}


def test_full_size_official_keys_on_meta_device():
    with torch.device("meta"):
        model = build_random_difix(DifixConfig(preset="sd-turbo"), with_tokenizer=False)
        plain_unet = UNet2DConditionModel.from_config(SD_TURBO_UNET_CONFIG)
    state = model.official_state()
    assert state["rank_vae"] == 4
    assert set(state["state_dict_unet"]) == set(plain_unet.state_dict())
    assert sum(v.numel() for v in state["state_dict_unet"].values()) == SD_TURBO_UNET_PARAMS
    expected_vae = _official_recipe_vae_keys()
    assert {k: tuple(v.shape) for k, v in state["state_dict_vae"].items()} == expected_vae
    assert state["state_dict_vae"]["decoder.skip_conv_2.base_layer.weight"].shape == (512, 256, 1, 1)
    assert "decoder.mid_block.attentions.0.to_q.lora_A.vae_skip.weight" in expected_vae
    assert not any(k.startswith("encoder.") for k in state["state_dict_vae"])

    # A pkl keyed the way the official code keys it loads with no missing or unexpected keys.
    payload = {
        "vae_lora_target_modules": state["vae_lora_target_modules"],
        "rank_vae": 4,
        "state_dict_unet": {k: torch.empty(v.shape, device="meta") for k, v in plain_unet.state_dict().items()},
        "state_dict_vae": {k: torch.empty(s, device="meta") for k, s in expected_vae.items()},
        "optimizer": {"state": {}, "param_groups": []},
    }
    official_pkl.apply_official_state(model, payload, strict=True, source="official-keys")
    payload["state_dict_vae"]["decoder.skip_conv_5.weight"] = torch.empty(1, device="meta")
    with pytest.raises(CheckpointError, match="unexpected"):
        official_pkl.apply_official_state(model, payload, strict=True, source="official-keys")


# ----------------------------------------------------------------------------- round trips


def test_pkl_round_trip_gives_identical_outputs(tiny_model, tmp_path):
    path = official_pkl.save_checkpoint(tmp_path / "model_7.pkl", tiny_model)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert {"vae_lora_target_modules", "rank_vae", "state_dict_unet", "state_dict_vae", "optimizer"} <= set(payload)
    assert payload["hi4dfix_config"]["preset"] == "tiny"
    assert all("lora" in k or "skip" in k for k in payload["state_dict_vae"])
    loaded = ck.load_model(path)
    views = example_views()
    assert torch.equal(run(tiny_model, views), run(loaded, views))


def test_equal_weights_give_an_equal_model_file(tiny_model, tmp_path):
    """A model saved twice, under other names (so other temporary files), is one file: no file
    name or time inside the archive."""
    state = {"step": 3, "fingerprint": {"seed": 0}, "rng": {"torch": torch.get_rng_state()}}
    first = official_pkl.save_model_weights(tmp_path / "a" / "model.pkl", tiny_model, state)
    second = official_pkl.save_model_weights(tmp_path / "b" / "other.pkl", tiny_model, state)
    assert hashlib.sha256(first.read_bytes()).hexdigest() == hashlib.sha256(second.read_bytes()).hexdigest()
    with zipfile.ZipFile(first) as archive:
        members = archive.infolist()
    assert members and all(m.filename.startswith("archive/") for m in members)
    assert {m.date_time for m in members} == {members[0].date_time}
    assert official_pkl.read_checkpoint(first)["hi4dfix_train_state"]["step"] == 3


def test_folder_round_trip_and_pkl_from_folder(tiny_model, tmp_path):
    folder = pretrained_dir.save_pretrained_dir(tiny_model, tmp_path / "difix_ref")
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (folder / sub).is_dir()
    assert json.loads((folder / "model_index.json").read_text())["vae"][1] == "AutoencoderKL"
    from_dir = ck.load_model(folder)
    views = example_views()
    assert torch.equal(run(tiny_model, views), run(from_dir, views))
    again = ck.load_model(official_pkl.save_checkpoint(tmp_path / "model_1.pkl", from_dir))
    assert torch.equal(run(tiny_model, views), run(again, views))


def test_folder_with_plain_base_layer_keys_loads(tiny_model, tmp_path):
    """VAE files saved with merged-style names (``x.weight`` for LoRA-wrapped layers) load too."""
    folder = pretrained_dir.save_pretrained_dir(tiny_model, tmp_path / "dir")
    vae_file = folder / "vae" / pretrained_dir.VAE_WEIGHTS
    state = load_file(str(vae_file))
    renamed = {k.replace(".base_layer.", "."): v for k, v in state.items()}
    assert renamed.keys() != state.keys()
    save_file(renamed, str(vae_file))
    views = example_views()
    assert torch.equal(run(tiny_model, views), run(ck.load_model(folder), views))


def test_official_pkl_is_sd_turbo_and_uses_the_base_folder(tiny_model, tmp_path):
    """An official pkl (no hi4dfix keys) goes through the sd-turbo path: base weights from a
    pipeline folder (here a local one made from the tiny preset), then the pkl on top."""
    base = pretrained_dir.save_pretrained_dir(tiny_model, tmp_path / "sd-turbo-like")
    payload = {k: v for k, v in official_pkl.checkpoint_payload(tiny_model).items() if not k.startswith("hi4dfix")}
    torch.save(payload, tmp_path / "model_100.pkl")
    loaded = ck.load_model(tmp_path / "model_100.pkl", base_model_id=str(base))
    assert loaded.difix_config.preset == "sd-turbo"
    assert loaded.difix_config.latent_sampling == "sample"  # official semantics
    loaded.difix_config.latent_sampling = tiny_model.difix_config.latent_sampling
    views = example_views()
    assert torch.equal(run(tiny_model, views), run(loaded, views))


def test_plain_pipeline_folder_gets_fresh_difix_parts(tiny_model, tmp_path):
    """A folder whose VAE has no LoRA / skip weights (SD-Turbo itself) gets the official init."""
    folder = pretrained_dir.save_pretrained_dir(tiny_model, tmp_path / "plain")
    vae_file = folder / "vae" / pretrained_dir.VAE_WEIGHTS
    state = load_file(str(vae_file))
    plain = {k.replace(".base_layer.", "."): v for k, v in state.items() if "lora" not in k and "skip" not in k}
    save_file(plain, str(vae_file))
    with pytest.warns(FreshDifixPartsWarning, match="skip-convolution"):
        model = ck.load_model(folder)
    assert torch.all(model.vae.decoder.skip_conv_1.base_layer.weight == 1e-5)
    lora_b = [p for n, p in model.vae.named_parameters() if "lora_B" in n]
    assert lora_b and all(torch.all(p == 0) for p in lora_b)


def test_checkpoint_errors_name_the_file(tmp_path):
    bad = tmp_path / "model_1.pkl"
    torch.save({"state_dict_unet": {}}, bad)
    with pytest.raises(CheckpointError, match="model_1.pkl"):
        ck.load_model(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        ck.load_model(tmp_path / "missing.pkl")
    with pytest.raises(CheckpointError, match="neither"):
        ck.load_model("not a model")


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("text", "it is a text file, not a file written by torch.save"),
        ("number", "it is a text file, not a file written by torch.save"),
        ("empty", "the file is empty"),
        ("png", "it is a PNG image"),
        ("numpy_objects", "it holds Python objects other than tensors, dicts, lists and numbers"),
        ("pickle", "it is a Python pickle, not a file written by torch.save"),
        ("list", "it holds a list, not a dict of vae_lora_target_modules"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_says_what_it_is_not(tmp_path, kind, expected):
    """Never torch's advice to re-run with weights_only=False, never a bare number."""
    import pickle

    path = tmp_path / "model_1.pkl"
    if kind == "text":
        path.write_text("hello\n")
    elif kind == "number":
        path.write_text("101\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "png":
        import imageio.v3 as iio

        iio.imwrite(path, np.zeros((4, 4, 3), np.uint8), extension=".png")
    elif kind == "numpy_objects":
        torch.save({"rank_vae": np.array(4)}, path)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"rank_vae": 4}))
    else:
        torch.save([1, 2], path)
    with pytest.raises(CheckpointError) as error:
        load_difix(path)
    message = str(error.value)
    assert message.startswith(f"{path} is not a Difix checkpoint: {expected}")
    assert "Accepted: a model_*.pkl written by torch.save" in message and "nvidia/difix_ref" in message
    assert "weights_only=False" not in message and "Re-running" not in message


@pytest.mark.parametrize("keep_base_state", [True, False])
def test_a_tiny_pkl_without_its_config_is_refused_offline(tiny_model, tmp_path, monkeypatch, keep_base_state):
    import huggingface_hub

    def no_download(*args, **kwargs):
        raise AssertionError("a tiny pkl must not trigger a Hub download")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_download)
    payload = official_pkl.checkpoint_payload(tiny_model)
    del payload[CONFIG_KEY]
    if not keep_base_state:
        del payload[official_pkl.BASE_STATE_KEY]
    path = tmp_path / "model_5.pkl"
    torch.save(payload, path)
    why = "it holds 'hi4dfix_base_state'" if keep_base_state else "its UNet has the tiny preset's parameter shapes"
    with pytest.raises(CheckpointError, match=f"model_5.pkl lacks 'hi4dfix_config'.*{why}.*Nothing was downloaded"):
        ck.load_model(path)


@pytest.mark.parametrize("rank", ["four", 0, 2.5, True])
def test_a_bad_rank_vae_names_the_file_and_key(tiny_model, tmp_path, rank):
    payload = official_pkl.checkpoint_payload(tiny_model)
    payload["rank_vae"] = rank
    path = tmp_path / "model_3.pkl"
    torch.save(payload, path)
    with pytest.raises(
        CheckpointError, match=f"checkpoint {path}: key rank_vae must be a positive integer .*got {rank!r}"
    ):
        ck.load_model(path)


def test_unreachable_hub_id_fails_clearly(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="Hugging Face Hub"):
        ck.load_model("nvidia/difix_ref", hub_cache_dir=str(tmp_path))


# ----------------------------------------------------------------------------- inference


def test_fix_images_keeps_sizes_order_and_is_reproducible(tiny_model, tmp_path):
    path = official_pkl.save_checkpoint(tmp_path / "m.pkl", tiny_model)
    model = load_difix(path, device="cpu")
    rng = np.random.default_rng(0)
    images = [
        rng.random((50, 70, 3), dtype=np.float32),
        rng.random((32, 48, 3), dtype=np.float32),
        rng.random((50, 70, 3), dtype=np.float32),
    ]
    refs = [rng.random(im.shape, dtype=np.float32) for im in images]
    out = fix_images(model, images, refs, batch_size=2)
    assert [o.shape for o in out] == [im.shape for im in images]
    assert all(o.dtype == np.float32 and o.min() >= 0 and o.max() <= 1 for o in out)
    again = fix_images(model, images, refs, batch_size=2)
    assert all(np.array_equal(a, b) for a, b in zip(out, again))
    # Batching does not mix samples: one image alone gives (nearly) the same result.
    single = fix_images(model, images[1:2], refs[1:2], batch_size=1)[0]
    assert np.allclose(single, out[1], atol=1e-4)
    stacked = fix_images(
        model, np.stack([images[1], images[1]]), np.stack([refs[1], refs[1]]), batch_size=2, resolution="32x48"
    )
    assert stacked.shape == (2, 32, 48, 3)
    with pytest.raises(ValueError, match="reference"):
        fix_images(model, images, refs[:1])
    with pytest.raises(ValueError, match="float"):
        fix_images(model, [(images[0] * 255).astype(np.uint8)], None)


def test_fix_images_at_a_long_side_keeps_the_aspect(tiny_model):
    """long_side 32 for 40x60 images: processed at 16x32 (HxW), the same as that fixed size,
    not at their own snapped size; outputs come back at the input size."""
    rng = np.random.default_rng(1)
    images = [rng.random((40, 60, 3), dtype=np.float32) for _ in range(2)]
    refs = [rng.random((40, 60, 3), dtype=np.float32) for _ in range(2)]
    at_long_side = fix_images(tiny_model, images, refs, long_side=32)
    assert [o.shape for o in at_long_side] == [(40, 60, 3)] * 2
    fixed = fix_images(tiny_model, images, refs, resolution="16x32")
    native = fix_images(tiny_model, images, refs)
    assert all(np.array_equal(a, b) for a, b in zip(at_long_side, fixed))
    assert not np.allclose(at_long_side[0], native[0], atol=1e-3)
    # a fixed resolution wins over the long side
    both = fix_images(tiny_model, images, refs, resolution="16x32", long_side=48)
    assert all(np.array_equal(a, b) for a, b in zip(both, fixed))


def test_bf16_inference_on_cpu(tiny_model, tmp_path):
    model = load_difix(official_pkl.save_checkpoint(tmp_path / "m.pkl", tiny_model), device="cpu", dtype=torch.bfloat16)
    image = np.random.default_rng(1).random((32, 48, 3), dtype=np.float32)
    out = fix_images(model, [image], [image])[0]
    full = fix_images(load_difix(tmp_path / "m.pkl"), [image], [image])[0]
    assert out.shape == image.shape and np.isfinite(out).all()
    assert np.abs(out - full).mean() < 0.05
