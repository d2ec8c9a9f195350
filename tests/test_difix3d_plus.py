"""Difix3D+ as upstream's gsplat example runs it: the fix schedule, the pose shifts, the sampling
share and the loss weights reach the fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import hi4dfix.difix3d_plus as difix3d_plus
from hi4dfix.difix3d_plus import (
    ProgressiveConfig,
    c2w,
    novel_views_loss,
    pose_distance,
    progressive_fit,
    progressive_frame,
    shift_poses,
)
from hi4dfix.evaluate import REFIT_ARMS, with_refit_column
from hi4dfix.render.fit import RenderConfig, SourceView, fit_targets, init_frame_gaussians, views_loss
from hi4dfix.render.poses import frame_vertices
from hi4dfix.render.rasterize import resolve_backend

torch.set_num_threads(1)
CFG = RenderConfig(fit_steps=20, num_gaussians=200, device="cpu")


def test_defaults_are_upstreams_and_the_schedule_scales_to_the_fit():
    plus = ProgressiveConfig()
    assert (plus.rounds, plus.train_share, plus.train_weight, plus.novel_weight, plus.pose_shift) == (
        15, 0.7, 1.5, 0.3, 0.5,
    )  # fmt: skip
    assert plus.postfix == "single"
    # upstream: fixes every 2,000 steps from step 30,000 to 58,000 of 60,000; here 60 steps
    assert plus.fix_steps(60_000) == list(range(30_000, 60_000, 2_000))
    assert plus.fix_steps(60) == list(range(30, 60, 2))
    assert ProgressiveConfig(rounds=2, start_share=0.0).fix_steps(6) == [0, 3]
    assert ProgressiveConfig.from_nvs({"mode": "difix3d+", "rounds": 3, "novel_weight": 0.1}) == ProgressiveConfig(
        rounds=3, novel_weight=0.1
    )
    for bad in ({"train_share": 1.5}, {"novel_weight": 0}, {"postfix": "twice"}, {"rounds": 0}):
        with pytest.raises(ValueError, match=f"nvs.{next(iter(bad))}"):
            ProgressiveConfig(**bad)


def pose(x: float, yaw_deg: float = 0.0) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    out = np.eye(4)
    out[:3, :3] = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()
    out[0, 3] = x
    return out


def test_shift_poses_moves_the_nearest_pose_by_the_distance_as_upstream():
    start, target = pose(0.0), pose(2.0, 40.0)
    shifted = shift_poses([start, pose(-5.0)], [target], 0.5)[0]
    np.testing.assert_allclose(shifted[:3, 3], [0.5, 0, 0])  # from the nearer pose, 0.5 along the line
    yaw = np.degrees(np.arctan2(shifted[0, 2], shifted[0, 0]))
    assert yaw == pytest.approx(40.0 * 0.25, abs=1e-6)  # rotation slerped by distance / translation (0.25)
    current, steps = [start], 0
    while not np.allclose(current[0], target):
        current = shift_poses(current, [target], 0.5)
        steps += 1
    # round 3 lands on the target's position (within the distance of it: upstream's overshoot rule) with the
    # rotation half-way (30 deg); round 4 is within the distance of the target (10 deg = 0.17) and takes it
    assert steps == 4
    assert pose_distance(pose(0.0), pose(1.0, 90.0)) == pytest.approx(1.0 + np.pi / 2)


@pytest.fixture(scope="module")
def frame_setup(materialized_scene):
    scene, frame = materialized_scene, materialized_scene.frames[0]
    source = scene.mono_cam
    views = [SourceView(scene.cameras[source], scene.load_image(source, frame), scene.load_mask(source, frame))]
    targets = [scene.cameras[c] for c in scene.cam_ids if c != source]
    verts = frame_vertices(scene, frame, CFG.pose_source, CFG.pose_error)
    return scene, frame, views, targets, verts


def fit(frame_setup, plus: ProgressiveConfig, seed: int = 5):
    scene, frame, views, targets, verts = frame_setup
    calls = []

    def fixer(images, refs):
        calls.append((len(images), refs))
        return [np.clip(image + 0.1, 0, 1) for image in images]

    model = init_frame_gaussians(verts, views, CFG, scene.name, frame, torch.device("cpu"))
    log = progressive_fit(model, views, targets, CFG, fixer, plus, torch.device("cpu"), np.random.default_rng(seed))
    return log, calls, model


def test_sampling_share_and_rounds_reach_the_fit(frame_setup):
    plus = ProgressiveConfig(rounds=3, start_share=0.25, train_share=0.7, pose_shift=0.5)
    log, calls, _ = fit(frame_setup, plus)
    first = plus.fix_steps(CFG.fit_steps)[0]
    assert first == 5 and len(log.kinds) == CFG.fit_steps
    assert set(log.kinds[:first]) == {"train"}  # no novel views before the first fix
    # after it, each step is novel exactly when its draw is >= train_share (upstream: random() < 0.7 trains)
    draws = np.random.default_rng(5).random(CFG.fit_steps - first)
    assert log.kinds[first:] == ["novel" if d >= 0.7 else "train" for d in draws]
    assert 0 < log.kinds.count("novel") < CFG.fit_steps - first
    # one DiFix call per round, with every held-out camera and a reference (the source view) each
    _, _, views, targets, _ = frame_setup
    assert len(log.rounds) == len(calls) == 3
    assert all(n == len(targets) and refs is not None and len(refs) == n for n, refs in calls)
    # the novel cameras move toward the held-out cameras round by round
    distances = [[pose_distance(c2w(cam), c2w(t)) for cam, t in zip(cams, targets)] for cams in log.rounds]
    assert all(np.all(np.array(b) <= np.array(a) + 1e-9) for a, b in zip(distances, distances[1:]))
    assert np.mean(distances[0]) < np.mean([pose_distance(c2w(views[0].camera), c2w(t)) for t in targets])
    assert all(fit(frame_setup, dataclasses.replace(plus, train_share=share))[0].kinds[first:] == [kind] * (
        CFG.fit_steps - first) for share, kind in ((1.0, "train"), (0.0, "novel")))  # fmt: skip


def test_loss_weights_reach_the_fit(frame_setup):
    plus = ProgressiveConfig(rounds=2, start_share=0.5, train_share=0.5)
    log, _, _ = fit(frame_setup, plus)
    assert {(k, w) for k, w in zip(log.kinds, log.weights)} == {("train", 1.5), ("novel", 0.3)}
    heavier, _, _ = fit(frame_setup, dataclasses.replace(plus, train_weight=3.0, novel_weight=0.6))
    assert heavier.kinds == log.kinds
    # the first step is the same fit of the same views: its loss doubles with the weight
    assert heavier.losses[0] == pytest.approx(2 * log.losses[0], rel=1e-6)
    first_novel = log.kinds.index("novel")
    assert heavier.weights[first_novel] == 0.6


def test_novel_view_losses_leave_out_pixels_of_alpha_at_most_a_half(frame_setup):
    scene, frame, views, targets, verts = frame_setup
    model = init_frame_gaussians(verts, views, CFG, scene.name, frame, torch.device("cpu"))
    camera = targets[0]
    alpha = difix3d_plus.render_alpha(model, camera, CFG, torch.device("cpu"))
    inside = alpha > 0.5
    assert 0 < inside.sum() < inside.size
    fixed = np.random.default_rng(0).random((camera.height, camera.width, 3), dtype=np.float32)
    other = fixed.copy()
    other[~inside] = 1.0 - other[~inside]  # differs only where alpha <= 0.5
    background = torch.zeros(3)
    backend = resolve_backend(CFG.backend)
    losses = [
        [f(model.activated(), fit_targets([SourceView(camera, image, inside)], CFG, torch.device("cpu")), CFG,
           background, backend) for image in (fixed, other)]
        for f in (novel_views_loss, views_loss)
    ]  # fmt: skip
    assert float(losses[0][0]) == pytest.approx(float(losses[0][1]), rel=1e-6)  # upstream: those pixels ignored
    assert float(losses[0][0]) < float(losses[1][0])  # today's source-view loss counts them (composited on black)
    # inside the mask the fixed image counts
    brighter = fixed.copy()
    brighter[inside] = np.clip(brighter[inside] + 0.3, 0, 1)
    changed = novel_views_loss(
        model.activated(), fit_targets([SourceView(camera, brighter, inside)], CFG, torch.device("cpu")), CFG,
        background, backend,
    )  # fmt: skip
    assert float(changed) != pytest.approx(float(losses[0][0]), rel=1e-3)


def test_novel_steps_of_the_fit_see_nothing_where_the_render_had_no_alpha(frame_setup, monkeypatch):
    # every rendered alpha 0: the fixed novel views are all outside their masks, so novel steps lose nothing
    monkeypatch.setattr(difix3d_plus, "render_alpha", lambda model, camera, cfg, device: np.zeros(
        (camera.height, camera.width), dtype=np.float32))  # fmt: skip
    log, _, _ = fit(frame_setup, ProgressiveConfig(rounds=2, start_share=0.5, train_share=0.5))
    novel = [loss for kind, loss in zip(log.kinds, log.losses) if kind == "novel"]
    assert novel and all(loss == 0.0 for loss in novel)
    assert all(loss > 0 for kind, loss in zip(log.kinds, log.losses) if kind == "train")


def test_progressive_frame_renders_every_target(materialized_scene):
    scene = materialized_scene
    targets = [c for c in scene.cam_ids if c != scene.mono_cam]
    renders, log = progressive_frame(
        scene, scene.frames[0], [scene.mono_cam], targets, CFG, lambda images, refs: list(images),
        ProgressiveConfig(rounds=2), torch.device("cpu"),
    )  # fmt: skip
    assert sorted(renders) == sorted(targets) and len(log.rounds) == 2
    assert all(r.shape == (scene.cameras[c].height, scene.cameras[c].width, 3) for c, r in renders.items())


def test_the_delta_table_says_which_arms_were_refit():
    import pandas as pd

    table = pd.DataFrame({"comparison": ["tuned_vs_base", "tuned_vs_raw", "base_vs_raw"]})
    assert list(with_refit_column(table, "difix3d+")["refit"]) == ["tuned+base", "tuned", "base"]
    assert list(with_refit_column(table, "postfix")["refit"]) == ["none"] * 3
    assert "raw" not in REFIT_ARMS["difix3d+"]
