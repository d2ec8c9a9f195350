"""The control arm's training data: fresh out-of-domain triplets the base has never seen.

The ``control`` arm is the base DiFix trained for as many steps, with the same settings, schedule
and processing size, as the ``tuned`` arm (the same tuning command), but on out-of-domain data
instead of Hi4D. ``tuned − control`` then measures in-domain data at an equal training budget, and
``control − base`` what as many more steps on unseen data of the base's kind do by themselves.

That data is made by the ``control_triplets`` job (:func:`write_control_triplets`): procedural
scenes of :mod:`hi4dfix.difix.ood_scenes` (rigid objects, no people) rendered through the study's
fit-and-render path with the study's render profile, at the study's processing size, from a seed
of their own (``difix.control.seed``), so never the pretraining's own triplets (refused when the
seeds coincide, :func:`check_fresh`). A user may name a triplets file instead
(``difix.control.triplets``). Either way no image of it may come from the study's scenes:
:func:`check_control_triplets` refuses a file naming a path under the Hi4D root or the materialized
scenes and renders, before any job runs, and the ``check_control_content`` job compares its pixels
with the reserved scenes'.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OOD_TRIPLETS_NAME = "ood_triplets.json"  # beside the pretrained base: its own training data
CONTROL_TRIPLETS_NAME = "triplets.json"  # under CONTROL_DIR: the control's fresh ones
IMAGE_KEYS = ("image", "target_image", "ref_image")


CONTROL_DIR = "difix_control"  # under the results folder: the control's data and its content check


@dataclass(frozen=True)
class ControlDataConfig:
    """The fresh out-of-domain scenes the control trains (train) and validates (test) on: as many as
    the pretraining's by default, from another seed."""

    n_train_scenes: int = 28
    n_test_scenes: int = 8
    seed: int = 1
    black_background: float = 1.0  # the study's renders are composited over black

    def __post_init__(self) -> None:
        for name in ("n_train_scenes", "n_test_scenes"):
            if getattr(self, name) < 1:
                raise ValueError(f"difix.control.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.black_background <= 1.0:
            raise ValueError(f"difix.control.black_background must be in [0, 1], got {self.black_background}")

    @classmethod
    def from_control(cls, control: Mapping[str, Any]) -> "ControlDataConfig":
        """From the config's ``difix.control`` block (its other keys: enabled, triplets)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in control.items() if k in names})


def control_triplets_path(difix: Mapping[str, Any], results: str) -> str:
    """The triplets the control arm trains on, from the config's ``difix`` block: ``control.triplets``,
    else the fresh out-of-domain triplets of the ``control_triplets`` job."""
    given = difix["control"].get("triplets")
    if given:
        return str(given)
    return f"{results}/{CONTROL_DIR}/{CONTROL_TRIPLETS_NAME}"


def check_fresh(difix: Mapping[str, Any]) -> None:
    """Refuse control scenes that would be the pretrained base's own: the same generator and seed
    (``difix.base: pretrain``) give the very scenes it was trained and validated on."""
    control = difix["control"]
    if control.get("triplets") or difix["base"] != "pretrain":
        return
    seed, pretrain_seed = ControlDataConfig.from_control(control).seed, difix["pretrain"].get("seed", 0)
    if seed == pretrain_seed:
        raise ValueError(
            f"difix.control.seed is {seed}, difix.pretrain.seed's too: the control's out-of-domain scenes would be "
            "the base's own pretraining scenes, not fresh ones; give difix.control.seed another value"
        )


def write_control_triplets(
    json_path: str | os.PathLike,
    cfg: ControlDataConfig,
    size: tuple[int, int],
    render: Mapping[str, Any],
    workers: int = 1,
) -> int:
    """Render the control's out-of-domain scenes at ``size`` (HxW) with the study's render profile
    ``render`` (a ``render_profiles`` entry: its fit settings; ``source`` and ``external_pattern`` do not
    apply), images in a folder beside ``json_path``, and write the triplets JSON there atomically.
    Returns the number of training triplets."""
    from hi4dfix.difix.ood_scenes import OODSceneConfig, write_ood_triplets
    from hi4dfix.io import write_json
    from hi4dfix.render.fit import RenderConfig, resolve_device

    options = {k: v for k, v in render.items() if k not in ("source", "external_pattern")}
    render_cfg = RenderConfig.from_dict(options)
    if resolve_device(render_cfg.device, "the render profile's device").type == "cuda":
        workers = 1  # one process holds the GPU: no forked workers after CUDA is up
    scenes = OODSceneConfig(height=size[0], width=size[1], black_background=cfg.black_background, render=render_cfg)
    folder = Path(json_path).with_suffix("")  # results/difix_control/ood_triplets/
    made = write_ood_triplets(folder, cfg.n_train_scenes, cfg.n_test_scenes, cfg.seed, scenes, workers)
    data = json.loads(made.read_text())
    write_json(json_path, data)
    return len(data["train"])


def _check_shape(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Each split maps triplet ids to triplets (mappings with an ``image``), as tuning reads them."""
    for split, items in data.items():
        if not isinstance(items, Mapping):
            raise ValueError(
                f"difix.control.triplets {path}: split {split!r} is a {type(items).__name__}; each split maps "
                'triplet ids to triplets, e.g. {"train": {"t0": {"image": ..., "target_image": ..., "ref_image": ...}}}'
            )
        for item, triplet in items.items():
            if not isinstance(triplet, Mapping) or not all(key in triplet for key in IMAGE_KEYS[:2]):
                raise ValueError(
                    f"difix.control.triplets {path}: {split} triplet {item!r} is not a mapping with "
                    f"{' and '.join(IMAGE_KEYS[:2])} (and ref_image)"
                )


def control_images(path: str | os.PathLike) -> list[str]:
    """Every image the control triplets name (``image``, ``target_image``, ``ref_image`` of every split), once
    each, in order of appearance."""
    data = json.loads(Path(path).read_text())
    _check_shape(path, data)
    triplets = [triplet for items in data.values() for triplet in items.values()]
    return list(dict.fromkeys(triplet[key] for triplet in triplets for key in IMAGE_KEYS if key in triplet))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_control_triplets(path: str | os.PathLike, forbidden: Mapping[str, str | os.PathLike]) -> int:
    """Refuse control triplets that name an image inside any ``forbidden`` folder (name -> folder: the
    Hi4D root, the materialized scenes, the renders), naming the triplet, the image and the folder.
    Relative image paths are taken from the working directory, as tuning reads them. Returns the
    number of training triplets."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"difix.control triplets {path}: cannot read ({err})") from err
    if not isinstance(data, dict) or not data.get("train"):
        raise ValueError(f"difix.control triplets {path}: no 'train' split (the schema tuning reads)")
    _check_shape(path, data)
    folders = {name: Path(folder).resolve() for name, folder in forbidden.items()}
    for split, items in data.items():
        for item, triplet in items.items():
            for key in IMAGE_KEYS:
                if key not in triplet:
                    continue
                image = Path(triplet[key]).resolve()
                for name, folder in folders.items():
                    if _inside(image, folder):
                        raise ValueError(
                            f"difix.control triplets {path}: {split} triplet {item} takes its {key} from "
                            f"{triplet[key]}, inside {name} ({folder}); the control arm trains on the base's "
                            "out-of-domain data, never on the study's scenes"
                        )
    return len(data["train"])
