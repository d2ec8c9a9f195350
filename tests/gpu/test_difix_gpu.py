"""Difix on CUDA: mixed-precision training, inference, and the full-size architecture."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from difix_fixtures import loss_and_grads
from hi4dfix.difix.config import DifixConfig
from hi4dfix.difix.infer import fix_images, load_difix
from hi4dfix.difix.model import build_random_difix
from hi4dfix.difix.official_pkl import save_checkpoint
from hi4dfix.difix.optim import can_clip_in_optimizer, clip_and_step
from hi4dfix.difix.train import train
from hi4dfix.difix.train_config import TrainConfig
from hi4dfix.difix.train_setup import prepare_model_for_training
from triplet_fixtures import SyntheticConfig, write_synthetic_triplets

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture(scope="module")
def triplets_json(tmp_path_factory):
    cfg = SyntheticConfig(height=64, width=96)
    return write_synthetic_triplets(tmp_path_factory.mktemp("syn"), n_train=4, n_test=2, seed=0, cfg=cfg)


@pytest.mark.parametrize("precision", ["no", "bf16", "fp16"])
def test_tiny_training_on_gpu_keeps_fp32_weights(triplets_json, tmp_path, precision):
    """fp16 with fp32 master weights: no 'Attempting to unscale FP16 gradients'."""
    output = train(TrainConfig(
        triplets=str(triplets_json), output=str(tmp_path / "m.pkl"), output_dir=str(tmp_path / "run"),
        steps=3, resolution="64x96", mixed_precision=precision, val_every=0, ckpt_every=2,
    ))
    payload = torch.load(output, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float32 for v in payload["state_dict_unet"].values())
    assert all(torch.isfinite(v).all() for v in payload["state_dict_unet"].values())


def read_losses(run_dir):
    with (run_dir / "train_log.csv").open(newline="") as fh:
        return [float(row["loss"]) for row in csv.DictReader(fh)]


def test_compiled_training_with_cuda_graphs_follows_eager(triplets_json, tmp_path):
    """TrainConfig.compile (CUDA graphs, channels-last by default) through steps, a validation and a
    checkpoint, in exact float32 (allow_tf32=False turns cuDNN's TF32 off too)."""
    runs = {}
    for compiled in (False, True):
        run_dir = tmp_path / f"compiled_{compiled}"
        output = train(TrainConfig(
            triplets=str(triplets_json), output=str(run_dir / "m.pkl"), output_dir=str(run_dir),
            steps=6, resolution="64x96", val_every=3, ckpt_every=3, compile=compiled, allow_tf32=False,
        ))
        runs[compiled] = (read_losses(run_dir), output)
    (eager, _), (compiled, output) = runs[False], runs[True]
    assert len(compiled) == 6 and np.isfinite(compiled).all()
    np.testing.assert_allclose(compiled, eager, rtol=5e-3)  # a step changes it by >10%
    assert (tmp_path / "compiled_True" / "checkpoints" / "model_3.pkl").is_file()
    assert (tmp_path / "compiled_True" / "val_log.csv").read_text().count("\n") == 3  # header + steps 3, 6
    assert torch.load(output, map_location="cpu", weights_only=True)["state_dict_unet"]


def test_compiled_channels_last_gradients_follow_eager(monkeypatch):
    """TrainConfig.channels_last compiled with CUDA graphs: one step's loss and gradients against
    the eager NCHW model in exact float32 (in bf16 the compiled curves depart from eager's in the
    first steps, where eager is the one further from exact float32: BENCHMARKS.md)."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    views = torch.rand(1, 2, 3, 64, 96, device="cuda", generator=torch.Generator("cuda").manual_seed(0)) * 2 - 1
    results = []
    for compiled in (False, True):
        model = build_random_difix(DifixConfig(preset="tiny", init_seed=2)).cuda()
        cfg = TrainConfig(triplets="-", output="-", output_dir="-", compile=compiled, channels_last=compiled)
        prepare_model_for_training(model, cfg, torch.device("cuda"))
        emb = model.encode_prompts(["remove degradation"])
        for _ in range(2):  # the second call replays the captured graphs
            torch.compiler.cudagraph_mark_step_begin()
            loss, grads = loss_and_grads(model, views, emb)
        results.append((loss.item(), grads))
    (eager_loss, eager), (loss, grads) = results
    assert loss == pytest.approx(eager_loss, rel=1e-5)
    for name, grad in eager.items():
        assert (grads[name] - grad).norm() <= 1e-3 * grad.norm().clamp_min(1e-12), name


def test_gpu_inference_matches_cpu(tmp_path, monkeypatch):
    # exact float32 on the GPU (train() turns TF32 on for the process)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = build_random_difix(DifixConfig(preset="tiny", init_seed=1))
    path = save_checkpoint(tmp_path / "m.pkl", model)
    image = np.random.default_rng(0).random((64, 96, 3), dtype=np.float32)
    cpu = fix_images(load_difix(path, "cpu"), [image], [image])[0]
    gpu = fix_images(load_difix(path, "cuda"), [image], [image])[0]
    bf16 = fix_images(load_difix(path, "cuda", torch.bfloat16), [image], [image])[0]
    graphs = load_difix(path, "cuda", compile_mode="reduce-overhead")
    compiled = [fix_images(graphs, [image], [image])[0] for _ in range(2)]  # the second call replays
    assert np.abs(cpu - gpu).max() < 1e-3
    assert max(np.abs(gpu - c).max() for c in compiled) < 1e-3
    assert np.abs(cpu - bf16).mean() < 0.05


def test_full_size_architecture_trains_in_bf16_at_256():
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = build_random_difix(DifixConfig(preset="sd-turbo"))
    model.set_train()
    params = [p for _, p in model.trainable_named_parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-6)
    views = torch.rand(1, 2, 3, 256, 256, device="cuda") * 2 - 1
    emb = model.encode_prompts(["remove degradation"])
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(views, emb)
        loss = torch.nn.functional.mse_loss(out.float(), views)
    loss.backward()
    optimizer.step()
    assert out.shape == views.shape and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in params)
    assert sum(p.numel() for p in params) > 8e8


def test_perceptual_losses_on_gpu(triplets_json, tmp_path, monkeypatch):
    """LPIPS + Gram on CUDA, with a VGG16 trunk placed in a private torch hub cache."""
    from torchvision.models import vgg16

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    features = vgg16(weights=None).features.state_dict()
    torch.save({f"features.{k}": v for k, v in features.items()}, cache / "vgg16-397923af.pth")
    output = train(TrainConfig(
        triplets=str(triplets_json), output=str(tmp_path / "m.pkl"), output_dir=str(tmp_path / "run"),
        steps=2, resolution="64x96", mixed_precision="bf16", lambda_lpips=1.0, lambda_gram=1.0,
        gram_warmup_steps=0, val_every=0, ckpt_every=0,
    ))
    import csv

    with open(tmp_path / "run" / "train_log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # Difix's warm-up counts completed steps: with 0, the Gram term starts at the second step
    assert output.exists() and float(rows[0]["gram"]) == 0 and all(float(r["lpips"]) > 0 for r in rows)
    assert all(float(r["gram"]) > 0 for r in rows[1:])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_clipping_inside_fused_adamw_on_gpu(precision):
    """The trainer's step end (hi4dfix.difix.optim) on CUDA's fused AdamW: the weights as with
    clip_grad_norm_ then step; fp16's gradient scaler keeps the separate clipping."""
    from accelerate import Accelerator

    from hi4dfix.difix.train import release_accelerate_state

    results = []
    for fused_clip in (True, False):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, device="cuda")) for s in [(512, 320), (320,), (64, 32, 3, 3)]]
        accelerator = Accelerator(mixed_precision=precision)
        optimizer = accelerator.prepare(torch.optim.AdamW(params, lr=1e-3, fused=True))
        assert can_clip_in_optimizer(accelerator, optimizer) == (precision == "bf16")
        for i in range(3):
            gen = torch.Generator("cuda").manual_seed(i)
            # gradients through backward (fp16's scaler must have scaled the loss): each p's is g
            grads = [torch.randn(p.shape, device="cuda", generator=gen) * 0.1 for p in params]
            accelerator.backward(sum((p * g).sum() for p, g in zip(params, grads)))
            clip_and_step(accelerator, optimizer, params, 1.0, fused_clip=fused_clip)
            optimizer.zero_grad(set_to_none=True)
        results.append(params)
        release_accelerate_state()
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu_slow  # two compilations, the second with dynamic shapes: over 3 minutes on an H200 machine
def test_pipeline_fixer_compiles_once_per_processing_size(tmp_path, monkeypatch):
    """difix.inference's defaults on CUDA (compiled with CUDA graphs): every batch has one shape
    (a short last batch is padded), so graphs are captured once per processing size, not per
    image; the images match eager ones."""
    from hi4dfix.difix.infer import difix_fixer

    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    captures = []
    capture_begin = torch.cuda.CUDAGraph.capture_begin

    def counting_capture_begin(self, *args, **kwargs):
        captures.append(1)
        return capture_begin(self, *args, **kwargs)

    monkeypatch.setattr(torch.cuda.CUDAGraph, "capture_begin", counting_capture_begin)
    path = save_checkpoint(tmp_path / "m.pkl", build_random_difix(DifixConfig(preset="tiny", init_seed=1)))
    rng = np.random.default_rng(0)
    small = [rng.random((64, 96, 3), dtype=np.float32) for _ in range(7)]  # batches of 4: 4 + 3 (padded)
    large = [rng.random((96, 128, 3), dtype=np.float32) for _ in range(5)]
    options = {"batch_size": 4, "dtype": "float32"}
    compiled = difix_fixer(path, inference=options)  # compile: auto -> on, on CUDA
    eager = difix_fixer(path, inference={**options, "compile": False})
    assert compiled.fixed_shapes and compiled.model._compiled_fix is not None and eager.model._compiled_fix is None

    out = compiled(small, small)  # warm-up run, then the capture
    after_small = len(captures)
    out += compiled(small, small) + compiled(small[:3], small[:3])
    assert after_small > 0 and len(captures) == after_small  # replayed, not captured again
    out_large = compiled(large, large)
    after_large = len(captures)
    compiled(large, large)
    assert after_large > after_small and len(captures) == after_large
    reference = eager(small, small) + eager(small, small) + eager(small[:3], small[:3])
    assert max(np.abs(a - b).max() for a, b in zip(out, reference)) < 1e-3
    assert max(np.abs(a - b).max() for a, b in zip(out_large, eager(large, large))) < 1e-3
    timing = compiled.timing()
    assert timing.first_views == 8 and timing.views == 3 + 7 + 3 + 1 + 5  # the first batch of each size apart

    # the pipeline's default dtype on CUDA (eager: a third compilation would add a minute to the suite)
    bf16 = difix_fixer(path, inference={"batch_size": 4, "compile": False})
    assert bf16.model.vae.dtype == torch.bfloat16
    assert np.mean([np.abs(a - b).mean() for a, b in zip(bf16(small, small), reference)]) < 0.05
