"""Evaluation of DiFix arms: on the internal test triplets and on reserved scenes' novel views.

An arm is a function that fixes a batch of renders given their reference views (``None`` for
the raw arm, which leaves renders untouched); metrics compare its output with the ground truth.
The DiFix arms' fixer is ``hi4dfix.difix.infer.difix_fixer``.

Views are streamed in chunks (:data:`DEFAULT_CHUNK_VIEWS`): a chunk is read, fixed, saved and
scored, then dropped, so an evaluation job's memory does not grow with the number of frames.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from hi4dfix.arms import CONTROL_ARMS
from hi4dfix.difix3d_plus import ProgressiveConfig, progressive_frame
from hi4dfix.io import read_image, write_image
from hi4dfix.metrics import LPIPS_FLAG_COLUMN, TEMPORAL_COLUMNS, MetricComputer, MetricsConfig
from hi4dfix.progress import Progress
from hi4dfix.render.fit import resolve_device
from hi4dfix.render.scene_renders import (
    manifest_source_cams,
    read_render_manifest,
    split_render_profile,
    target_image_path,
)
from hi4dfix.scene import MaterializedScene, load_scene
from hi4dfix.temporal import FlickerTracker
from hi4dfix.triplets import nearest_source_cam

NVS_MODES = ("postfix", "difix3d+")
Fixer = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], list[np.ndarray]]
TRIPLET_ID = re.compile(r"^(?P<scene>[^/]+)/(?P<cam>\d+)/(?P<frame>\d+)$")
LOG = logging.getLogger(__name__)


def view_image_path(out_dir: str | Path, cam: int, frame: int) -> Path:
    """Where an arm's output for one view is saved: ``{out_dir}/{cam}/{frame:06d}.png``."""
    return Path(out_dir) / str(cam) / f"{frame:06d}.png"


def arm_output_dir(arm_csv: str | Path) -> Path:
    """The folder of an arm's saved outputs, next to its per-scene CSV (``.../{arm}/{scene}/``)."""
    return Path(arm_csv).with_suffix("")


DEFAULT_CHUNK_VIEWS = MetricsConfig().chunk_views  # views held at once (config metrics.chunk_views)
def apply_arm(fixer: Fixer | None, images: Sequence[np.ndarray], refs: Sequence[np.ndarray] | None) -> list[np.ndarray]:
    return list(images) if fixer is None else fixer(images, refs)


def chunk_length(fixer: Fixer | None, chunk_views: int) -> int:
    """``chunk_views`` rounded up to whole batches of the fixer, so results do not depend on it."""
    if chunk_views < 1:
        raise ValueError(f"chunk_views must be >= 1, got {chunk_views}")
    batch = getattr(fixer, "batch_size", 1)
    return -(-chunk_views // batch) * batch


def novel_views(scene: MaterializedScene, render_dir: str | Path) -> list[dict]:
    """Held-out renders of a scene with their ground truth and same-frame source reference."""
    render_dir = Path(render_dir)
    manifest = read_render_manifest(render_dir)
    source_cams = manifest_source_cams(manifest)
    views = []
    for item in sorted(manifest["images"], key=lambda item: (item["frame"], item["cam"])):
        if item["is_source"]:
            continue
        cam, frame = item["cam"], item["frame"]
        ref_cam = nearest_source_cam(scene, source_cams, cam)
        views.append(
            {
                "frame": frame,
                "cam": cam,
                "ref_cam": ref_cam,
                "image": render_dir / item["path"],
                "target": target_image_path(render_dir, cam, frame),
                "ref": target_image_path(render_dir, ref_cam, frame),
            }
        )
    return views


def evaluate_views(
    views: Sequence[dict],
    fixer: Fixer | None,
    metrics: MetricComputer,
    mask_of: Callable[[dict], np.ndarray],
    save_dir: str | Path | None = None,
    chunk_views: int = DEFAULT_CHUNK_VIEWS,
    desc: str = "evaluate",
) -> list[dict]:
    """Metric rows (one per view, keyed by its ``frame`` and ``cam``; columns
    :data:`hi4dfix.metrics.METRIC_COLUMNS`, then ``lpips_computed``) of an arm's outputs; progress lines
    (``desc``) every so often.

    Streams: each chunk of ``chunk_views`` views (rounded up to whole batches of the fixer) is
    read, fixed, saved and scored before the next is read; only the rows are kept, and for the temporal
    columns each view's output and target until the neighbouring frames of its camera are scored
    (:class:`hi4dfix.temporal.FlickerTracker`; in frame-major order, one frame per camera)."""
    rows = []
    flicker = FlickerTracker(
        [((view.get("scene"), view["cam"]), view["frame"]) for view in views], metrics.config.person_min_side
    )
    step = chunk_length(fixer, chunk_views)
    meter = Progress(len(views), desc, unit="view")
    for start in range(0, len(views), step):
        chunk = views[start : start + step]
        images = [read_image(view["image"]) for view in chunk]
        refs = None if fixer is None else [read_image(view["ref"]) for view in chunk]
        outputs = apply_arm(fixer, images, refs)
        del images, refs
        if save_dir is not None:
            for view, output in zip(chunk, outputs):
                write_image(view_image_path(save_dir, view["cam"], view["frame"]), output)
        targets = [read_image(view["target"]) for view in chunk]
        masks = [mask_of(view) for view in chunk]
        scores = metrics.compute_batch(outputs, targets, masks=masks, labels=[str(view["image"]) for view in chunk])
        for view, row in zip(chunk, scores):
            flag = row.pop(LPIPS_FLAG_COLUMN)  # after the metric columns, as in the per-scene CSVs
            temporal = dict.fromkeys(TEMPORAL_COLUMNS, math.nan)
            rows.append({"frame": view["frame"], "cam": view["cam"], **row, **temporal, LPIPS_FLAG_COLUMN: flag})
        for offset, (output, target, mask) in enumerate(zip(outputs, targets, masks)):
            for index, values in flicker.add(start + offset, output, target, mask).items():
                rows[index].update(values)  # a view's row may come before its previous frame's
        del outputs, targets, masks
        meter.update(len(chunk))
    meter.close()
    return rows


def progressive_views(
    scene: MaterializedScene,
    views: Sequence[dict],
    profile: Mapping,
    source_cams: Sequence[int],
    fixer: Fixer,
    out_dir: str | Path,
    progressive: ProgressiveConfig = ProgressiveConfig(),
) -> list[dict]:
    """Re-render the held-out views of ``views`` with Difix3D+'s progressive update; same views, new images."""
    source, _pattern, cfg = split_render_profile(dict(profile))
    if source != "fit":
        raise ValueError("nvs.mode difix3d+ needs a render profile with source: fit (it refits the Gaussians)")
    device = resolve_device(cfg.device)
    updated = []
    for frame in sorted({view["frame"] for view in views}):
        frame_views = [view for view in views if view["frame"] == frame]
        renders, log = progressive_frame(
            scene, frame, source_cams, [v["cam"] for v in frame_views], cfg, fixer, progressive, device
        )
        LOG.info(
            "frame %d: %d fixes, %d of %d steps on novel views", frame, len(log.rounds), log.kinds.count("novel"),
            len(log.kinds),
        )  # fmt: skip
        for view in frame_views:
            path = view_image_path(out_dir, view["cam"], frame)
            write_image(path, renders[view["cam"]])
            updated.append({**view, "image": path})
    return updated


# Arms whose renders an NVS mode refits (the others are the render stage's fit): the delta table's
# ``refit`` column. The raw arm is never refit: it is the render stage's fit of the same frame, with
# the same initial Gaussians and as many steps on the source views as a refit has in all.
REFIT_ARMS = {"postfix": (), "difix3d+": ("base", "tuned", "control")}  # every DiFix arm


def refit_note(mode: str) -> str:
    if not REFIT_ARMS[mode]:
        return f"nvs.mode {mode}: no arm was refit (every arm starts from the render stage's renders)."
    return (
        f"nvs.mode {mode}: arms {' and '.join(REFIT_ARMS[mode])} were refit with Difix3D+'s progressive update "
        "(column `refit`); raw is the render stage's fit, with as many fitting steps from the same initial "
        "Gaussians."
    )


def with_refit_column(table, mode: str):
    """The delta table with ``refit``: the arms of each row's comparison that ``mode`` refit (``none``)."""
    refit = set(REFIT_ARMS[mode])

    def was_refit(arm: str) -> bool:  # an extra arm (difix.extra_arms) is refit as every fixer arm is
        return arm in refit or (bool(refit) and arm not in CONTROL_ARMS)

    table = table.copy()
    table["refit"] = [
        "+".join(arm for arm in str(c).split("_vs_") if was_refit(arm)) or "none" for c in table["comparison"]
    ]
    return table


def evaluate_nvs(
    mode: str,
    scene_dir: str | Path,
    render_dir: str | Path,
    profile: Mapping,
    fixer: Fixer | None,
    metrics: MetricComputer,
    save_dir: str | Path | None = None,
    chunk_views: int = DEFAULT_CHUNK_VIEWS,
    progressive: ProgressiveConfig = ProgressiveConfig(),
) -> list[dict]:
    """NVS metrics of one arm on one scene. ``postfix``: DiFix on the held-out renders.
    ``difix3d+``: progressive 3D updates with DiFix while fitting (one frame at a time), then the
    post-fix ``progressive.postfix`` says (upstream: DiFix without a reference). The raw arm (no
    fixer) is the plain render in both modes."""
    if mode not in NVS_MODES:
        raise ValueError(f"nvs.mode {mode!r}: expected one of {NVS_MODES}")
    scene = load_scene(scene_dir)
    views = novel_views(scene, render_dir)
    postfix = fixer
    if mode == "difix3d+" and fixer is not None:
        if save_dir is None:
            raise ValueError("nvs.mode difix3d+ needs a save_dir for its progressive renders")
        manifest = read_render_manifest(render_dir)
        source_cams = manifest_source_cams(manifest)
        views = progressive_views(
            scene, views, profile, source_cams, fixer, Path(save_dir) / "progressive", progressive
        )
        if progressive.postfix == "none":
            postfix = None
        elif progressive.postfix == "single":
            postfix = without_reference(fixer)
    desc = f"NVS {scene.name}, {'raw' if fixer is None else 'DiFix'} arm"
    return evaluate_views(
        views, postfix, metrics, lambda view: scene.load_mask(view["cam"], view["frame"]), save_dir, chunk_views, desc
    )


def without_reference(fixer: Fixer) -> Fixer:
    """``fixer`` run as a single-image DiFix: its reference views are dropped."""

    def fix(images: Sequence[np.ndarray], refs: Sequence[np.ndarray] | None) -> list[np.ndarray]:
        return fixer(images, None)

    fix.batch_size = getattr(fixer, "batch_size", 1)
    return fix


def triplet_views(test_triplets: Mapping[str, Mapping[str, str]]) -> list[dict]:
    views = []
    for sample_id, sample in sorted(test_triplets.items()):
        match = TRIPLET_ID.match(sample_id)
        if match is None:
            raise ValueError(f"triplet id {sample_id!r} is not of the form scene/cam/frame")
        views.append(
            {
                "id": sample_id,
                "scene": match["scene"],
                "cam": int(match["cam"]),
                "frame": int(match["frame"]),
                "image": sample["image"],
                "target": sample["target_image"],
                "ref": sample["ref_image"],
            }
        )
    return views


def evaluate_difix_arms(
    test_triplets: Mapping[str, Mapping[str, str]],
    fixers: Mapping[str, Fixer | None],
    metrics: MetricComputer,
    scene_dirs: Sequence[str | Path],
    chunk_views: int = DEFAULT_CHUNK_VIEWS,
) -> list[dict]:
    """Rows (arm, id, metrics) for each arm on the test triplets; person region from scene masks."""
    views = triplet_views(test_triplets)
    scenes = {scene.name: scene for scene in map(load_scene, scene_dirs)}
    missing = sorted({view["scene"] for view in views} - set(scenes))
    if missing:
        raise ValueError(f"test triplets name scenes without a materialized scene: {', '.join(missing)}")

    def mask_of(view: dict) -> np.ndarray:
        return scenes[view["scene"]].load_mask(view["cam"], view["frame"])

    rows = []
    for arm, fixer in fixers.items():
        scored = evaluate_views(views, fixer, metrics, mask_of, chunk_views=chunk_views, desc=f"evaluate {arm} arm")
        for view, row in zip(views, scored):
            rows.append({"arm": arm, "id": view["id"], **row})
    return rows
