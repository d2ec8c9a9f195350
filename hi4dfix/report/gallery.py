"""Image galleries of the report.

* triplet gallery: DiFix test triplets as rows ``image | ref_image | target_image | tuned output``;
* before/after views: per reserved scene, held-out views as rows ``raw | base | (control) | tuned | ground truth``,
  from the outputs that the NVS evaluation saved next to each arm's metrics CSV.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from hi4dfix.arms import ARMS, extra_arm_title, extra_arms_of
from hi4dfix.evaluate import TRIPLET_ID, Fixer, arm_output_dir, view_image_path
from hi4dfix.io import read_image
from hi4dfix.metrics import metric_digits, psnr
from hi4dfix.render.scene_renders import target_image_path
from hi4dfix.report.figures import short_scene
from hi4dfix.report.grid import Tile, image_grid, spread_pick
from hi4dfix.report.plotting import save_png
from hi4dfix.tables import MEAN, read_per_scene_csv

TRIPLET_COLUMNS = ("image", "ref_image", "target_image", "tuned output")
# column titles of the before/after views, by arm; the control arm's only when the study has it
NVS_ARM_COLUMNS = {"raw": "raw render", "base": "base DiFix", "control": "control DiFix",
                   "tuned": "tuned DiFix"}
NVS_COLUMNS = ("raw render", "base DiFix", "tuned DiFix", "ground truth")  # without the control arm


@dataclass(frozen=True)
class GalleryConfig:
    num_samples: int = 4  # test triplets shown, evenly spread over the sorted ids
    tile_height_in: float = 1.6
    dpi: int = 100

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"report.gallery.num_samples must be >= 1, got {self.num_samples}")


@dataclass(frozen=True)
class BeforeAfterConfig:
    max_views: int = 3  # held-out (frame, cam) views shown per scene, evenly spread
    tile_height_in: float = 2.0
    dpi: int = 100

    def __post_init__(self) -> None:
        if self.max_views < 1:
            raise ValueError(f"report.before_after.max_views must be >= 1, got {self.max_views}")


def view_title(scene: str | None, cam: int, frame: int) -> str:
    prefix = f"{short_scene(scene)}\n" if scene else ""
    return f"{prefix}cam {cam} · frame {frame}"


# ---- triplet gallery -------------------------------------------------------------------------


def triplet_row_title(sample_id: str) -> str:
    match = TRIPLET_ID.match(sample_id)
    if match is None:
        return sample_id
    return view_title(match["scene"], int(match["cam"]), int(match["frame"]))


def pick_triplets(test_triplets: Mapping[str, Mapping[str, str]], count: int, source: str = "triplets") -> list[str]:
    """Ids of ``count`` test triplets spread over the sorted ids (deterministic)."""
    if not test_triplets:
        raise ValueError(f"{source}: the test split is empty; the gallery shows test triplets")
    return spread_pick(sorted(test_triplets), count)


def triplet_gallery(
    test_triplets: Mapping[str, Mapping[str, str]],
    fixer: Fixer,
    cfg: GalleryConfig = GalleryConfig(),
    title: str = "DiFix test triplets",
    source: str = "triplets",
) -> Figure:
    """Rows of picked test triplets with the tuned model's output; PSNR against ``target_image``."""
    ids = pick_triplets(test_triplets, cfg.num_samples, source)
    samples = [test_triplets[i] for i in ids]
    for sample_id, sample in zip(ids, samples):
        for key in ("image", "ref_image", "target_image"):
            if key not in sample:
                raise ValueError(f"{source}: test triplet {sample_id} has no {key!r}")
            if not Path(sample[key]).is_file():
                raise FileNotFoundError(f"{source}: test triplet {sample_id}: {key} {sample[key]} does not exist")
    images = [read_image(s["image"]) for s in samples]
    refs = [read_image(s["ref_image"]) for s in samples]
    targets = [read_image(s["target_image"]) for s in samples]
    outputs = fixer(images, refs)
    rows = [
        [
            Tile(image, f"PSNR {psnr(image, target):.2f} dB"),
            Tile(ref, "reference view"),
            Tile(target, "ground truth"),
            Tile(np.asarray(output), f"PSNR {psnr(output, target):.2f} dB"),
        ]
        for image, ref, target, output in zip(images, refs, targets, outputs)
    ]
    return image_grid(rows, TRIPLET_COLUMNS, [triplet_row_title(i) for i in ids], title, cfg.tile_height_in, cfg.dpi)


def write_triplet_gallery(
    test_triplets: Mapping[str, Mapping[str, str]],
    fixer: Fixer,
    path: str | os.PathLike,
    cfg: GalleryConfig = GalleryConfig(),
    title: str = "DiFix test triplets",
    source: str = "triplets",
) -> None:
    save_png(triplet_gallery(test_triplets, fixer, cfg, title, source), path, cfg.dpi)


# ---- before/after views per reserved scene ---------------------------------------------------


def nvs_output_path(arm_csv: str | os.PathLike, cam: int, frame: int) -> Path:
    """Where the NVS evaluation saved an arm's output: ``{arm}/{scene}/{cam}/{frame:06d}.png`` next to its CSV."""
    return view_image_path(arm_output_dir(arm_csv), cam, frame)


CAPTION_METRICS = ("psnr", "ssim")  # a tile's caption: two metrics fit under a small image


def _view_metrics(table) -> dict[tuple[int, int], dict[str, float]]:
    rows = table[table["frame"].astype(str) != MEAN]
    return {
        (int(r["frame"]), int(r["cam"])): {metric: float(r[metric]) for metric in CAPTION_METRICS}
        for _, r in rows.iterrows()
    }


def _caption(metrics: Mapping[str, float]) -> str:
    # the delta tables' digits, so a caption and the tables agree
    return " · ".join(f"{metric.upper()} {metrics[metric]:.{metric_digits(metric)}f}" for metric in CAPTION_METRICS)


def before_after(
    scene: str,
    arm_csvs: Mapping[str, str | os.PathLike],
    render_dir: str | os.PathLike,
    cfg: BeforeAfterConfig = BeforeAfterConfig(),
    title: str | None = None,
) -> Figure:
    """Held-out views of one scene: each arm's output with its PSNR/SSIM (raw, base, control when
    ``arm_csvs`` has it, tuned, then any other arm of ``arm_csvs``: the extra arms, in its order, titled as in
    the metric charts), then the ground truth."""
    missing_arms = [arm for arm in ARMS if arm not in arm_csvs]
    if missing_arms:
        raise ValueError(f"scene {scene}: no metrics CSV for arms {missing_arms}")
    arms = [arm for arm in NVS_ARM_COLUMNS if arm in arm_csvs]  # raw, base, control, tuned
    arms += extra_arms_of(list(arm_csvs))  # difix.extra_arms, in their order
    metrics = {arm: _view_metrics(read_per_scene_csv(arm_csvs[arm])) for arm in arms}
    views = sorted(metrics["raw"])
    for arm in arms[1:]:
        if sorted(metrics[arm]) != views:
            raise ValueError(f"{arm_csvs[arm]}: its (frame, cam) views differ from those of {arm_csvs['raw']}")
    picked = spread_pick(views, cfg.max_views)
    rows = []
    for frame, cam in picked:
        row = []
        for arm in arms:
            path = nvs_output_path(arm_csvs[arm], cam, frame)
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: the {arm} output of scene {scene} is missing although {arm_csvs[arm]} exists; "
                    "rerun the NVS evaluation (snakemake --forcerun evaluate_nvs)"
                )
            row.append(Tile(read_image(path), _caption(metrics[arm][(frame, cam)])))
        target = target_image_path(render_dir, cam, frame)
        if not target.is_file():
            raise FileNotFoundError(f"{target}: ground truth of scene {scene} (cam {cam}, frame {frame}) is missing")
        row.append(Tile(read_image(target), "composited ground truth"))
        rows.append(row)
    title = title or f"{scene}: held-out views before and after DiFix"
    if "control" in arms:
        title += "\ncontrol: the base DiFix tuned as long as tuned, on fresh out-of-domain data (no people)"
    columns = (*(NVS_ARM_COLUMNS.get(arm, extra_arm_title(arm)) for arm in arms), "ground truth")
    return image_grid(
        rows, columns, [view_title(None, cam, frame) for frame, cam in picked], title, cfg.tile_height_in, cfg.dpi
    )


def write_before_after(
    scene: str,
    arm_csvs: Mapping[str, str | os.PathLike],
    render_dir: str | os.PathLike,
    path: str | os.PathLike,
    cfg: BeforeAfterConfig = BeforeAfterConfig(),
    title: str | None = None,
) -> None:
    save_png(before_after(scene, arm_csvs, render_dir, cfg, title), path, cfg.dpi)
