"""Difix training: data, losses, the training entry point, kill-and-resume, pre-training."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hi4dfix.difix import checkpoint as ck
from hi4dfix.difix import pretrained_dir
from hi4dfix.difix.data import (
    StepSampler,
    TripletDataset,
    load_training_triplets,
    model_input_size,
    parse_resolution,
    processing_size,
    snap_resolution,
)
from hi4dfix.difix.infer import fix_images, load_difix
from hi4dfix.difix.losses import (
    BackboneUnavailable,
    DifixLoss,
    LossConfig,
    build_lpips,
    build_vgg16_features,
    gram_loss,
    imagenet_normalise,
    random_crop_box,
)
from hi4dfix.difix.train import build_parser, effective_batch_message, train
from hi4dfix.difix.train_config import TrainConfig
from hi4dfix.difix.train_setup import set_tf32
from triplet_fixtures import SyntheticConfig, synthetic_triplet, write_synthetic_triplets

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
SMALL = SyntheticConfig(height=32, width=48, max_view_shift=3)


@pytest.fixture(scope="module")
def triplets_json(tmp_path_factory):
    return write_synthetic_triplets(tmp_path_factory.mktemp("synthetic"), n_train=6, n_test=2, seed=1, cfg=SMALL)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------- data


def test_synthetic_triplets_are_deterministic_and_shifted():
    a = synthetic_triplet(4, 2, SMALL)
    b = synthetic_triplet(4, 2, SMALL)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    image, target, ref = a
    assert image.shape == target.shape == ref.shape == (32, 48, 3)
    assert not np.array_equal(target, ref) and not np.array_equal(image, target)
    assert not np.array_equal(synthetic_triplet(5, 2, SMALL)[1], target)


def test_read_triplets_resolves_and_reports_errors(triplets_json, tmp_path):
    train_items = load_training_triplets(triplets_json, "train")
    assert len(train_items) == 6 and all(t.image.is_file() and t.ref_image.is_file() for t in train_items)
    assert load_training_triplets(triplets_json, "missing_split") == []
    data = json.loads(Path(triplets_json).read_text())
    first = next(iter(data["train"]))
    data["train"][first]["image"] = "nowhere.png"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(FileNotFoundError, match=f"{first}.*nowhere.png"):
        load_training_triplets(bad, "train")
    del data["train"][first]["ref_image"]
    data["train"][first]["image"] = data["train"][first]["target_image"]
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="ref_image"):
        load_training_triplets(bad, "train")
    assert load_training_triplets(bad, "train", require_ref=False)[0].ref_image is None
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_training_triplets(tmp_path / "missing.json", "train")


def test_tf32_off_means_exact_float32_convolutions_too():
    """cuDNN's convolutions default to TF32: allow_tf32=False must turn them off as well."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    try:
        matmul.allow_tf32 = cudnn.allow_tf32 = True
        set_tf32(torch.device("cpu"), False)  # no CUDA device: the process's settings stay
        assert matmul.allow_tf32 and cudnn.allow_tf32
        set_tf32(torch.device("cuda"), False)
        assert not matmul.allow_tf32 and not cudnn.allow_tf32
        set_tf32(torch.device("cuda"), True)
        assert matmul.allow_tf32 and cudnn.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def test_resolution_parsing_and_snapping():
    assert parse_resolution("112x160") == (112, 160)
    assert parse_resolution(512) == (512, 512)
    assert snap_resolution((100, 150)) == (96, 144)
    assert snap_resolution((5, 9)) == (16, 16)
    with pytest.raises(ValueError):
        parse_resolution("big")


def test_processing_size_keeps_the_aspect_and_snaps_to_16():
    assert processing_size(1280, 940, 512) == (512, 384)  # Hi4D frames (940x1280 WxH) at 512
    assert processing_size(160, 120, 160) == (160, 128)  # the embedded default's frames: no downscale
    assert processing_size(64, 48, 48) == (48, 32)
    assert processing_size(940, 1280, 512) == (384, 512)  # landscape: width is the long side
    assert model_input_size(1280, 940, None, 512) == (512, 384)
    assert model_input_size(1280, 940, "512", 512) == (512, 512)  # a fixed resolution overrides
    assert model_input_size(1280, 940) == (1280, 944)  # neither: the own size snapped
    with pytest.raises(ValueError, match="long_side"):
        processing_size(10, 10, 0)


def test_dataset_at_a_long_side(triplets_json):
    ds = TripletDataset(load_training_triplets(triplets_json, "train"), long_side=32)
    assert ds[0]["views"].shape == ds[0]["targets"].shape == (2, 3, 16, 32)  # 32x48 images


def test_dataset_items_hold_image_and_reference_views(triplets_json):
    ds = TripletDataset(load_training_triplets(triplets_json, "train"), (32, 48))
    item = ds[0]
    assert item["views"].shape == item["targets"].shape == (2, 3, 32, 48)
    assert torch.equal(item["views"][1], item["targets"][1])  # the reference is its own target
    assert item["views"].min() >= -1 and item["views"].max() <= 1


def test_step_sampler_resumes_the_same_stream():
    full = list(StepSampler(7, 3, 1, 10, seed=2))
    tail = list(StepSampler(7, 3, 5, 10, seed=2))
    assert tail == full[4 * 3 :]
    assert sorted(full[:7]) == list(range(7))  # the first epoch is a permutation
    rank1 = list(StepSampler(7, 3, 1, 10, seed=2, rank=1, world_size=2))
    assert rank1 != list(StepSampler(7, 3, 1, 10, seed=2, rank=0, world_size=2))


def test_random_crops_are_one_window_per_sample_drawn_from_the_step(triplets_json):
    triplets = load_training_triplets(triplets_json, "train")
    whole = TripletDataset(triplets, (32, 48))
    cropped = TripletDataset(triplets, (32, 48), crop=(16, 16), seed=3)
    keys = list(StepSampler(len(triplets), 2, 1, 4, seed=3, with_draw=True))
    assert [index for index, _ in keys] == list(StepSampler(len(triplets), 2, 1, 4, seed=3))
    assert [draw for _, draw in keys] == list(range(8))  # every sample of the stream its own draw
    # a resumed run (from step 3) draws the same windows for the same samples
    assert list(StepSampler(len(triplets), 2, 3, 4, seed=3, with_draw=True)) == keys[4:]
    windows = set()
    for key in keys:
        item, full = cropped[key], whole[key[0]]
        assert item["views"].shape == item["targets"].shape == (2, 3, 16, 16)
        # the same window of every view and target: find it in the whole item
        found = [
            (top, left)
            for top in range(32 - 16 + 1)
            for left in range(48 - 16 + 1)
            if torch.equal(full["views"][..., top : top + 16, left : left + 16], item["views"])
            and torch.equal(full["targets"][..., top : top + 16, left : left + 16], item["targets"])
        ]
        assert found, key
        windows.add(found[0])
        assert torch.equal(cropped[key]["views"], item["views"])  # a pure function of the key
    assert len(windows) > 1
    with pytest.raises(ValueError, match="with_draw"):
        cropped[0]
    with pytest.raises(ValueError, match="crop 40x16 is larger"):
        TripletDataset(triplets, (32, 48), crop=(40, 16))[(0, 0)]


# ----------------------------------------------------------------------------- losses


def test_missing_backbone_is_an_error_naming_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(BackboneUnavailable, match="lambda_lpips.*vgg16-397923af.pth"):
        DifixLoss(LossConfig(lambda_lpips=1.0, lambda_gram=0.0))
    with pytest.raises(BackboneUnavailable, match="lambda_gram"):
        DifixLoss(LossConfig(lambda_lpips=0.0, lambda_gram=0.5))
    loss = DifixLoss(LossConfig(lambda_lpips=0.0, lambda_gram=0.0))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    terms = loss(x, torch.zeros_like(x), step=1)
    assert torch.isclose(terms["total"], (x**2).mean())


def test_lpips_and_gram_use_cached_backbone(tmp_path, monkeypatch):
    """With a VGG16 file in the torch hub cache, both perceptual terms are built and active."""
    from torchvision.models import vgg16

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    features = vgg16(weights=None).features.state_dict()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in features.items()}, cache / "vgg16-397923af.pth")
    vgg = build_vgg16_features()
    assert torch.equal(vgg[0].weight, features["0.weight"])
    lp = build_lpips("vgg")
    assert torch.equal(lp.net.slice1[0].weight, features["0.weight"])
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    assert gram_loss(imagenet_normalise(x), imagenet_normalise(x), vgg) == 0
    loss = DifixLoss(LossConfig(gram_warmup_steps=3, gram_crop=16))
    # Difix's warm-up: on once more than 3 steps are done, i.e. from the 5th (1-based) step
    before, after = loss(x, y, step=4), loss(x, y, step=5, generator=torch.Generator().manual_seed(0))
    assert before["gram"] == 0 and after["gram"] > 0 and after["lpips"] > 0
    assert torch.isclose(after["total"], after["l2"] + after["lpips"] + after["gram"])


# The released loss.py, written out for the test: VGG16 relu layers and weights, one Gram matrix
# of everything it is given, mean squared difference divided by d*h*w of one feature map.
RELEASED_LAYERS = {"3": 1.0 / 2.6, "8": 1.0 / 4.8, "15": 1.0 / 3.7, "22": 1.0 / 5.6, "29": 10.0 / 1.5}


def released_gram_loss(style, target, model):
    def features(image):
        out, x = {}, image
        for name, layer in model._modules.items():
            x = layer(x)
            if name in RELEASED_LAYERS:
                out[name] = x
        return out

    def gram(t):
        b, d, h, w = t.size()
        t = t.view(b * d, h * w)
        return torch.mm(t, t.t())

    style_features, target_features = features(style), features(target)
    total = 0
    for name, weight in RELEASED_LAYERS.items():
        _, d, h, w = target_features[name].shape
        total += weight * torch.mean((gram(target_features[name]) - gram(style_features[name])) ** 2) / (d * h * w)
    return total


@pytest.fixture
def vgg_features(tmp_path, monkeypatch):
    """build_vgg16_features on a random-weights VGG16 file in a private torch hub cache."""
    from torchvision.models import vgg16

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    features = {f"features.{k}": v for k, v in vgg16(weights=None).features.state_dict().items()}
    torch.save(features, cache / "vgg16-397923af.pth")
    return build_vgg16_features()


def test_gram_loss_stacks_the_views_of_a_sample_as_difix(vgg_features):
    gen = torch.Generator().manual_seed(0)
    pred = imagenet_normalise(torch.rand(2, 2, 3, 32, 32, generator=gen) * 2 - 1)  # (B, V, 3, H, W)
    target = imagenet_normalise(torch.rand(2, 2, 3, 32, 32, generator=gen) * 2 - 1)
    with torch.no_grad():
        ours = gram_loss(pred.flatten(0, 1), target.flatten(0, 1), vgg_features, num_views=2)
        # one sample (image + reference) is exactly the released loss on its two views
        first = gram_loss(pred[0], target[0], vgg_features, num_views=2)
        per_sample = [released_gram_loss(pred[i], target[i], vgg_features) for i in range(2)]
        per_view = gram_loss(pred.flatten(0, 1), target.flatten(0, 1), vgg_features, num_views=1)
    torch.testing.assert_close(first, per_sample[0], rtol=1e-4, atol=0)
    torch.testing.assert_close(ours, (per_sample[0] + per_sample[1]) / 2, rtol=1e-4, atol=0)
    # the cross-view blocks count: a Gram matrix per view is another loss
    assert not torch.isclose(ours, per_view, rtol=1e-2)


def test_difix_loss_takes_views_of_samples(vgg_features):
    loss = DifixLoss(LossConfig(lambda_lpips=0.0, gram_warmup_steps=0, gram_crop=16))
    gen = torch.Generator().manual_seed(1)
    pred, target = (
        torch.rand(2, 2, 3, 24, 24, generator=gen) * 2 - 1,
        torch.rand(2, 2, 3, 24, 24, generator=gen) * 2 - 1,
    )
    crop_gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731 - the same crop for both calls
    terms = loss(pred, target, step=2, generator=crop_gen())
    top, left, ch, cw = random_crop_box(24, 24, 16, crop_gen())
    crop = (slice(None), slice(None), slice(top, top + ch), slice(left, left + cw))
    expected = gram_loss(
        imagenet_normalise(pred.flatten(0, 1))[crop], imagenet_normalise(target.flatten(0, 1))[crop], vgg_features, 2
    )
    torch.testing.assert_close(terms["gram"], expected)
    torch.testing.assert_close(terms["l2"], ((pred - target) ** 2).mean())
    assert loss(pred, target, step=1)["gram"] == 0  # no step done yet: 0 > 0 is false, as in Difix


# ----------------------------------------------------------------------------- training


def small_config(triplets_json, tmp_path, **overrides) -> TrainConfig:
    base = dict(
        triplets=str(triplets_json),
        output=str(tmp_path / "tuned.pkl"),
        output_dir=str(tmp_path / "run"),
        steps=4,
        resolution="30x50",
        val_every=2,
        ckpt_every=2,
        batch_size=1,
    )
    base.update(overrides)
    return TrainConfig(**base)


def test_train_writes_model_logs_and_checkpoints(triplets_json, tmp_path, capfd):
    cfg = small_config(triplets_json, tmp_path)
    output = train(cfg)
    err = capfd.readouterr().err
    assert "resolution 30x50 snapped to 32x48" in err
    rows = read_csv(tmp_path / "run" / "train_log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["loss"])) and float(r["lpips"]) == 0 for r in rows)
    val = read_csv(tmp_path / "run" / "val_log.csv")
    assert [int(r["step"]) for r in val] == [2, 4] and all(float(r["val_psnr"]) > 0 for r in val)
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["model_2.pkl"]
    payload = torch.load(output, map_location="cpu", weights_only=True)
    assert payload["hi4dfix_train_state"]["step"] == 4
    # the final model holds weights only; the optimizer state is in the resumable checkpoints
    assert payload["optimizer"] == {"state": {}, "param_groups": []}
    assert "rng" not in payload["hi4dfix_train_state"]
    assert torch.load(tmp_path / "run" / "checkpoints" / "model_2.pkl", weights_only=True)["optimizer"]["state"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["resolution"] == [32, 48]
    # the tuned model differs from where it started and runs in inference
    model = load_difix(output)
    start = ck.load_model("tiny-random")
    assert not torch.equal(model.unet.conv_in.weight, start.unet.conv_in.weight)
    image = np.random.default_rng(0).random((32, 48, 3), dtype=np.float32)
    assert fix_images(model, [image], [image])[0].shape == image.shape

    # rerunning with other settings in the same output_dir refuses to resume
    with pytest.raises(ValueError, match="settings changed.*lr"):
        train(small_config(triplets_json, tmp_path, lr=1e-2, steps=6))


def test_training_at_a_long_side_logs_its_processing_size(triplets_json, tmp_path):
    import logging

    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("hi4dfix.difix.train")
    logger.addHandler(handler)
    try:
        train(small_config(triplets_json, tmp_path, resolution=None, long_side=32, steps=1, val_every=0, ckpt_every=0))
    finally:
        logger.removeHandler(handler)
    assert any("processing size 16x32 (HxW) for 32x48 training images (long side 32" in m for m in messages)
    # the effective batch (processes x per-process batch) and the cross-view attention are in the log
    assert any(
        m.startswith("effective batch 1 (1 process x batch_size 1)") and "1 samples over 1 steps" in m
        and "cross-view attention in training: on" in m
        for m in messages
    ), messages
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["resolution"] == [16, 32] and summary["config"]["long_side"] == 32
    assert summary["effective_batch"] == 1 and summary["config"]["mv_attention"] is True
    # the tiny preset's default long side is the embedded default's frame size
    assert TrainConfig(triplets="t", output="o", output_dir="d").resolved("tiny").long_side == 160
    assert TrainConfig(triplets="t", output="o", output_dir="d").resolved("sd-turbo").long_side == 512


def test_effective_batch_message_counts_processes_times_batch():
    assert effective_batch_message(4, 2).startswith("effective batch 8 (2 processes x batch_size 4)")
    assert effective_batch_message(1, 1).startswith("effective batch 1 (1 process x batch_size 1)")


def test_training_without_cross_view_attention_and_a_gram_crop(triplets_json, tmp_path, train_messages):
    cfg = small_config(triplets_json, tmp_path, steps=1, val_every=0, ckpt_every=0, batch_size=2, mv_attention=False)
    train(cfg)
    text = said(train_messages)
    assert "effective batch 2 (1 process x batch_size 2)" in text
    assert "cross-view attention in training: off" in text
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["mv_attention"] is False and summary["effective_batch"] == 2
    with pytest.raises(ValueError, match="gram_crop must be >= 16"):
        TrainConfig(triplets="t", output="o", output_dir="d", gram_crop=8)
    args = build_parser().parse_args(
        ["--triplets", "t", "--output", "o", "--output-dir", "d", "--gram-crop", "200", "--mv-attention", "false"]
    )
    assert (TrainConfig(**vars(args)).gram_crop, TrainConfig(**vars(args)).mv_attention) == (200, False)
    # the defaults are the embedded default's: cross-view attention on, a 400-pixel Gram crop
    default = TrainConfig(triplets="t", output="o", output_dir="d")
    assert (default.mv_attention, default.gram_crop) == (True, 400)


def test_timestep_setting_reaches_the_tuned_model(triplets_json, tmp_path):
    output = train(small_config(triplets_json, tmp_path, steps=1, val_every=0, ckpt_every=0, timestep=299))
    model = ck.load_model(output)
    assert model.difix_config.timestep == 299 and int(model.timesteps) == 299


def test_training_on_crops_with_a_cosine_schedule(triplets_json, tmp_path):
    train(small_config(triplets_json, tmp_path, crop="16x16", lr_schedule="cosine", lr=1e-3, batch_size=2, val_every=0))
    rows = read_csv(tmp_path / "run" / "train_log.csv")
    lrs = [float(row["lr"]) for row in rows]
    assert lrs == pytest.approx([1e-3 * 0.5 * (1 + np.cos(np.pi * step / 4)) for step in range(1, 5)])
    assert all(np.isfinite(float(row["loss"])) for row in rows)


def test_bf16_on_cpu_trains_with_fp32_weights(triplets_json, tmp_path):
    output = train(small_config(triplets_json, tmp_path, steps=2, mixed_precision="bf16", val_every=0, ckpt_every=0))
    payload = torch.load(output, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float32 for v in payload["state_dict_unet"].values())
    rows = read_csv(tmp_path / "run" / "train_log.csv")
    assert len(rows) == 2 and all(np.isfinite(float(r["loss"])) for r in rows)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_fp16_on_cpu_is_refused(triplets_json, tmp_path):
    with pytest.raises(ValueError, match="fp16.*GPU"):
        train(small_config(triplets_json, tmp_path, mixed_precision="fp16"))


def test_command_line_maps_onto_train_config():
    args = build_parser().parse_args(
        [
            "--triplets",
            "t.json",
            "--output",
            "o.pkl",
            "--output-dir",
            "d",
            "--steps",
            "9",
            "--lr",
            "1e-4",
            "--mixed-precision",
            "bf16",
            "--use-ref",
            "false",
            "--lambda-lpips",
            "0",
        ]
    )
    cfg = TrainConfig(**vars(args))
    assert (cfg.steps, cfg.lr, cfg.mixed_precision, cfg.use_ref, cfg.lambda_lpips) == (9, 1e-4, "bf16", False, 0.0)
    assert cfg.resolved("tiny").lambda_gram == 0.0 and cfg.resolved("sd-turbo").lambda_gram == 1.0


def test_killed_run_resumes_from_its_last_checkpoint(triplets_json, tmp_path):
    """SIGKILL after the first checkpoint (a preempted job), rerun with the same arguments."""
    run_dir = tmp_path / "run"
    output = tmp_path / "tuned.pkl"
    args = [
        sys.executable,
        "-m",
        "hi4dfix.difix.train",
        "--triplets",
        str(triplets_json),
        "--output",
        str(output),
        "--output-dir",
        str(run_dir),
        "--steps",
        "60",
        "--ckpt-every",
        "3",
        "--val-every",
        "0",
        "--resolution",
        "16x32",
        "--seed",
        "3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    first = run_dir / "checkpoints" / "model_3.pkl"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists(), proc.stderr.read().decode()[-2000:]
    assert not output.exists(), "the first run finished before it could be killed"
    killed_at = max(int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("model_*.pkl"))
    assert killed_at < 60

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"(step {killed_at})" in done.stderr
    payload = torch.load(output, map_location="cpu", weights_only=True)
    assert payload["hi4dfix_train_state"]["step"] == 60
    steps = [int(r["step"]) for r in read_csv(run_dir / "train_log.csv")]
    assert steps == list(range(1, 61))  # no step lost or logged twice
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from_step"] == killed_at


def test_resumed_training_matches_uninterrupted(triplets_json, tmp_path):
    """Resuming from a checkpoint gives the same weights as never stopping (in-process)."""
    full = train(small_config(triplets_json, tmp_path / "a", steps=4, ckpt_every=2, val_every=0))
    part_cfg = small_config(triplets_json, tmp_path / "b", steps=4, ckpt_every=2, val_every=0)
    train(part_cfg)
    (tmp_path / "b" / "tuned.pkl").unlink()
    resumed = train(part_cfg)
    a = torch.load(full, map_location="cpu", weights_only=True)["state_dict_unet"]
    b = torch.load(resumed, map_location="cpu", weights_only=True)["state_dict_unet"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def train_messages():
    """The trainer's log messages (its stderr handler is bound to the stream of the first test that
    trained, so capfd does not see them in later tests)."""
    import logging

    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("hi4dfix.difix.train")
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


def said(messages: list[str]) -> str:
    """The messages so far, as one text, and forget them."""
    text = "\n".join(messages)
    messages.clear()
    return text


def test_runs_per_fingerprint_keep_their_models_and_start_fresh_when_the_data_changes(tmp_path, train_messages):
    """The same data and settings continue their folder; a changed image (same paths, same triplets
    file) starts fresh in a folder of its own, saying what changed, and the first model stays."""
    from hi4dfix.difix.runs import past_runs
    from hi4dfix.io import read_image, write_image

    triplets = write_synthetic_triplets(tmp_path / "data", n_train=3, n_test=1, seed=2, cfg=SMALL)
    copied_log = tmp_path / "copied_train_log.csv"
    cfg = small_config(
        triplets, tmp_path, steps=3, val_every=0, run_per_fingerprint=True, output_train_log=str(copied_log)
    )
    output = train(cfg)
    (first,) = past_runs(tmp_path / "run")
    assert first.model is not None and os.path.samefile(output, first.model)
    assert read_csv(copied_log) == read_csv(first.folder / "train_log.csv")
    err = said(train_messages)
    assert f"starting fresh in {first.folder} (no earlier run" in err
    first_weights = torch.load(first.model, weights_only=True)["state_dict_unet"]

    output.unlink()  # as Snakemake does before it reruns a job
    train(cfg)
    err = said(train_messages)
    assert f"run folder {first.folder}: the training data, base and settings of an earlier run" in err
    assert "resuming from" in err and f"last good model of this tuning: {first.model}" in err
    resumed = torch.load(first.model, weights_only=True)["state_dict_unet"]
    assert all(torch.equal(first_weights[k], resumed[k]) for k in first_weights)
    first_bytes = first.model.read_bytes()

    image = tmp_path / "data" / "train" / "train_00000_image.png"
    pixels = read_image(image)
    pixels[0, 0] = 1.0 - pixels[0, 0]
    write_image(image, pixels)
    train(cfg)
    err = said(train_messages)
    runs = past_runs(tmp_path / "run")
    assert len(runs) == 2 and runs[0].folder == first.folder
    second = runs[1]
    assert f"starting fresh in {second.folder}: since the run in {first.folder}, the training data" in err
    assert "resuming from" not in err
    assert [int(row["step"]) for row in read_csv(second.folder / "train_log.csv")] == [1, 2, 3]
    assert first.model.read_bytes() == first_bytes and os.path.samefile(output, second.model)

    # another setting: a third folder, the change named by the config key the caller maps it to
    train(small_config(triplets, tmp_path, steps=3, val_every=0, run_per_fingerprint=True, seed=5))
    assert "seed 0 -> 5" in said(train_messages)
    assert len(past_runs(tmp_path / "run")) == 3


def test_a_refused_resume_names_the_config_key_and_a_broken_base_names_its_file(triplets_json, tmp_path):
    keys = {"base": "difix.base", "lr": "versions.v0.tuning.lr", "steps": "versions.v0.tuning.steps"}
    train(small_config(triplets_json, tmp_path, steps=3, val_every=0, setting_names=keys))
    (tmp_path / "tuned.pkl").unlink()
    with pytest.raises(ValueError, match="settings changed") as refused:
        train(small_config(triplets_json, tmp_path, steps=3, val_every=0, setting_names=keys, lr=1e-2))
    assert "versions.v0.tuning.lr 0.0003 -> 0.01" in str(refused.value)
    assert "output_dir" not in str(refused.value) and "output-dir" not in str(refused.value)

    missing = tmp_path / "nowhere" / "model.pkl"
    with pytest.raises(OSError, match=f"base model \\(difix.base\\) {missing}"):
        train(small_config(triplets_json, tmp_path / "b", steps=1, setting_names=keys, base=str(missing)))


# ----------------------------------------------------------------------------- pre-training


def test_pretrain_writes_a_loadable_base_and_scores_it_on_unseen_scenes(tmp_path):
    from hi4dfix.difix.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        output=str(tmp_path / "base.pkl"),
        work_dir=str(tmp_path / "work"),
        resolution="32x48",
        n_train_scenes=2,
        n_test_scenes=2,
        workers=1,
        fit_steps=2,
        num_gaussians=100,
        vae_steps=2,
        vae_batch_size=2,
        vae_crop=32,
        difix_steps=2,
        difix_batch_size=1,
        val_every=0,
        ckpt_every=0,
        device="cpu",
    )
    output = pretrain(cfg)
    payload = torch.load(output, map_location="cpu", weights_only=True)
    config = payload["hi4dfix_config"]
    assert config["preset"] == "tiny" and config["latent_sampling"] == "mode"
    assert config["architecture"]["vae"]["scaling_factor"] != 0.18215  # set from the data
    model = load_difix(output)
    image = np.random.default_rng(0).random((32, 48, 3), dtype=np.float32)
    assert np.isfinite(fix_images(model, [image], [image])[0]).all()
    # the test split: every view of both unseen scenes, raw and base, and the paired summary
    scores = pd.read_csv(tmp_path / "ood_test.csv")
    train_scenes = {t.id.split("/")[0] for t in load_training_triplets(tmp_path / "work/ood/triplets.json", "train")}
    assert len(scores) == 2 * 7 and scores["scene"].nunique() == 2 and not set(scores["scene"]) & train_scenes
    assert np.isfinite(scores[["psnr_raw", "psnr_base", "ssim_raw", "ssim_base"]].to_numpy()).all()
    summary = (tmp_path / "ood_test.md").read_text()
    delta = scores.groupby("scene").apply(lambda s: (s.psnr_base - s.psnr_raw).mean()).mean()
    assert "| psnr |" in summary and f"{delta:.4f}" in summary


# ----------------------------------------------------------------------------- the final model and Difix's loaders


def difix_style_load(path: Path, architecture) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The ``pretrained_path`` branch of ``Difix.__init__`` in the released src/model.py, on the
    tiny architecture: plain UNet and VAE, skip convs, a LoRA adapter from the pkl's rank and
    targets, then the pkl's tensors over the fresh state dicts (its ``optimizer`` is not read)."""
    from peft import LoraConfig

    from hi4dfix.difix.model import attach_skip_convs, build_unet, build_vae

    sd = torch.load(path, map_location="cpu", weights_only=True)
    vae, unet = build_vae(architecture.vae), build_unet(architecture.unet)
    attach_skip_convs(vae)
    config = LoraConfig(r=sd["rank_vae"], init_lora_weights="gaussian", target_modules=sd["vae_lora_target_modules"])
    vae.add_adapter(config, adapter_name="vae_skip")
    vae_state = vae.state_dict()
    vae_state.update(sd["state_dict_vae"])
    vae.load_state_dict(vae_state)
    unet_state = unet.state_dict()
    unet_state.update(sd["state_dict_unet"])
    unet.load_state_dict(unet_state)
    return unet, vae


def test_final_model_is_weights_only_and_loads_both_ways(triplets_json, tmp_path):
    output = train(small_config(triplets_json, tmp_path, steps=3, ckpt_every=2, val_every=0))
    checkpoint = tmp_path / "run" / "checkpoints" / "model_2.pkl"
    final = torch.load(output, map_location="cpu", weights_only=True)
    full = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert final["optimizer"] == {"state": {}, "param_groups": []} and full["optimizer"]["state"]
    moments = sum(v.numel() * v.element_size() for s in full["optimizer"]["state"].values() for v in s.values())
    assert output.stat().st_size < checkpoint.stat().st_size - 0.9 * moments

    # hi4dfix's pkl read as Difix reads it: the same tensors end up in the UNet and VAE
    model = ck.load_model(output)
    unet, vae = difix_style_load(output, model.difix_config.architecture)
    for name, value in unet.state_dict().items():
        assert torch.equal(value, model.unet.state_dict()[name]), name
    ours = model.vae.state_dict()
    assert all(
        torch.equal(value, ours[name]) for name, value in vae.state_dict().items() if "lora" in name or "skip" in name
    )

    # and a pkl written as Difix writes it (official keys only, a real AdamW state) loads here
    official = {k: v for k, v in full.items() if not k.startswith("hi4dfix")}
    torch.save(official, tmp_path / "model_official.pkl")
    base = pretrained_dir.save_pretrained_dir(model, tmp_path / "base")
    loaded = ck.load_model(tmp_path / "model_official.pkl", base_model_id=str(base))
    assert all(torch.equal(v, full["state_dict_unet"][k]) for k, v in loaded.unet.state_dict().items())


def test_retraining_the_same_run_writes_the_same_model_file(triplets_json, tmp_path):
    """A rerun from scratch with the same data and settings gives the same model.pkl, byte for byte."""
    import hashlib
    import shutil

    cfg = small_config(triplets_json, tmp_path, steps=2, ckpt_every=1, val_every=0, run_per_fingerprint=True)
    first = hashlib.sha256(train(cfg).read_bytes()).hexdigest()
    shutil.rmtree(tmp_path / "run")
    (tmp_path / "tuned.pkl").unlink()
    assert hashlib.sha256(train(cfg).read_bytes()).hexdigest() == first
