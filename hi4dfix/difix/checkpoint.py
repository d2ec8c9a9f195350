"""A DiFix model from any checkpoint a setting may name: ``load_model(spec)``.

The formats: the official ``model_*.pkl`` (``hi4dfix.difix.official_pkl``), a folder of the
``nvidia/difix_ref`` Hub layout or a Hub id (``hi4dfix.difix.pretrained_dir``), and
``tiny-random`` (fresh tiny weights); what they share is in ``hi4dfix.difix.checkpoint_base``.
"""

from __future__ import annotations

import os
from pathlib import Path

from hi4dfix.difix.checkpoint_base import RANDOM_TINY_SPEC
from hi4dfix.difix.config import DifixConfig
from hi4dfix.difix.model import DifixModel, build_random_difix
from hi4dfix.difix.official_pkl import model_from_checkpoint, read_checkpoint
from hi4dfix.difix.pretrained_dir import model_from_pretrained_dir


def load_model(
    spec: str | os.PathLike,
    hub_cache_dir: str | None = None,
    base_model_id: str | None = None,
    strict: bool = True,
    init_seed: int = 0,
) -> DifixModel:
    """A Difix model from a pkl, a folder, a Hub id, or ``tiny-random`` (fresh tiny weights)."""
    spec = str(spec)
    if spec == RANDOM_TINY_SPEC:
        return build_random_difix(DifixConfig(preset="tiny", init_seed=init_seed))
    path = Path(spec)
    if path.suffix == ".pkl" or path.is_file():
        payload = read_checkpoint(path)
        return model_from_checkpoint(
            payload, source=spec, base_model_id=base_model_id, hub_cache_dir=hub_cache_dir, strict=strict
        )
    return model_from_pretrained_dir(spec, hub_cache_dir=hub_cache_dir)
