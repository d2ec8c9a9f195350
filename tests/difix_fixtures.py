"""A tiny Difix model for tests whose adapters change its output, and one step's loss and gradients."""

from __future__ import annotations

import torch

from hi4dfix.difix.config import DifixConfig
from hi4dfix.difix.model import DifixModel, build_random_difix


def difix_with_active_adapters(
    init_seed: int = 3, weight_seed: int | None = None, latent_sampling: str = "mode"
) -> DifixModel:
    """The tiny preset with its VAE LoRA-B and skip weights drawn away from their init (LoRA-B
    starts at zero, a no-op), so that tests of the forward pass and gradients see them.
    ``weight_seed`` None: ``init_seed``."""
    model = build_random_difix(DifixConfig(preset="tiny", init_seed=init_seed, latent_sampling=latent_sampling))
    gen = torch.Generator().manual_seed(init_seed if weight_seed is None else weight_seed)
    with torch.no_grad():
        for name, p in model.vae.named_parameters():
            if "lora_B" in name or "skip" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def loss_and_grads(
    model: DifixModel, views: torch.Tensor, emb: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One step's L2 loss (the views fixed towards the views swapped) and a copy of every trainable
    gradient."""
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(model(views, emb), views.flip(1))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.trainable_named_parameters()}
