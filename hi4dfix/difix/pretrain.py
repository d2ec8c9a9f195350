"""Pre-train the tiny Difix base model on out-of-domain synthetic data.

``python -m hi4dfix.difix.pretrain --output base.pkl --work-dir DIR`` (or ``pretrain(cfg)``):

1. the tiny VAE is trained as a plain autoencoder on clean procedural images (SD-Turbo's
   VAE is a trained autoencoder too; Difix keeps its base weights frozen), and its latent
   scaling factor is set so that scaled latents have unit variance;
2. Difix itself (UNet, VAE LoRA, skip convolutions) is trained on synthetic triplets
   (``pretrain_data``) through the one training entry point, ``train.train``.

The result is a tiny ``model_*.pkl`` that already removes generic artifacts, so that
fine-tuning on Hi4D is compared against a real baseline.  Deterministic by seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hi4dfix.difix.checkpoint import save_checkpoint
from hi4dfix.difix.config import DifixConfig
from hi4dfix.difix.data import parse_resolution, snap_resolution
from hi4dfix.difix.model import DifixModel, build_random_difix, decode_with_skips, encode_with_skips, skip_convs
from hi4dfix.difix.pretrain_data import SyntheticConfig, procedural_scene, write_synthetic_triplets
from hi4dfix.difix.train import TrainConfig, train

LOG = logging.getLogger("hi4dfix.difix.pretrain")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class PretrainConfig:
    output: str = field(metadata=_help("base model pkl to write"))
    work_dir: str = field(metadata=_help("synthetic data, stage checkpoints and logs (a rerun resumes)"))
    seed: int = field(default=0, metadata=_help("seed of data, initialisation and training"))
    resolution: str = field(default="112x160", metadata=_help("'HxW' of the synthetic images (multiple of 16)"))
    n_train: int = field(default=192, metadata=_help("synthetic training triplets"))
    n_test: int = field(default=16, metadata=_help("synthetic validation triplets"))
    vae_steps: int = field(default=300, metadata=_help("autoencoder steps (stage 1)"))
    vae_batch_size: int = field(default=8, metadata=_help("autoencoder batch size"))
    vae_lr: float = field(default=1e-3, metadata=_help("autoencoder learning rate"))
    vae_crop: int = field(default=64, metadata=_help("side of the square clean crops the autoencoder trains on"))
    difix_steps: int = field(default=300, metadata=_help("Difix steps (stage 2)"))
    difix_batch_size: int = field(default=2, metadata=_help("Difix batch size"))
    difix_lr: float = field(default=5e-4, metadata=_help("Difix learning rate"))
    val_every: int = field(default=100, metadata=_help("stage-2 validation frequency"))
    ckpt_every: int = field(default=100, metadata=_help("stage-2 checkpoint frequency"))

    def __post_init__(self) -> None:
        for name in ("n_train", "vae_steps", "vae_batch_size", "difix_steps", "difix_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"PretrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        size = parse_resolution(self.resolution)
        if snap_resolution(size) != size:
            raise ValueError(f"PretrainConfig.resolution {self.resolution} must be a multiple of 16")


def clean_image_batch(seed: int, step: int, batch_size: int, size: tuple[int, int], synth: SyntheticConfig) -> torch.Tensor:
    """(B, 3, H, W) clean procedural images in [-1, 1], a pure function of (seed, step)."""
    images = []
    for slot in range(batch_size):
        rng = np.random.default_rng([seed, 1_000_003, step, slot])
        image = procedural_scene(rng, size[0], size[1], synth.min_shapes, synth.max_shapes)
        images.append(torch.from_numpy(image).permute(2, 0, 1))
    return torch.stack(images) * 2.0 - 1.0


def train_autoencoder(model: DifixModel, cfg: PretrainConfig) -> list[float]:
    """Stage 1: train the VAE base weights and skip convolutions as an autoencoder.

    The reconstruction is asked both with and without the skip path: with skips the tiny
    VAE reaches ~27 dB within a few hundred CPU steps (its 8x latent alone stays lossy),
    without them the latent path keeps a meaning for the UNet.  Latents are the posterior
    mean (the tiny preset uses ``latent_sampling="mode"``).  Skip convolutions start from a
    Kaiming init here; the official 1e-5 init suits an already trained VAE, not this one.
    """
    vae = model.vae
    crop = (cfg.vae_crop, cfg.vae_crop)
    synth = SyntheticConfig(height=crop[0], width=crop[1])
    model.set_eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for conv in skip_convs(vae):
            torch.nn.init.kaiming_normal_(conv.base_layer.weight)
    params = [p for n, p in vae.named_parameters() if "lora" not in n]
    for p in params:
        p.requires_grad_(True)
    vae.train()
    optimizer = torch.optim.Adam(params, lr=cfg.vae_lr)

    def reconstruction(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(recon, x) + 0.5 * (recon - x).abs().mean()

    losses = []
    for step in range(1, cfg.vae_steps + 1):
        x = clean_image_batch(cfg.seed, step, cfg.vae_batch_size, crop, synth)
        posterior, skips = encode_with_skips(vae, x)
        z = posterior.mode()
        with_skips = reconstruction(decode_with_skips(vae, z, skips, 1.0), x)
        latent_only = reconstruction(decode_with_skips(vae, z, None, 1.0), x)
        loss = with_skips + 0.5 * latent_only
        # cosine decay: the autoencoder is trained once, to convergence within the budget
        lr = cfg.vae_lr * 0.5 * (1 + np.cos(np.pi * (step - 1) / cfg.vae_steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(with_skips.detach()))
        if step % 50 == 0 or step == cfg.vae_steps:
            LOG.info("autoencoder step %d/%d: loss with skips %.4f, latent only %.4f", step, cfg.vae_steps, losses[-1], float(latent_only.detach()))
    model.set_eval()
    return losses


@torch.no_grad()
def set_latent_scaling(model: DifixModel, cfg: PretrainConfig, size: tuple[int, int]) -> float:
    """Scale latents to unit variance, as SD's 0.18215 does for its VAE."""
    synth = SyntheticConfig(height=size[0], width=size[1])
    x = clean_image_batch(cfg.seed, 0, 16, size, synth)
    posterior, _ = encode_with_skips(model.vae, x)
    scale = float(f"{1.0 / float(posterior.mode().std()):.5g}")
    model.vae.register_to_config(scaling_factor=scale)
    model.difix_config.architecture.vae["scaling_factor"] = scale
    return scale


def pretrain(cfg: PretrainConfig) -> Path:
    if not LOG.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
        LOG.propagate = False
    size = parse_resolution(cfg.resolution)
    work = Path(cfg.work_dir)
    stage1 = work / "stage1_autoencoder.pkl"
    if stage1.is_file():
        LOG.info("stage 1 already done: %s", stage1)
    else:
        torch.manual_seed(cfg.seed)
        model = build_random_difix(DifixConfig(preset="tiny", init_seed=cfg.seed))
        losses = train_autoencoder(model, cfg)
        scale = set_latent_scaling(model, cfg, size)
        LOG.info("autoencoder final loss %.4f, latent scaling factor %.5g", losses[-1], scale)
        save_checkpoint(stage1, model)

    triplets = work / "synthetic" / "triplets.json"
    if not triplets.is_file():
        synth = SyntheticConfig(height=size[0], width=size[1])
        write_synthetic_triplets(triplets.parent, cfg.n_train, cfg.n_test, cfg.seed, synth)
        LOG.info("wrote %d + %d synthetic triplets to %s", cfg.n_train, cfg.n_test, triplets.parent)

    return train(
        TrainConfig(
            triplets=str(triplets),
            output=cfg.output,
            output_dir=str(work / "stage2_difix"),
            base=str(stage1),
            steps=cfg.difix_steps,
            lr=cfg.difix_lr,
            batch_size=cfg.difix_batch_size,
            resolution=cfg.resolution,
            lambda_lpips=0.0,
            lambda_gram=0.0,
            val_every=cfg.val_every,
            ckpt_every=cfg.ckpt_every,
            seed=cfg.seed,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hi4dfix.difix.pretrain", description=__doc__.split("\n")[0])
    for f in dataclasses.fields(PretrainConfig):
        kwargs = {"dest": f.name, "help": f.metadata.get("help", "")}
        if f.default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        kwargs["type"] = int if kind == "int" else float if kind == "float" else str
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)
    pretrain(PretrainConfig(**vars(parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
