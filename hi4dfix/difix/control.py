"""The control arm's training data: the base model's own out-of-domain triplets.

The ``control`` arm is the base DiFix trained for as many steps, with the same settings and
processing size, as the ``tuned`` arm, but on data of the base's own distribution instead of
Hi4D. ``tuned − control`` then measures in-domain data at a fixed training budget, and
``control − base`` what the extra steps do by themselves.

In the embedded default that data is the base's pretraining triplets (``ood_triplets.json``
beside the pretrained model, :mod:`hi4dfix.difix.pretrain`); for a released base it is a triplets
file the user names (``difix.control.triplets``). Either way no image of it may come from the
study's scenes: :func:`check_control_triplets` refuses a file naming a path under the Hi4D root or
the materialized scenes and renders, before any job runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

OOD_TRIPLETS_NAME = "ood_triplets.json"  # beside the pretrained base: its own training data
IMAGE_KEYS = ("image", "target_image", "ref_image")


def control_triplets_path(difix: Mapping[str, Any], results: str) -> str:
    """The triplets the control arm trains on, from the config's ``difix`` block: ``control.triplets``,
    else the pretrained base's own out-of-domain triplets (``difix.base: pretrain`` only)."""
    given = difix["control"].get("triplets")
    if given:
        return str(given)
    if difix["base"] != "pretrain":
        raise ValueError(
            f"difix.control.enabled is true but difix.base is {difix['base']!r}: a released base has no "
            "out-of-domain data of its own in the study; set difix.control.triplets to a triplets JSON of "
            "the base's own training distribution (never Hi4D), or difix.control.enabled: false"
        )
    return f"{results}/difix_base/{difix['preset']}/{OOD_TRIPLETS_NAME}"


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
                            "own out-of-domain data, never on the study's scenes"
                        )
    return len(data["train"])
