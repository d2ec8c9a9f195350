"""Training curves through accelerate's trackers (``TrainConfig.log_with``), beside the CSV logs.

``tensorboard`` writes event files under the run folder (``<run>/trackers/tensorboard/``; needs
``tensorboard`` or the lighter ``tensorboardX``); ``wandb`` writes an offline run there
(``<run>/trackers/wandb/``, as Difix's trainer logs with wandb; ``wandb sync`` uploads it later).
The CSV logs (``train_log.csv``, ``val_log.csv``) stay the record the report reads.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LOG_WITH = ("none", "tensorboard", "wandb")
TRACKERS_DIR = "trackers"  # in the run folder
PROJECT = "hi4dfix"
# the packages each tracker can run on (any one of them)
PACKAGES = {"none": (), "tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}


def tracker_problem(log_with: str, setting: str) -> str | None:
    """Why ``log_with`` cannot run here (an unknown name, or none of its packages installed), naming
    ``setting``; None when it can."""
    if log_with not in LOG_WITH:
        return f"{setting} must be one of {LOG_WITH}, got {log_with!r}"
    packages = PACKAGES[log_with]
    if packages and not any(importlib.util.find_spec(name) is not None for name in packages):
        return (
            f"{setting} is {log_with!r} but none of {' / '.join(packages)} is installed: "
            f"`pip install {packages[-1]}`, or set {setting}: none"
        )
    return None


def make_tracker(log_with: str, run_folder: Path) -> Any:
    """The accelerate tracker writing under ``run_folder/trackers`` (None for ``none``)."""
    from accelerate.tracking import TensorBoardTracker, WandBTracker

    folder = Path(run_folder) / TRACKERS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if log_with == "tensorboard":
        return TensorBoardTracker("tensorboard", folder)
    if log_with == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")  # a cluster node rarely reaches the internet
        return WandBTracker(PROJECT, dir=str(folder), name=Path(run_folder).name)
    return None


def hyperparameters(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a tracker can store as hyperparameters: scalars and strings only."""
    return {k: v for k, v in settings.items() if isinstance(v, (bool, int, float, str))}
