"""The tuning settings of the `training` grid: what trains (full UNet / UNet LoRA, VAE skip path
trained / frozen) and where the losses look (whole image / dilated person mask)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hi4dfix.difix import checkpoint as ck
from hi4dfix.difix.config import UNET_LORA_TARGETS
from hi4dfix.difix.data import TripletDataset, collate, dilate_masks, load_training_triplets
from hi4dfix.difix.infer import fix_images, load_difix
from hi4dfix.difix.losses import DifixLoss, LossConfig
from hi4dfix.difix.model import TrainableParts, add_unet_lora, unet_lora_rank
from hi4dfix.difix.train import build_parser, train
from hi4dfix.difix.train_config import TrainConfig
from hi4dfix.io import write_image
from triplet_fixtures import SyntheticConfig, write_synthetic_triplets

torch.set_num_threads(1)
SMALL = SyntheticConfig(height=32, width=48, max_view_shift=3)


@pytest.fixture(scope="module")
def masked_triplets(tmp_path_factory):
    """Synthetic triplets whose target and reference name a person mask: a box in the middle."""
    root = tmp_path_factory.mktemp("masked")
    path = write_synthetic_triplets(root, n_train=4, n_test=1, seed=3, cfg=SMALL)
    mask = np.zeros((SMALL.height, SMALL.width), dtype=np.uint8)
    mask[10:22, 16:32] = 255
    mask_path = root / "mask.png"
    write_image(mask_path, np.repeat(mask[..., None], 3, axis=2).astype(np.float32) / 255.0)
    data = json.loads(path.read_text())
    for split in data.values():
        for entry in split.values():
            entry["target_mask"] = entry["ref_mask"] = str(mask_path)
    path.write_text(json.dumps(data))
    return path


def run(triplets, tmp_path, name, **overrides) -> Path:
    settings = dict(
        triplets=str(triplets), output=str(tmp_path / f"{name}.pkl"), output_dir=str(tmp_path / name),
        steps=1, resolution="32x48", val_every=0, ckpt_every=0, lr=1e-2,
    )  # fmt: skip
    settings.update(overrides)
    return train(TrainConfig(**settings))


def changed(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor]) -> set[str]:
    return {k for k, v in end.items() if k in start and not torch.equal(v, start[k])}


def test_trainable_parts_select_unet_lora_and_vae_skip_path():
    model = ck.load_model("tiny-random")
    n = {
        parts: sum(p.numel() for _, p in model.trainable_named_parameters(TrainableParts(*parts)))
        for parts in [("full", "train"), ("full", "frozen")]
    }
    unet_total = sum(p.numel() for p in model.unet.parameters())
    assert n[("full", "frozen")] == unet_total < n[("full", "train")]
    with pytest.raises(ValueError, match="needs a UNet LoRA"):
        model.trainable_named_parameters(TrainableParts("lora", "train"))
    assert add_unet_lora(model.unet, 4) == list(UNET_LORA_TARGETS) and unet_lora_rank(model.unet) == 4
    lora = model.trainable_named_parameters(TrainableParts("lora", "frozen"))
    assert lora and all(".lora_" in name and name.startswith("unet.") for name, _ in lora)
    assert 0 < sum(p.numel() for _, p in lora) < unet_total / 4
    model.set_train(TrainableParts("lora", "frozen"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"unet.{n.removeprefix('unet.')}" for n, _ in lora}
    with pytest.raises(ValueError, match="tuning.unet must be one of"):
        TrainableParts("half", "train")


@pytest.mark.parametrize(
    ("unet", "vae_skip"), [("full", "train"), ("lora", "train"), ("full", "frozen"), ("lora", "frozen")]
)
def test_each_setting_changes_what_a_step_updates_and_the_pkl_keeps_it(masked_triplets, tmp_path, unet, vae_skip):
    output = run(masked_triplets, tmp_path, "run", unet=unet, vae_skip=vae_skip, unet_lora_rank=4)
    start = ck.load_model("tiny-random")
    payload = torch.load(output, map_location="cpu", weights_only=True)
    unet_changed = changed(start.unet.state_dict(), payload["state_dict_unet"])
    vae_changed = changed(start.vae.state_dict(), payload["state_dict_vae"])
    if unet == "full":
        assert "conv_in.weight" in unet_changed and "rank_unet" not in payload
    else:
        # the base UNet weights (now PEFT's base_layer) stay; only the LoRA's move
        start_unet = start.unet.state_dict()
        base_layers = {k: k.replace(".base_layer", "") for k in payload["state_dict_unet"] if ".base_layer." in k}
        unet_state = payload["state_dict_unet"]
        assert base_layers and all(torch.equal(unet_state[k], start_unet[v]) for k, v in base_layers.items())
        assert "conv_in.weight" not in unet_changed
        lora_b = [k for k in payload["state_dict_unet"] if ".lora_B." in k]
        assert any(payload["state_dict_unet"][k].abs().sum() > 0 for k in lora_b)  # B starts at 0
        assert payload["rank_unet"] == 4 and sorted(payload["unet_lora_target_modules"]) == sorted(UNET_LORA_TARGETS)
    skip_weights = {k for k in payload["state_dict_vae"] if "skip_conv" in k and "lora" not in k}
    if vae_skip == "train":
        assert skip_weights & vae_changed
    else:
        assert not vae_changed
    # the pkl loads for inference with every variant, LoRA UNet included, and gives its weights back
    model = load_difix(output)
    assert unet_lora_rank(model.unet) == (4 if unet == "lora" else None)
    assert all(torch.equal(v, payload["state_dict_unet"][k]) for k, v in model.unet.state_dict().items())
    image = np.random.default_rng(0).random((32, 48, 3), dtype=np.float32)
    assert fix_images(model, [image], [image])[0].shape == image.shape


def test_lora_run_resumes_with_its_adapter_and_refuses_another_rank(masked_triplets, tmp_path):
    run(masked_triplets, tmp_path, "r", steps=2, ckpt_every=1, unet="lora", unet_lora_rank=2)
    (tmp_path / "r.pkl").unlink()
    (tmp_path / "r" / "checkpoints" / "model_2.pkl").unlink(missing_ok=True)
    run(masked_triplets, tmp_path, "r", steps=2, ckpt_every=1, unet="lora", unet_lora_rank=2)  # resumes at step 1
    assert torch.load(tmp_path / "r.pkl", weights_only=True)["rank_unet"] == 2
    with pytest.raises(ValueError, match="settings changed.*unet-lora-rank 2 -> 3"):
        run(masked_triplets, tmp_path, "r", steps=3, ckpt_every=1, unet="lora", unet_lora_rank=3)
    # a full-UNet run cannot start from a base that has a UNet LoRA
    with pytest.raises(ValueError, match="tuning.unet: full.*UNet LoRA"):
        run(masked_triplets, tmp_path, "f", base=str(tmp_path / "r.pkl"))


def test_masked_loss_ignores_pixels_outside_the_mask():
    loss = DifixLoss(LossConfig(lambda_lpips=0.0, lambda_gram=0.0))
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(1, 2, 3, 16, 16, generator=gen) * 2 - 1
    pred = torch.rand(1, 2, 3, 16, 16, generator=gen) * 2 - 1
    mask = torch.zeros(1, 2, 1, 16, 16)
    mask[..., 4:10, 5:12] = 1
    pred.requires_grad_(True)
    terms = loss(pred, target, step=1, mask=mask)
    terms["total"].backward()
    inside = mask.expand_as(pred).bool()
    expected = ((pred - target)[inside] ** 2).mean()
    assert torch.isclose(terms["l2"], expected)
    assert torch.all(pred.grad[~inside] == 0) and pred.grad[inside].abs().sum() > 0
    other = pred.detach().clone()
    other[~inside] = torch.rand(int((~inside).sum()), generator=gen)  # change only pixels outside
    assert torch.equal(loss(other, target, step=1, mask=mask)["total"], terms["total"].detach())
    other[inside] += 0.1
    assert not torch.equal(loss(other, target, step=1, mask=mask)["total"], terms["total"].detach())


def test_person_masks_are_dilated_and_cropped_with_the_views(masked_triplets):
    one = torch.zeros(1, 1, 9, 9)
    one[..., 4, 4] = 1
    assert dilate_masks(one, 2).sum() == 25 and dilate_masks(one, 0).sum() == 1
    triplets = load_training_triplets(masked_triplets, "train", require_masks=True)
    item = TripletDataset(triplets, "32x48", mask_dilation=3)[0]
    assert item["masks"].shape == (2, 1, 32, 48)
    assert item["masks"][0, 0].sum() == (12 + 6) * (16 + 6)  # the 12x16 box grown by 3 pixels a side
    assert collate([item, item])["masks"].shape == (2, 2, 1, 32, 48)
    assert "masks" not in TripletDataset(triplets, "32x48")[0]


def test_person_region_needs_masks_and_trains(masked_triplets, tmp_path):
    output = run(masked_triplets, tmp_path, "p", loss_region="person", loss_mask_dilation=2)
    assert output.is_file()
    data = json.loads(masked_triplets.read_text())
    for entry in data["train"].values():
        del entry["target_mask"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="missing 'target_mask'.*loss_region: person"):
        run(bare, tmp_path, "q", loss_region="person")
    run(bare, tmp_path, "i", loss_region="image")  # the whole-image loss needs no masks


def test_command_line_and_validation_of_the_training_settings():
    args = build_parser().parse_args(
        "--triplets t.json --output o.pkl --output-dir d --unet lora --unet-lora-rank 16 --vae-skip frozen "
        "--loss-region person --loss-mask-dilation 6".split()
    )
    cfg = TrainConfig(**vars(args))
    assert (cfg.unet, cfg.unet_lora_rank, cfg.vae_skip, cfg.loss_region, cfg.loss_mask_dilation) == (
        "lora", 16, "frozen", "person", 6,
    )  # fmt: skip
    defaults = TrainConfig(triplets="t", output="o", output_dir="d")
    assert (defaults.unet, defaults.unet_lora_rank, defaults.vae_skip, defaults.loss_region) == (
        "full", 8, "train", "image",
    )  # fmt: skip
    for bad, message in [
        ({"loss_region": "body"}, "loss_region"), ({"loss_mask_dilation": -1}, "loss_mask_dilation"),
        ({"unet_lora_rank": 0}, "unet_lora_rank"), ({"vae_skip": "off"}, "vae_skip"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            TrainConfig(triplets="t", output="o", output_dir="d", **bad)


# The hand-kept list RESUME_FINGERPRINT was before the fields declared it: run folder keys and run
# records depend on these names and this order.
HAND_KEPT_RESUME_FINGERPRINT = (
    "steps", "lr", "batch_size", "resolution", "long_side", "crop", "timestep", "mixed_precision",
    "max_grad_norm",
    "lambda_l2", "lambda_lpips", "lambda_gram", "gram_warmup_steps", "lpips_net", "seed",
    "use_ref", "lr_warmup_steps", "lr_schedule", "weight_decay", "adam_beta1", "adam_beta2", "adam_eps",
    "unet", "unet_lora_rank", "vae_skip", "loss_region", "loss_mask_dilation",
    "mv_attention", "gram_crop",  # issue 35's recipe settings, appended: earlier keys keep their order
)  # fmt: skip


def test_every_setting_says_whether_it_decides_the_weights():
    from hi4dfix.difix.train_config import BY_CONTENT, RESUME, RESUME_FINGERPRINT, RESUME_KINDS

    unsorted = [f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get(RESUME) not in RESUME_KINDS]
    assert not unsorted, f"TrainConfig fields that do not say how they bear on resumption: {unsorted}"
    assert RESUME_FINGERPRINT == HAND_KEPT_RESUME_FINGERPRINT
    by_content = [f.name for f in dataclasses.fields(TrainConfig) if f.metadata[RESUME] == BY_CONTENT]
    assert by_content == ["triplets", "base", "base_model_id"]


def test_setting_names_come_as_a_json_object_and_name_the_settings_in_errors():
    names = {"lr": "versions.v0.tuning.lr", "num_processes": "the gpu resource of the tuning rule"}
    args = build_parser().parse_args(
        ["--triplets", "t", "--output", "o", "--output-dir", "d", "--setting-names", json.dumps(names)]
    )
    cfg = TrainConfig(**vars(args))
    assert cfg.setting_names == names
    assert cfg.setting_name("lr") == "versions.v0.tuning.lr"
    assert cfg.setting_name("num_processes") == "the gpu resource of the tuning rule"
    assert cfg.setting_name("seed") == "--seed"  # not mapped: the option
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--triplets", "t", "--output", "o", "--output-dir", "d", "--setting-names", "lr"])
    with pytest.raises(ValueError, match="setting_names names no option of the trainer: lrr"):
        TrainConfig(triplets="t", output="o", output_dir="d", setting_names={"lrr": "versions.v0.tuning.lr"})
    with pytest.raises(ValueError, match="setting_names must map options to config keys"):
        TrainConfig(triplets="t", output="o", output_dir="d", setting_names={"lr": 3})
