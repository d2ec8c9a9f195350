"""DiFix triplets from renders: the JSON that Difix's training code reads.

Schema: ``{"train": {id: {"image", "target_image", "ref_image", "prompt"}}, "test": {...}}``, plus
``target_mask`` / ``ref_mask`` (the materialized scene's person masks of those views), extra keys
that Difix's training code ignores.
``image`` is a render from imperfect poses at a held-out camera, ``target_image`` the ground truth
there, ``ref_image`` a clean reference view. The default reference (``same_time``) is the ground
truth at the source camera at the same frame: target ``(cam_target, t)``, reference ``(cam_source, t)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from hi4dfix.io import write_json
from hi4dfix.render.scene_renders import manifest_source_cams, read_render_manifest, target_image_path
from hi4dfix.scene import MaterializedScene

PROMPT = "remove degradation"
REFERENCES = ("same_time", "temporal", "mixed")


@dataclass(frozen=True)
class TripletConfig:
    reference: str = "same_time"  # same_time | temporal (t±k at the source camera) | mixed
    temporal_k: int = 1
    cams: tuple[int, ...] | None = None  # target cameras; None: every non-source camera
    max_samples: int | None = None  # per split, drawn deterministically by seed
    seed: int = 0

    def __post_init__(self) -> None:
        if self.reference not in REFERENCES:
            raise ValueError(f"triplets.reference must be one of {REFERENCES}, got {self.reference!r}")
        if self.temporal_k < 1:
            raise ValueError(f"triplets.temporal_k must be >= 1, got {self.temporal_k}")


def nearest_source_cam(scene: MaterializedScene, source_cams: Iterable[int], target_cam: int) -> int:
    """The source camera whose centre is closest to the target camera's."""
    target_center = scene.cameras[target_cam].center
    return min(source_cams, key=lambda cam: float(np.linalg.norm(scene.cameras[cam].center - target_center)))


def temporal_frame(frames: list[int], frame: int, k: int, rng: np.random.Generator) -> int:
    """Frame t+k or t-k (chosen by ``rng`` when both exist); the nearest other frame at the ends."""
    index = frames.index(frame)
    candidates = [i for i in (index - k, index + k) if 0 <= i < len(frames)]
    if not candidates:
        candidates = [i for i in range(len(frames)) if i != index] or [index]
        candidates = [min(candidates, key=lambda i: abs(i - index))]
    return frames[candidates[int(rng.integers(len(candidates)))]]


def scene_triplets(scene: MaterializedScene, render_dir: str | Path, cfg: TripletConfig) -> dict[str, dict[str, str]]:
    """Every triplet of one scene, keyed ``{scene}/{cam}/{frame}``; paths as given by ``render_dir``."""
    render_dir = Path(render_dir)
    manifest = read_render_manifest(render_dir)
    source_cams = manifest_source_cams(manifest)
    if not source_cams:
        raise ValueError(f"{render_dir}/manifest.json: no source camera is marked")
    frames = sorted({item["frame"] for item in manifest["images"]})
    rng = np.random.default_rng([cfg.seed, *scene.name.encode()])
    triplets: dict[str, dict[str, str]] = {}
    for item in sorted(manifest["images"], key=lambda item: (item["cam"], item["frame"])):
        cam, frame = item["cam"], item["frame"]
        if item["is_source"] or (cfg.cams is not None and cam not in cfg.cams):
            continue
        ref_cam = nearest_source_cam(scene, source_cams, cam)
        reference = cfg.reference
        if reference == "mixed":
            reference = ("same_time", "temporal")[int(rng.integers(2))]
        ref_frame = frame if reference == "same_time" else temporal_frame(frames, frame, cfg.temporal_k, rng)
        triplets[f"{scene.name}/{cam}/{frame}"] = {
            "image": str(render_dir / item["path"]),
            "target_image": str(target_image_path(render_dir, cam, frame)),
            "ref_image": str(target_image_path(render_dir, ref_cam, ref_frame)),
            "prompt": PROMPT,
            # extra keys (Difix's code ignores them): person masks for tuning.loss_region: person
            "target_mask": str(scene.mask_path(cam, frame)),
            "ref_mask": str(scene.mask_path(ref_cam, ref_frame)),
        }
    return triplets


def subsample(triplets: dict[str, dict[str, str]], max_samples: int | None, seed: int) -> dict[str, dict[str, str]]:
    if max_samples is None or len(triplets) <= max_samples:
        return triplets
    keys = sorted(triplets)
    chosen = np.random.default_rng(seed).choice(len(keys), size=max_samples, replace=False)
    return {keys[i]: triplets[keys[i]] for i in sorted(chosen)}


def build_triplets(
    train: Mapping[str, tuple[MaterializedScene, str | Path]],
    test: Mapping[str, tuple[MaterializedScene, str | Path]],
    cfg: TripletConfig,
) -> dict[str, dict[str, dict[str, str]]]:
    """The ``{"train", "test"}`` dictionary from (scene, render folder) pairs per split."""
    splits = {}
    for split, scenes in (("train", train), ("test", test)):
        samples: dict[str, dict[str, str]] = {}
        for name in sorted(scenes):
            scene, render_dir = scenes[name]
            samples.update(scene_triplets(scene, render_dir, cfg))
        splits[split] = subsample(samples, cfg.max_samples, cfg.seed)
    return splits


def check_triplets(
    triplets: Mapping,
    reserved_scenes: Iterable[str],
    scene_sequences: Mapping[str, str | Path] | None = None,
    reserved_sequences: Mapping[str, str | Path] | None = None,
) -> None:
    """Refuse reserved scenes and dangling paths before anything is written.

    Reserved scenes are refused by name and, given ``reserved_sequences`` (reserved scene ->
    its Hi4D sequence folder) and ``scene_sequences`` (each sample scene -> the sequence folder
    its data came from), by data: a sample whose scene's folder is, contains or lies inside a
    reserved scene's folder is refused whatever the scene is called. Folders are compared
    after resolving symbolic links and ``..``.
    """
    reserved = set(reserved_scenes)
    reserved_dirs = {name: Path(os.path.realpath(folder)) for name, folder in (reserved_sequences or {}).items()}
    if set(triplets) != {"train", "test"}:
        raise ValueError(f"triplets must have exactly the splits train and test, got {sorted(triplets)}")
    checked_scenes: set[str] = set()
    for split, samples in triplets.items():
        for sample_id, sample in samples.items():
            scene = sample_id.split("/", 1)[0]
            if scene in reserved:
                raise ValueError(f"reserved scene {scene} would become a DiFix {split} sample ({sample_id})")
            if reserved_dirs and scene not in checked_scenes:
                _check_scene_data(scene, split, sample_id, scene_sequences or {}, reserved_dirs)
                checked_scenes.add(scene)
            for key in ("image", "target_image", "ref_image", "target_mask", "ref_mask"):
                if key in sample and not Path(sample[key]).is_file():
                    raise FileNotFoundError(f"triplet {sample_id}: {key} {sample[key]} does not exist")


def _check_scene_data(
    scene: str, split: str, sample_id: str, scene_sequences: Mapping[str, str | Path], reserved_dirs: Mapping[str, Path]
) -> None:
    if scene not in scene_sequences:
        raise ValueError(
            f"triplet {sample_id}: the sequence folder of scene {scene} is unknown, so it cannot be "
            "checked against the reserved scenes' folders"
        )
    folder = Path(os.path.realpath(scene_sequences[scene]))
    for name, reserved_dir in sorted(reserved_dirs.items()):
        if folder == reserved_dir or folder.is_relative_to(reserved_dir) or reserved_dir.is_relative_to(folder):
            raise ValueError(
                f"scene {scene} (sequence folder {scene_sequences[scene]}) would become a DiFix {split} sample "
                f"({sample_id}) but its data is reserved scene {name}'s (sequence folder {reserved_dir})"
            )


def write_triplets(
    path: str | Path,
    triplets: Mapping,
    reserved_scenes: Iterable[str],
    scene_sequences: Mapping[str, str | Path] | None = None,
    reserved_sequences: Mapping[str, str | Path] | None = None,
) -> None:
    check_triplets(triplets, reserved_scenes, scene_sequences, reserved_sequences)
    write_json(path, triplets)


def read_triplets(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
