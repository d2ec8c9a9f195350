"""Pre-train the tiny DiFix base model on out-of-domain multi-view data.

``python -m hi4dfix.difix.pretrain --output base.pkl --work-dir DIR`` (or ``pretrain(cfg)``):

1. out-of-domain triplets (:mod:`hi4dfix.difix.ood_scenes`): procedural rigid objects, no
   people, rendered through the study's fit-and-render path from perturbed poses; the
   reference is another camera at the same time;
2. the tiny VAE is trained as a plain autoencoder on the clean views of the training scenes
   (SD-Turbo's VAE is a trained autoencoder too; Difix keeps its base weights frozen), and
   its latent scaling factor is set so that scaled latents have unit variance;
3. DiFix itself (UNet, VAE LoRA, skip convolutions) is trained on the training triplets
   through the one training entry point, ``train.train``;
4. the result is scored on the test scenes (never seen in training): ``ood_test.csv`` holds
   the metrics of the raw render and of the base output for each test triplet.

The out-of-domain triplets are also written beside the model (``ood_triplets.json``, the schema
tuning reads): the study's control arm continues the base on this, its own training data.

The result is a tiny ``model_*.pkl`` that removes render artifacts it learnt on other
content, so that fine-tuning on Hi4D is compared against a real baseline.  Deterministic by
seed.  A rerun resumes: each stage's product in ``work_dir`` is kept.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hi4dfix.config_cli import config_from_argv, option_help
from hi4dfix.difix.config import DifixConfig
from hi4dfix.difix.control import OOD_TRIPLETS_NAME
from hi4dfix.difix.data import load_training_triplets, parse_resolution, snap_resolution
from hi4dfix.difix.model import DifixModel, build_random_difix, decode_with_skips, encode_with_skips, skip_convs
from hi4dfix.difix.official_pkl import save_checkpoint
from hi4dfix.difix.ood_scenes import OODSceneConfig, write_ood_triplets
from hi4dfix.difix.train import train
from hi4dfix.difix.train_config import TrainConfig
from hi4dfix.io import read_image, write_json, write_text
from hi4dfix.logs import log_to_stderr
from hi4dfix.render.fit import RenderConfig, resolve_device
from hi4dfix.stats import BootstrapConfig, mean_estimate, verdict
from hi4dfix.tables import higher_is_better, to_markdown, write_csv

LOG = logging.getLogger("hi4dfix.difix.pretrain")
OOD_TEST_NAME = "ood_test.csv"  # per test triplet, beside the model
OOD_SUMMARY_NAME = "ood_test.md"  # base against raw with bootstrap intervals


@dataclass
class PretrainConfig:
    output: str = field(metadata=option_help("base model pkl to write"))
    work_dir: str = field(metadata=option_help("out-of-domain data, stage checkpoints and logs (a rerun resumes)"))
    seed: int = field(default=0, metadata=option_help("seed of data, initialisation and training"))
    resolution: str = field(
        default="160x128",
        metadata=option_help("'HxW' of the out-of-domain images (multiple of 16): the study's processing size"),
    )
    n_train_scenes: int = field(
        default=28, metadata=option_help("out-of-domain training scenes (each gives cameras - 1 triplets)")
    )
    n_test_scenes: int = field(default=8, metadata=option_help("out-of-domain test scenes"))
    workers: int = field(default=2, metadata=option_help("processes rendering the out-of-domain scenes"))
    black_background: float = field(
        default=1.0,
        metadata=option_help(
            "share of out-of-domain scenes composited over black, as the study's renders are "
            "(the others: a random flat colour)"
        ),
    )
    fit_steps: int = field(
        default=60,
        metadata=option_help("Gaussian fit steps of the out-of-domain renders (the default render profile's)"),
    )
    num_gaussians: int = field(
        default=1500, metadata=option_help("Gaussians per out-of-domain scene (the default render profile's)")
    )
    vae_steps: int = field(default=200, metadata=option_help("autoencoder steps (stage 2)"))
    vae_batch_size: int = field(default=8, metadata=option_help("autoencoder batch size"))
    vae_lr: float = field(default=1e-3, metadata=option_help("autoencoder learning rate"))
    vae_crop: int | None = field(
        default=64,
        metadata=option_help(
            "side of square clean crops for the autoencoder (None: whole images; 8 crops of 64 beat "
            "2 whole 160x128 views at the same cost, BENCHMARKS.md)"
        ),
    )
    difix_steps: int = field(default=200, metadata=option_help("DiFix steps (stage 3)"))
    difix_batch_size: int = field(default=2, metadata=option_help("DiFix batch size"))
    difix_lr: float = field(default=5e-4, metadata=option_help("DiFix learning rate"))
    difix_lr_schedule: str = field(
        default="cosine", metadata=option_help("DiFix learning-rate schedule: constant | cosine")
    )
    difix_crop: str | None = field(
        default=None, metadata=option_help("'HxW' random training windows of the DiFix stage (None: whole images)")
    )
    val_every: int = field(default=100, metadata=option_help("stage-3 validation frequency"))
    ckpt_every: int = field(default=100, metadata=option_help("stage-3 checkpoint frequency"))
    device: str = field(
        default="auto",
        metadata=option_help("torch device of the autoencoder stage and the scoring (auto: cuda if present)"),
    )
    log_with: str = field(
        default="none",
        metadata=option_help("training curves of the DiFix stage: none | tensorboard | wandb (TrainConfig.log_with)"),
    )

    def __post_init__(self) -> None:
        for name in (
            "n_train_scenes",
            "n_test_scenes",
            "workers",
            "vae_steps",
            "vae_batch_size",
            "difix_steps",
            "difix_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"PretrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        size = parse_resolution(self.resolution)
        if snap_resolution(size) != size:
            raise ValueError(f"PretrainConfig.resolution {self.resolution} must be a multiple of 16")
        if self.vae_crop is not None and self.vae_crop > min(size):
            raise ValueError(f"PretrainConfig.vae_crop {self.vae_crop} is larger than the images ({self.resolution})")


def clean_views(triplets_json: Path, split: str) -> np.ndarray:
    """(N, H, W, 3) distinct clean views (targets and references) of a split, in file order."""
    paths = []
    for triplet in load_training_triplets(triplets_json, split):
        for path in (triplet.target_image, triplet.ref_image):
            if path not in paths:
                paths.append(path)
    return np.stack([read_image(path) for path in paths])


def clean_crop_batch(views: np.ndarray, seed: int, step: int, batch_size: int, crop: int | None) -> torch.Tensor:
    """(B, 3, crop, crop) random crops (None: whole views), randomly mirrored, of clean views in
    [-1, 1], a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, 1_000_003, step])
    n, h, w, _ = views.shape
    ch, cw = (h, w) if crop is None else (crop, crop)
    crops = []
    for _ in range(batch_size):
        index, top, left = int(rng.integers(n)), int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        patch = views[index, top : top + ch, left : left + cw]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        crops.append(torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1))
    return torch.stack(crops) * 2.0 - 1.0


def train_autoencoder(model: DifixModel, views: np.ndarray, cfg: PretrainConfig, device: torch.device) -> list[float]:
    """Train the VAE base weights and skip convolutions as an autoencoder on clean views.

    The reconstruction is asked both with and without the skip path: with skips the tiny
    VAE reconstructs closely within a few hundred CPU steps (its 8x latent alone stays
    lossy), without them the latent path keeps a meaning for the UNet.  Latents are the
    posterior mean (the tiny preset uses ``latent_sampling="mode"``).  Skip convolutions start
    from a Kaiming init here; the official 1e-5 init suits an already trained VAE, not this one.
    """
    vae = model.vae
    model.set_eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for conv in skip_convs(vae):
            torch.nn.init.kaiming_normal_(conv.base_layer.weight)
    vae.to(device)
    params = [p for n, p in vae.named_parameters() if "lora" not in n]
    for p in params:
        p.requires_grad_(True)
    vae.train()
    optimizer = torch.optim.Adam(params, lr=cfg.vae_lr)

    def reconstruction(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(recon, x) + 0.5 * (recon - x).abs().mean()

    losses = []
    for step in range(1, cfg.vae_steps + 1):
        x = clean_crop_batch(views, cfg.seed, step, cfg.vae_batch_size, cfg.vae_crop).to(device)
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
            LOG.info(
                "autoencoder step %d/%d: loss with skips %.4f, latent only %.4f",
                step,
                cfg.vae_steps,
                losses[-1],
                float(latent_only.detach()),
            )
    model.set_eval()
    vae.to("cpu")
    return losses


@torch.no_grad()
def set_latent_scaling(model: DifixModel, views: np.ndarray) -> float:
    """Scale latents to unit variance, as SD's 0.18215 does for its VAE."""
    x = torch.from_numpy(views[:16]).permute(0, 3, 1, 2) * 2.0 - 1.0
    posterior, _ = encode_with_skips(model.vae, x)
    scale = float(f"{1.0 / float(posterior.mode().std()):.5g}")
    model.vae.register_to_config(scaling_factor=scale)
    model.difix_config.architecture.vae["scaling_factor"] = scale
    return scale


def score_test_split(
    model_path: str | Path, triplets_json: Path, size: tuple[int, int], device: torch.device
) -> pd.DataFrame:
    """Per test triplet (``scene``, ``cam``): PSNR and SSIM of the raw render and of the base output."""
    from hi4dfix.difix.infer import fix_images, load_difix
    from hi4dfix.metrics import psnr, ssim

    model = load_difix(model_path, device=device)
    rows = []
    for triplet in load_training_triplets(triplets_json, "test"):
        image, target, ref = (read_image(p) for p in (triplet.image, triplet.target_image, triplet.ref_image))
        fixed = fix_images(model, [image], [ref], resolution=size)[0]
        scene, cam = triplet.id.split("/")
        rows.append(
            {
                "scene": scene,
                "cam": int(cam),
                "psnr_raw": psnr(image, target),
                "psnr_base": psnr(fixed, target),
                "ssim_raw": ssim(image, target),
                "ssim_base": ssim(fixed, target),
            }
        )
    return pd.DataFrame(rows)


def summarise_test_split(scores: pd.DataFrame, bootstrap: BootstrapConfig = BootstrapConfig()) -> pd.DataFrame:
    """Base against raw on the test split, per metric: means, the mean paired difference (the mean
    over scenes of each scene's mean), its interval (scenes resampled, then views within them:
    :func:`hi4dfix.stats.mean_estimate`) and the verdict."""
    rows = []
    for metric in ("psnr", "ssim"):
        difference = (scores[f"{metric}_base"] - scores[f"{metric}_raw"]).to_numpy()
        est = mean_estimate(scores["scene"].to_numpy(), scores["cam"].to_numpy(), difference, bootstrap)
        rows.append(
            {
                "metric": metric,
                "raw": float(scores.groupby("scene")[f"{metric}_raw"].mean().mean()),
                "base": float(scores.groupby("scene")[f"{metric}_base"].mean().mean()),
                "delta": est.delta,
                "ci_low": est.ci_low,
                "ci_high": est.ci_high,
                "n_scenes": est.n_scenes,
                "n_views": est.n_views,
                "verdict": verdict(est, higher_is_better(metric)),
            }
        )
    return pd.DataFrame(rows)


def pretrain(cfg: PretrainConfig) -> Path:
    """Run (or resume) every stage; writes ``cfg.output`` and, beside it, ``ood_test.csv``, ``ood_test.md``
    and ``ood_triplets.json``."""
    log_to_stderr(LOG)
    size = parse_resolution(cfg.resolution)
    work = Path(cfg.work_dir)
    device = resolve_device(cfg.device, "PretrainConfig.device")

    triplets = work / "ood" / "triplets.json"
    if not triplets.is_file():
        render = RenderConfig(backend="torch", device="cpu", fit_steps=cfg.fit_steps, num_gaussians=cfg.num_gaussians)
        scenes = OODSceneConfig(height=size[0], width=size[1], black_background=cfg.black_background, render=render)
        write_ood_triplets(triplets.parent, cfg.n_train_scenes, cfg.n_test_scenes, cfg.seed, scenes, cfg.workers)
        LOG.info("wrote %d + %d out-of-domain scenes to %s", cfg.n_train_scenes, cfg.n_test_scenes, triplets.parent)

    autoencoder = work / "autoencoder.pkl"
    if autoencoder.is_file():
        LOG.info("autoencoder already trained: %s", autoencoder)
    else:
        views = clean_views(triplets, "train")
        torch.manual_seed(cfg.seed)
        model = build_random_difix(DifixConfig(preset="tiny", init_seed=cfg.seed))
        losses = train_autoencoder(model, views, cfg, device)
        scale = set_latent_scaling(model, views)
        LOG.info("autoencoder final loss %.4f, latent scaling factor %.5g", losses[-1], scale)
        save_checkpoint(autoencoder, model)

    output = train(
        TrainConfig(
            triplets=str(triplets),
            output=cfg.output,
            output_dir=str(work / "difix"),
            base=str(autoencoder),
            steps=cfg.difix_steps,
            lr=cfg.difix_lr,
            lr_schedule=cfg.difix_lr_schedule,
            crop=cfg.difix_crop,
            batch_size=cfg.difix_batch_size,
            resolution=cfg.resolution,
            lambda_lpips=0.0,
            lambda_gram=0.0,
            val_every=cfg.val_every,
            ckpt_every=cfg.ckpt_every,
            seed=cfg.seed,
            log_with=cfg.log_with,
            setting_names={"log_with": "difix.pretrain.log_with"},
        )
    )
    scores = score_test_split(output, triplets, size, device)
    write_csv(Path(output).with_name(OOD_TEST_NAME), scores)
    bootstrap = BootstrapConfig(seed=cfg.seed)
    summary = summarise_test_split(scores, bootstrap)
    markdown = (
        f"Base DiFix against the raw render on the out-of-domain test split ({cfg.n_test_scenes} scenes never "
        f"trained on, {len(scores)} views): delta = base - raw, the mean over scenes of each scene's mean, with "
        f"the {bootstrap.confidence:.0%} percentile interval of a paired bootstrap ({bootstrap.n_resamples} "
        "resamples of the scenes, then of the views within each drawn scene).\n\n" + to_markdown(summary)
    )
    write_text(Path(output).with_name(OOD_SUMMARY_NAME), markdown)
    LOG.info("out-of-domain test split:\n%s", markdown)
    # the very triplets the base was trained (train) and validated (test) on, absolute paths into work_dir
    write_json(Path(output).with_name(OOD_TRIPLETS_NAME), json.loads(triplets.read_text()))
    return Path(output)


def main(argv: list[str] | None = None) -> int:
    pretrain(config_from_argv(PretrainConfig, argv, "python -m hi4dfix.difix.pretrain", __doc__.split("\n")[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
