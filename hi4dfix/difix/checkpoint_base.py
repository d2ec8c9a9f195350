"""What every DiFix checkpoint format shares: its errors, the formats accepted, and loading
weights into a module with the file named in any mismatch."""

from __future__ import annotations

from collections.abc import Mapping

import torch

RANDOM_TINY_SPEC = "tiny-random"


ACCEPTED_FORMATS = (
    "a model_*.pkl written by torch.save (the official Difix training code's layout, or hi4dfix's with "
    "its hi4dfix_config), a diffusers folder laid out like nvidia/difix_ref (model_index.json, unet/, vae/, "
    f"text_encoder/, tokenizer/, scheduler/), a Hugging Face Hub id (owner/name), or {RANDOM_TINY_SPEC!r}"
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the architecture."""


class FreshDifixPartsWarning(UserWarning):
    """A VAE weights file without Difix's LoRA and skip weights: they keep their fresh init."""


def load_partial(module: torch.nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    current = module.state_dict()
    for key, value in state.items():
        if tuple(current[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"shape mismatch for {key}{where}: checkpoint {tuple(value.shape)} vs model {tuple(current[key].shape)}"
            )
    merged = dict(current)
    merged.update(state)
    module.load_state_dict(merged, strict=True)


def load_exact(module: torch.nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    result = module.load_state_dict(dict(state), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{where}: missing {result.missing_keys[:3]} unexpected {result.unexpected_keys[:3]}")
