"""Evaluation of DiFix arms: on the internal test triplets and on reserved scenes' novel views.

An arm is a function that fixes a batch of renders given their reference views (``None`` for
the raw arm, which leaves renders untouched); metrics compare its output with the ground truth.

Views are streamed in chunks (:data:`DEFAULT_CHUNK_VIEWS`): a chunk is read, fixed, saved and
scored, then dropped, so an evaluation job's memory does not grow with the number of frames.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hi4dfix.difix3d_plus import ProgressiveConfig, progressive_frame
from hi4dfix.io import read_image, write_image
from hi4dfix.metrics import MetricComputer, MetricsConfig
from hi4dfix.progress import Progress
from hi4dfix.render.fit import resolve_device
from hi4dfix.render.scene_renders import (
    manifest_source_cams,
    read_render_manifest,
    split_render_profile,
    target_image_path,
)
from hi4dfix.scene import MaterializedScene, load_scene
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
COMPILE_CHOICES = ("auto", True, False)
DTYPE_CHOICES = ("auto", "bfloat16", "float32")


@dataclass(frozen=True)
class InferenceConfig:
    """How the pipeline runs DiFix (config ``difix.inference``).

    compile: ``auto`` compiles (``torch.compile``, CUDA graphs with ``reduce-overhead``) where the
    model runs on CUDA and stays eager on CPU. Compiled, every model call gets ``batch_size``
    samples (the last batch is padded), so the graphs of a processing size are captured once.
    dtype: ``auto`` is bfloat16 on CUDA, float32 on CPU.
    """

    batch_size: int = 4
    compile: str | bool = "auto"
    compile_mode: str = "reduce-overhead"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"difix.inference.batch_size must be >= 1, got {self.batch_size}")
        if self.compile not in COMPILE_CHOICES:
            raise ValueError(f"difix.inference.compile must be one of {COMPILE_CHOICES}, got {self.compile!r}")
        if self.dtype not in DTYPE_CHOICES:
            raise ValueError(f"difix.inference.dtype must be one of {DTYPE_CHOICES}, got {self.dtype!r}")

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> "InferenceConfig":
        options = dict(options or {})
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"difix.inference: unknown keys {unknown}")
        return cls(**options)

    def compiled_on(self, device_type: str) -> bool:
        return device_type == "cuda" if self.compile == "auto" else bool(self.compile)

    def dtype_name_on(self, device_type: str) -> str:
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if device_type == "cuda" else "float32"


@dataclass(frozen=True)
class FixerTiming:
    """Wall time of a fixer's batches (model call, resizing, copies to and from the device).

    The first batch of each processing size is kept apart: it includes compilation and CUDA
    graph capture when the model is compiled."""

    views: int  # views in the timed batches
    seconds: float
    first_views: int  # views in the first batch of each size
    first_seconds: float

    @property
    def views_per_s(self) -> float:
        return self.views / self.seconds if self.seconds > 0 else float("nan")

    @property
    def ms_per_view(self) -> float:
        return 1000.0 * self.seconds / self.views if self.views else float("nan")

    def describe(self) -> str:
        return (
            f"DiFix: {self.views} views in {self.seconds:.2f} s after the first batch of each size: "
            f"{self.views_per_s:.2f} views/s, {self.ms_per_view:.1f} ms/view; first batches "
            f"({self.first_views} views, with any compilation) {self.first_seconds:.2f} s"
        )


class DifixFixer:
    """A :data:`Fixer` running a loaded DiFix model one batch at a time, timing each batch.

    Noise is drawn from the fixer's count of views fixed so far, so fixing a list in chunks
    whose sizes are multiples of ``batch_size`` gives the same images as fixing it at once.
    ``fix_options`` go to :func:`hi4dfix.difix.infer.fix_images` (``resolution``, ``seed``...).
    """

    def __init__(
        self,
        model,
        batch_size: int = 4,
        fixed_shapes: bool = False,
        compile_cache_dir: str | Path | None = None,
        compile_mode: str | None = None,
        **fix_options: Any,
    ) -> None:
        from hi4dfix.difix.data import model_input_size
        from hi4dfix.difix.infer import fix_images

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.fixed_shapes = fixed_shapes
        self.fix_options = fix_options
        self.views_done = 0
        self._fix_images, self._model_input_size = fix_images, model_input_size
        self.name = "DiFix"
        self._sizes_seen: set[tuple[int, int]] = set()
        self._image_sizes_logged: set[tuple[int, int]] = set()
        self._timed = [0, 0.0]  # views, seconds
        self._first = [0, 0.0]
        # a compiled model: the study compile cache's entry of each processing size, loaded before
        # its first batch compiles, saved after it (hi4dfix.difix.compile_cache)
        self.compile_cache_dir, self.compile_mode = compile_cache_dir, compile_mode
        self.compile_caches: dict[tuple[int, int], Any] = {}

    def _open_compile_caches(self, sizes: set[tuple[int, int]], with_refs: bool) -> list[Any]:
        from hi4dfix.difix.compile_cache import CompileKey, open_study_cache
        from hi4dfix.difix.layout import uses_channels_last

        if self.compile_cache_dir is None or getattr(self.model, "_compiled_fix", None) is None:
            return []
        opened = []
        for size in sorted(sizes - set(self.compile_caches)):
            key = CompileKey.for_process(
                "infer", self.model.difix_config, size, self.batch_size, self.compile_mode, self.model.timesteps.device,
                dtype=str(self.model.vae.dtype).removeprefix("torch."), views=2 if with_refs else 1,
                channels_last=uses_channels_last(self.model),
            )
            self.compile_caches[size] = open_study_cache(self.compile_cache_dir, key)
            opened.append(self.compile_caches[size])
        return opened

    def __call__(self, images: Sequence[np.ndarray], refs: Sequence[np.ndarray] | None) -> list[np.ndarray]:
        outputs: list[np.ndarray] = []
        resolution, long_side = self.fix_options.get("resolution"), self.fix_options.get("long_side")
        for start in range(0, len(images), self.batch_size):
            batch = list(images[start : start + self.batch_size])
            batch_refs = None if refs is None else list(refs[start : start + self.batch_size])
            sizes = set()
            for height, width in {im.shape[:2] for im in batch}:
                size = self._model_input_size(height, width, resolution, long_side)
                if (height, width) not in self._image_sizes_logged:
                    LOG.info("%s: processing size %dx%d (HxW) for %dx%d images", self.name, *size, height, width)
                    self._image_sizes_logged.add((height, width))
                sizes.add(size)
            new_caches = self._open_compile_caches(sizes, refs is not None)
            started = time.perf_counter()
            outputs.extend(self._fix_images(
                self.model, batch, batch_refs, batch_size=self.batch_size, pad_batches=self.fixed_shapes,
                index_offset=self.views_done, **self.fix_options,
            ))  # fmt: skip
            seconds = time.perf_counter() - started  # outputs are on the host: the device is done
            tally = self._timed if sizes <= self._sizes_seen else self._first
            tally[0] += len(batch)
            tally[1] += seconds
            self._sizes_seen |= sizes
            self.views_done += len(batch)
            for cache in new_caches:
                cache.save()
        return outputs

    def timing(self) -> FixerTiming:
        return FixerTiming(self._timed[0], self._timed[1], self._first[0], self._first[1])


def difix_fixer(
    spec: str | Path | None,
    hub_cache_dir: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    *,
    inference: InferenceConfig | Mapping[str, Any] | None = None,
    long_side: int | None = None,
    resolution: str | None = None,
    compile_cache_dir: str | Path | None = None,
    cudnn_benchmark: bool | None = None,
    **fix_options: Any,
) -> DifixFixer | None:
    """A fixer running DiFix from ``spec`` (pkl, folder or Hub id), loaded once; None for the raw arm.

    ``inference``: the config's ``difix.inference`` (compilation, dtype, batch size; ``batch_size``
    given here wins). ``long_side`` / ``resolution``: the processing size
    (``hi4dfix.difix.data.model_input_size``); the workflow passes the tuning run's, so both arms
    run at the scale the tuned model saw. ``compile_cache_dir``: the study compile cache
    (``difix.compile_cache_dir``; compiled models load their graphs from it and save new ones, the
    live caches kept node-local). ``fix_options`` go to
    :func:`hi4dfix.difix.infer.fix_images` (``seed``...).
    """
    if spec is None:
        return None
    import torch

    from hi4dfix.difix.infer import load_difix

    settings = inference if isinstance(inference, InferenceConfig) else InferenceConfig.from_dict(inference)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device_type = torch.device(device).type
    compiled = settings.compiled_on(device_type)
    if compiled and compile_cache_dir is not None:
        from hi4dfix.difix.compile_cache import use_node_local_caches

        use_node_local_caches()
    model = load_difix(
        str(spec),
        device=device,
        dtype=getattr(torch, settings.dtype_name_on(device_type)),
        hub_cache_dir=hub_cache_dir,
        compile_mode=settings.compile_mode if compiled else None,
        cudnn_benchmark=cudnn_benchmark,
    )
    fixer = DifixFixer(
        model,
        batch_size or settings.batch_size,
        fixed_shapes=compiled,
        compile_cache_dir=compile_cache_dir if compiled else None,
        compile_mode=settings.compile_mode if compiled else None,
        resolution=resolution,
        long_side=long_side,
        **fix_options,
    )
    fixer.name = str(spec)
    return fixer


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
    """Metric rows (one per view, keyed by its ``frame`` and ``cam``) of an arm's outputs; progress
    lines (``desc``) every so often.

    Streams: each chunk of ``chunk_views`` views (rounded up to whole batches of the fixer) is
    read, fixed, saved and scored before the next is read; only the rows are kept."""
    rows = []
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
        scores = metrics.compute_batch(
            outputs, targets, masks=[mask_of(view) for view in chunk], labels=[str(view["image"]) for view in chunk]
        )
        rows.extend({"frame": view["frame"], "cam": view["cam"], **row} for view, row in zip(chunk, scores))
        del outputs, targets
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
    table = table.copy()
    table["refit"] = [
        "+".join(arm for arm in str(c).split("_vs_") if arm in refit) or "none" for c in table["comparison"]
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
