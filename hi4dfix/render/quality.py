"""How good a scene's raw renders are: PSNR and SSIM of the imperfect-pose renders against the ground
truth, at the training (source) cameras the Gaussians were fitted to and at the held-out cameras.

One small CSV per scene and render profile (``render_quality`` job, after ``render_scene``), read
by the delta table: its scene rows gain the scene's columns (:data:`QUALITY_COLUMNS`), its mean rows
the means over the table's scenes, so a reader sees how broken the inputs DiFix fixes were.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hi4dfix.io import read_image
from hi4dfix.metrics import psnr, ssim
from hi4dfix.render.scene_renders import read_render_manifest, target_image_path

# train: the fit's source cameras (how well the 3DGS fit its own views); heldout: every other camera
QUALITY_COLUMNS = ("render_psnr_train", "render_ssim_train", "render_psnr_heldout", "render_ssim_heldout")
COUNT_COLUMNS = ("n_train_views", "n_heldout_views")


def render_quality(render_dir: str | os.PathLike, ssim_window: str = "gaussian") -> dict[str, object]:
    """The scene's row: mean PSNR and SSIM (``metrics.ssim``'s window) of every render at the source
    cameras and at the held-out cameras, over the whole frame, with the view counts."""
    manifest = read_render_manifest(render_dir)
    scores: dict[str, list[tuple[float, float]]] = {"train": [], "heldout": []}
    for item in manifest["images"]:
        render = read_image(Path(render_dir) / item["path"])
        target = read_image(target_image_path(render_dir, item["cam"], item["frame"]))
        scores["train" if item["is_source"] else "heldout"].append(
            (psnr(render, target), ssim(render, target, ssim_window))
        )
    row: dict[str, object] = {"scene": manifest["scene"], "render_source": manifest["source"]}
    for split, values in scores.items():
        row[f"render_psnr_{split}"] = float(np.mean([v[0] for v in values])) if values else math.nan
        row[f"render_ssim_{split}"] = float(np.mean([v[1] for v in values])) if values else math.nan
    row["n_train_views"], row["n_heldout_views"] = len(scores["train"]), len(scores["heldout"])
    return row


def read_render_quality(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The per-scene quality CSVs, one row per scene, indexed by scene; a clear error naming a bad file."""
    frames = []
    for path in paths:
        try:
            frame = pd.read_csv(path)
        except (FileNotFoundError, pd.errors.EmptyDataError) as err:
            raise ValueError(f"{path}: cannot read the render quality ({err})") from err
        missing = [c for c in ("scene", *QUALITY_COLUMNS) if c not in frame.columns]
        if missing or len(frame) != 1:
            raise ValueError(f"{path}: a render quality file holds one row with scene and {QUALITY_COLUMNS}")
        frames.append(frame)
    return pd.concat(frames).set_index("scene")


def with_render_quality(table: pd.DataFrame, quality: pd.DataFrame, mean_row: str) -> pd.DataFrame:
    """The delta table with :data:`QUALITY_COLUMNS`: a scene row gets its scene's values, a ``mean_row``
    row the mean over the table's scenes (as the table's arm means are). Every other column is kept."""
    scenes = [s for s in dict.fromkeys(table["scene"]) if s != mean_row]
    absent = sorted(set(scenes) - set(quality.index))
    if absent:
        raise ValueError(f"render quality missing for scenes {absent}")
    means: Mapping[str, float] = quality.loc[scenes, list(QUALITY_COLUMNS)].mean()
    out = table.copy()
    for column in QUALITY_COLUMNS:
        out[column] = [means[column] if s == mean_row else float(quality.loc[s, column]) for s in table["scene"]]
    return out


def quality_markdown(quality: pd.DataFrame, scenes: Sequence[str]) -> str:
    """The raw renders' quality per scene (and the mean), as a markdown table."""
    rows = quality.loc[list(scenes), list(QUALITY_COLUMNS)]
    lines = [
        "| scene | PSNR train cams | SSIM train cams | PSNR held-out | SSIM held-out |",
        "|---|---|---|---|---|",
    ]
    for scene, row in [*rows.iterrows(), ("mean", rows.mean())]:
        lines.append(
            f"| {scene} | " + " | ".join(f"{row[c]:.{2 if 'psnr' in c else 4}f}" for c in QUALITY_COLUMNS) + " |"
        )
    return "\n".join(lines) + "\n"
