"""Temporal consistency of an arm's views: flicker against the ground truth over consecutive frames of a camera.

For a camera's frame t and its previous frame t-1 (the previous one evaluated: with ``materialize.frame_stride``
or a sparse split, the previous evaluated frame), with F the arm's output and G the ground truth:

* ``flicker``: mean over pixels and channels of ``|(F_t - F_t-1) - (G_t - G_t-1)|``: change the arm adds or
  removes between frames that the scene did not have. An arm that reproduces the ground truth's motion
  exactly scores 0, whatever its per-frame error; per-frame noise or a per-frame varying fix scores high.
* ``flicker_flow``: the same with frame t-1 (of F and of G) warped onto frame t by the optical flow of the
  ground truth (OpenCV DIS, preset medium, on luminance), so that what moved is compared where it moved to.
* ``*_person``: the same over the bounding box of the person masks of both frames (grown as the other person
  metrics' box, :func:`hi4dfix.metrics.person_bbox`); NaN where neither frame shows a person.

A camera's first frame has no previous frame: its temporal columns are NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import cv2
import numpy as np

from hi4dfix.metrics import TEMPORAL_COLUMNS, crop, person_bbox


def ground_truth_flow(target_prev: np.ndarray, target: np.ndarray) -> np.ndarray:
    """HxWx2 flow from frame t to frame t-1 (``target(p) ~ target_prev(p + flow(p))``), DIS on luminance."""
    gray = [
        cv2.cvtColor(np.round(np.clip(im, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
        for im in (target, target_prev)
    ]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(gray[0], gray[1], None)


def warp_to(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` (frame t-1) sampled at ``p + flow(p)``: frame t-1 moved onto frame t (bilinear, edges replicated)."""
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        np.ascontiguousarray(image, dtype=np.float32), grid_x + flow[..., 0], grid_y + flow[..., 1],
        interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip


def temporal_error(pred_prev: np.ndarray, pred: np.ndarray, target_prev: np.ndarray, target: np.ndarray) -> float:
    """Mean ``|(pred - pred_prev) - (target - target_prev)|`` over pixels and channels."""
    diff = (pred.astype(np.float64) - pred_prev) - (target.astype(np.float64) - target_prev)
    return float(np.mean(np.abs(diff)))


def flicker_metrics(
    pred_prev: np.ndarray,
    pred: np.ndarray,
    target_prev: np.ndarray,
    target: np.ndarray,
    mask_prev: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    person_min_side: int = 32,
) -> dict[str, float]:
    """The temporal columns (:data:`hi4dfix.metrics.TEMPORAL_COLUMNS`) of frame t given frame t-1."""
    shapes = {np.shape(a) for a in (pred_prev, pred, target_prev, target)}
    if len(shapes) != 1:
        raise ValueError(f"flicker needs four images of one shape, got {sorted(shapes)}")
    flow = ground_truth_flow(target_prev, target)
    pred_warped, target_warped = warp_to(pred_prev, flow), warp_to(target_prev, flow)
    masks = [m for m in (mask_prev, mask) if m is not None]
    box = person_bbox(np.logical_or.reduce([np.asarray(m) > 0 for m in masks]), person_min_side) if masks else None
    row = {
        "flicker": temporal_error(pred_prev, pred, target_prev, target),
        "flicker_flow": temporal_error(pred_warped, pred, target_warped, target),
        "flicker_person": math.nan,
        "flicker_flow_person": math.nan,
    }
    if box is not None:
        row["flicker_person"] = temporal_error(*(crop(im, box) for im in (pred_prev, pred, target_prev, target)))
        row["flicker_flow_person"] = temporal_error(
            *(crop(im, box) for im in (pred_warped, pred, target_warped, target))
        )
    return {column: row[column] for column in TEMPORAL_COLUMNS}


def previous_views(keys: Sequence[tuple[Hashable, int]]) -> list[int | None]:
    """For views given as (camera key, frame), the index of each one's previous frame of the same camera key
    (the largest smaller frame among the views), or None for a camera's first frame."""
    by_camera: dict[Hashable, list[tuple[int, int]]] = {}
    for index, (camera, frame) in enumerate(keys):
        by_camera.setdefault(camera, []).append((int(frame), index))
    previous: list[int | None] = [None] * len(keys)
    for frames in by_camera.values():
        frames.sort()
        for (f0, i0), (f1, i1) in zip(frames, frames[1:]):
            if f0 == f1:
                raise ValueError(f"views repeat a frame of one camera: frame {f1} (views {i0} and {i1})")
            previous[i1] = i0
    return previous


@dataclass
class FlickerTracker:
    """Pairs each view with its camera's previous frame while views stream in any order, holding a view's
    images only until both its pairs are scored: in frame-major order (the NVS views) that is one frame per
    camera. ``keys``: (camera key, frame) of every view, in the order they will be added."""

    keys: Sequence[tuple[Hashable, int]]
    person_min_side: int = 32
    _previous: list[int | None] = field(init=False)
    _next: dict[int, int] = field(init=False)
    _added: set[int] = field(init=False, default_factory=set)
    _held: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._previous = previous_views(self.keys)
        self._next = {prev: index for index, prev in enumerate(self._previous) if prev is not None}

    def add(
        self, index: int, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None
    ) -> dict[int, dict[str, float]]:
        """Adds view ``index``; returns the temporal columns of every view whose pair is now complete: this
        view's (NaN for a camera's first frame) once its previous frame is in, and its next frame's if that
        came first."""
        if index in self._added:
            raise ValueError(f"view {index} was added twice")
        self._added.add(index)
        self._held[index] = (pred, target, mask)
        previous, following = self._previous[index], self._next.get(index)
        done: dict[int, dict[str, float]] = {}
        if previous is None:
            done[index] = {column: math.nan for column in TEMPORAL_COLUMNS}
        for earlier, later in ((previous, index), (index, following)):
            if earlier is not None and later is not None and {earlier, later} <= self._added:
                (p0, t0, m0), (p1, t1, m1) = self._held[earlier], self._held[later]
                done[later] = flicker_metrics(p0, p1, t0, t1, m0, m1, self.person_min_side)
        for view in (previous, index, following):  # a view is needed until both its neighbours are in
            if view in self._held and all(
                n is None or n in self._added for n in (self._previous[view], self._next.get(view))
            ):
                del self._held[view]
        return done

    @property
    def held(self) -> int:
        """Views whose images are held, waiting for a neighbour frame."""
        return len(self._held)
