"""Tests of hi4dfix.render on CPU: rasterizer math and gradients, poses, fits, scene renders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hi4dfix.io import read_image, write_image
from hi4dfix.render import (
    PoseErrorConfig,
    RenderConfig,
    TorchRasterConfig,
    composite_on_background,
    ingest_external,
    perturb_vertices,
    rasterize,
    read_render_manifest,
    render_from_profile,
    render_scene,
    target_image_path,
)
from hi4dfix.render.gaussians import neighbour_spacing, subsample_indices
from hi4dfix.render.poses import frame_rng, offset_frame, smooth_displacement
from hi4dfix.render.torch_backend import covariance_3d, project_gaussians


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# Scene renders use the shared session fixture ``materialized_scene`` (tests/conftest.py):
# a synthetic two-person Hi4D-layout scene, 8 cameras x 3 frames at 60x80.


def person_points(rng: np.random.Generator, x: float, count: int) -> np.ndarray:
    """Stand-in SMPL vertices: a torso ellipsoid and a head sphere at (x, 0, 0), y up, metres."""
    dirs = rng.normal(size=(count, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    head = np.arange(count) < count // 5
    radii = np.where(head[:, None], [0.11, 0.12, 0.11], [0.2, 0.7, 0.14])
    centres = np.where(head[:, None], [x, 1.6, 0.0], [x, 0.8, 0.0])
    return (dirs * radii + centres).astype(np.float32)


FAST_FIT = dict(fit_steps=40, num_gaussians=600, backend="torch", device="cpu")


# ---------------------------------------------------------------------------------------------
# rasterizer


def random_gaussians(n: int, seed: int, dtype=torch.float32, scale: float = 0.05):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([0.6, 0.6, 0.3], dtype=dtype)
    means[:, 2] += 2.0
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = scale * (0.5 + torch.rand(n, 3, generator=g, dtype=dtype))
    opacities = 0.2 + 0.6 * torch.rand(n, generator=g, dtype=dtype)
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    return means, quats, scales, opacities, colors


def pinhole(width: int, height: int, f: float, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=dtype)


def dense_reference(means, quats, scales, opacities, colors, viewmat, K, width, height, background):
    """Brute force: every Gaussian at every pixel, same projection, no tiles or buckets."""
    cfg = TorchRasterConfig()
    proj = project_gaussians(means, covariance_3d(quats, scales), opacities, viewmat, K, width, height, cfg)
    order = torch.argsort(proj.depths)
    pixel = lambda n: torch.arange(n, dtype=means.dtype) + 0.5  # noqa: E731
    ys, xs = torch.meshgrid(pixel(height), pixel(width), indexing="ij")
    T = torch.ones(height, width, dtype=means.dtype)
    rgb = torch.zeros(height, width, 3, dtype=means.dtype)
    done = torch.zeros(height, width, dtype=torch.bool)
    for i in order.tolist():
        if (proj.radii[i] == 0).any():
            continue
        dx, dy = xs - proj.means2d[i, 0], ys - proj.means2d[i, 1]
        a, b, c = proj.conics[i]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(opacities[i] * torch.exp(-sigma), max=0.999)
        alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))
        next_T = T * (1 - alpha)
        done = done | (next_T <= 1e-4)
        alpha = torch.where(done, torch.zeros_like(alpha), alpha)
        rgb = rgb + (alpha * T)[..., None] * colors[i]
        T = torch.where(done, T, T * (1 - alpha))
    return rgb + T[..., None] * background, 1 - T


def test_tiled_rasterizer_matches_dense_reference():
    params = random_gaussians(60, seed=1, dtype=torch.float64)
    K, viewmat = pinhole(40, 30, 45.0, torch.float64), torch.eye(4, dtype=torch.float64)
    bg = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64)
    rgb, alpha = rasterize(*params, viewmat, K, 40, 30, bg, backend="torch")
    ref_rgb, ref_alpha = dense_reference(*params, viewmat, K, 40, 30, bg)
    assert alpha.max() > 0.5  # the case is not empty
    torch.testing.assert_close(rgb, ref_rgb, atol=1e-9, rtol=0)
    torch.testing.assert_close(alpha, ref_alpha, atol=1e-9, rtol=0)
    for tile_size in (3, 8, 16):
        rgb_t, _ = rasterize(
            *params, viewmat, K, 40, 30, bg, backend="torch", torch_cfg=TorchRasterConfig(tile_size=tile_size)
        )
        torch.testing.assert_close(rgb_t, ref_rgb, atol=1e-9, rtol=0)


def test_projection_matches_gsplat_reference_math():
    impl = pytest.importorskip("gsplat.cuda._torch_impl")
    means, quats, scales, opacities, _ = random_gaussians(50, seed=2, dtype=torch.float64)
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[:3, 3] = torch.tensor([0.05, -0.02, 0.1])
    K = pinhole(64, 48, 60.0, torch.float64)
    covars = covariance_3d(quats, scales)
    radii, means2d, depths, conics, _ = impl._fully_fused_projection(means, covars, viewmat[None], K[None], 64, 48)
    ours = project_gaussians(means, covars, opacities, viewmat, K, 64, 48, TorchRasterConfig())
    torch.testing.assert_close(ours.means2d, means2d[0])
    torch.testing.assert_close(ours.conics, conics[0])
    torch.testing.assert_close(ours.depths, depths[0])


def test_gradients_match_finite_differences():
    params = [p.clone().requires_grad_(True) for p in random_gaussians(5, seed=3, dtype=torch.float64, scale=0.06)]
    K, viewmat = pinhole(12, 10, 14.0, torch.float64), torch.eye(4, dtype=torch.float64)
    bg = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    weights = torch.rand(10, 12, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(*p):
        rgb, alpha = rasterize(*p, viewmat, K, 12, 10, bg, backend="torch")
        return (torch.cat([rgb, alpha[..., None]], -1) * weights).sum()

    loss(*params).backward()
    eps = 1e-6
    for param in params:
        flat = param.detach().view(-1)
        for k in range(flat.numel()):
            saved = flat[k].item()
            with torch.no_grad():
                flat[k] = saved + eps
                up = loss(*params).item()
                flat[k] = saved - eps
                down = loss(*params).item()
                flat[k] = saved
            numeric = (up - down) / (2 * eps)
            assert param.grad.view(-1)[k].item() == pytest.approx(numeric, rel=1e-4, abs=1e-6)


def test_small_buckets_and_checkpointing_give_the_same_image_and_gradients():
    results = []
    for cfg in (TorchRasterConfig(), TorchRasterConfig(max_bucket_pairs=64, checkpoint_above_pairs=0)):
        params = [p.clone().requires_grad_(True) for p in random_gaussians(200, seed=4, dtype=torch.float64)]
        K, viewmat = pinhole(40, 30, 45.0, torch.float64), torch.eye(4, dtype=torch.float64)
        rgb, alpha = rasterize(*params, viewmat, K, 40, 30, None, backend="torch", torch_cfg=cfg)
        (rgb.sum() + alpha.square().sum()).backward()
        results.append([rgb.detach(), alpha.detach()] + [p.grad for p in params])
    for default, chunked in zip(*results):
        torch.testing.assert_close(chunked, default, rtol=1e-9, atol=1e-12)


def test_single_gaussian_lands_where_the_camera_projects_it():
    width, height = 32, 24
    K = pinhole(width, height, 30.0)
    viewmat = torch.eye(4)
    viewmat[:3, 3] = torch.tensor([0.1, -0.2, 0.5])  # a camera not at the origin
    mean = torch.tensor([[0.21, 0.13, 2.5]])
    cam = viewmat[:3, :3] @ mean[0] + viewmat[:3, 3]
    u, v = (K @ cam / cam[2])[:2].tolist()
    bg = torch.tensor([0.3, 0.6, 0.9])
    rgb, alpha = rasterize(
        mean, torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.04), torch.tensor([0.9]),
        torch.tensor([[1.0, 0.0, 0.0]]), viewmat, K, width, height, bg, backend="torch",
    )  # fmt: skip
    peak = int(alpha.argmax())
    assert (peak % width, peak // width) == (int(u), int(v))
    # isotropic splat: screen covariance s^2 J J^T (perspective Jacobian) plus gsplat's 0.3 px^2 dilation
    x, y, z = cam.double().tolist()
    J = np.array([[30.0 / z, 0.0, -30.0 * x / z**2], [0.0, 30.0 / z, -30.0 * y / z**2]])
    cov = 0.04**2 * J @ J.T + 0.3 * np.eye(2)
    d = np.array([int(u) + 0.5 - u, int(v) + 0.5 - v])
    assert float(alpha.max()) == pytest.approx(0.9 * math.exp(-0.5 * d @ np.linalg.solve(cov, d)), rel=1e-5)
    far = alpha < 1e-6
    assert far.sum() > 0.8 * width * height
    torch.testing.assert_close(rgb[far], bg.expand(int(far.sum()), 3))
    # behind the camera: nothing at all
    rgb_b, alpha_b = rasterize(
        -mean, torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.04), torch.tensor([0.9]),
        torch.tensor([[1.0, 0.0, 0.0]]), torch.eye(4), K, width, height, bg, backend="torch",
    )  # fmt: skip
    assert float(alpha_b.abs().max()) == 0.0
    torch.testing.assert_close(rgb_b, bg.expand(height, width, 3))


def test_front_gaussian_occludes_back_one():
    K = pinhole(16, 16, 20.0)
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(2, 1)
    scales = torch.tensor([[0.3, 0.3, 0.3], [0.3, 0.3, 0.3]])
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for order in ([0, 1], [1, 0]):  # input order must not matter, depth does
        rgb, _ = rasterize(
            means[order],
            quats,
            scales,
            torch.tensor([0.99, 0.99]),
            colors[order],
            torch.eye(4),
            K,
            16,
            16,
            None,
            backend="torch",
        )
        assert rgb[8, 8, 0] > 0.95 and rgb[8, 8, 2] < 0.05


def test_backend_names_are_checked():
    with pytest.raises(ValueError, match="backend"):
        rasterize(*random_gaussians(2, 0), torch.eye(4), pinhole(8, 8, 8.0), 8, 8, None, backend="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="gsplat"):
            rasterize(*random_gaussians(2, 0), torch.eye(4), pinhole(8, 8, 8.0), 8, 8, None, backend="gsplat")


# ---------------------------------------------------------------------------------------------
# poses and Gaussians


def test_pose_errors_have_the_configured_size_and_are_deterministic():
    rng = np.random.default_rng(0)
    verts = np.stack([person_points(rng, -0.35, 500), person_points(rng, 0.35, 500)])
    only_trans = PoseErrorConfig(rot_deg=0, trans_mm=50, part_mm=0)
    moved = perturb_vertices(verts, only_trans, "scene", 3)
    shift = (moved - verts).mean(axis=1)
    np.testing.assert_allclose(np.linalg.norm(shift, axis=1), 0.05, rtol=1e-4)
    np.testing.assert_allclose(moved - verts, np.broadcast_to(shift[:, None], verts.shape), atol=1e-6)

    only_rot = PoseErrorConfig(rot_deg=10, trans_mm=0, part_mm=0)
    rotated = perturb_vertices(verts, only_rot, "scene", 3)
    for before, after in zip(verts, rotated):
        a, b = before - before.mean(0), after - before.mean(0)
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1), atol=1e-5)  # rigid
        R, *_ = np.linalg.lstsq(a, b, rcond=None)
        angle = np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
        assert angle == pytest.approx(10.0, abs=0.01)

    same = perturb_vertices(verts, PoseErrorConfig(), "scene", 3)
    np.testing.assert_array_equal(same, perturb_vertices(verts, PoseErrorConfig(), "scene", 3))
    assert not np.allclose(same, perturb_vertices(verts, PoseErrorConfig(), "scene", 4))
    assert not np.allclose(same, perturb_vertices(verts, PoseErrorConfig(), "other", 3))
    assert not np.allclose(same, perturb_vertices(verts, PoseErrorConfig(seed=1), "scene", 3))
    np.testing.assert_array_equal(perturb_vertices(verts, PoseErrorConfig(0, 0, 0), "s", 0), verts)


def test_part_displacement_is_smooth_with_the_configured_peak():
    rng = np.random.default_rng(1)
    verts = person_points(rng, 0.0, 2000).astype(np.float64)
    disp = smooth_displacement(verts, frame_rng(0, "s", 0, "t"), 0.03, num_fields=6, radius_m=0.25)
    assert np.linalg.norm(disp, axis=1).max() == pytest.approx(0.03)
    # nearby vertices move almost together; smoothness is what separates it from noise
    dist, idx = __import__("scipy.spatial", fromlist=["cKDTree"]).cKDTree(verts).query(verts, k=2)
    neighbour_change = np.linalg.norm(disp - disp[idx[:, 1]], axis=1)
    assert np.median(neighbour_change) < 0.1 * np.median(np.linalg.norm(disp, axis=1))


def test_temporal_offset_is_clamped_to_available_frames():
    frames = [10, 20, 30]
    assert offset_frame(20, frames, 1) == 30
    assert offset_frame(30, frames, 2) == 30
    assert offset_frame(10, frames, -1) == 10
    assert offset_frame(20, frames, 0) == 20
    with pytest.raises(ValueError, match="frame 15"):
        offset_frame(15, frames, 1)


def test_gaussian_init_helpers():
    rng = np.random.default_rng(0)
    idx = subsample_indices(100, 30, rng)
    assert len(np.unique(idx)) == 30 and idx.max() < 100
    np.testing.assert_array_equal(subsample_indices(10, 30, rng), np.arange(10))
    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0), [0.0]), -1).reshape(-1, 3) * 0.01
    np.testing.assert_allclose(np.median(neighbour_spacing(grid)), 0.01, rtol=0.2)


def test_composite_on_background():
    image = np.full((2, 3, 3), 0.25, dtype=np.float32)
    mask = np.array([[True, False, True], [False, False, True]])
    out = composite_on_background(image, mask, (1.0, 0.5, 0.0))
    np.testing.assert_allclose(out[0, 0], 0.25)
    np.testing.assert_allclose(out[0, 1], [1.0, 0.5, 0.0])


def test_render_config_from_dict_checks_keys():
    cfg = RenderConfig.from_dict(
        {"fit_steps": 5, "pose_error": {"rot_deg": 1.0}, "source_cams": [4, 16], "background": [1, 1, 1]}
    )
    assert cfg.pose_error.rot_deg == 1.0 and cfg.source_cams == (4, 16) and cfg.background == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="fit_stpes"):
        RenderConfig.from_dict({"fit_stpes": 5})
    with pytest.raises(ValueError, match="rot"):
        RenderConfig.from_dict({"pose_error": {"rot": 5}})
    with pytest.raises(ValueError, match="pose_source"):
        RenderConfig(pose_source="perfect")
    with pytest.raises(ValueError, match="background"):
        RenderConfig(background=(0.0, 2.0, 0.0))


# ---------------------------------------------------------------------------------------------
# scene renders


def test_estimated_poses_render_worse_than_gt_poses(materialized_scene, tmp_path):
    gt = render_scene(materialized_scene, tmp_path / "gt", RenderConfig(pose_source="gt", **FAST_FIT))
    est = render_scene(
        materialized_scene,
        tmp_path / "est",
        RenderConfig(
            pose_source="estimated", pose_error=PoseErrorConfig(rot_deg=15, trans_mm=150, part_mm=100), **FAST_FIT
        ),
    )
    gt_psnr, est_psnr = gt["summary"]["mean_psnr_heldout"], est["summary"]["mean_psnr_heldout"]
    print(f"held-out PSNR: gt poses {gt_psnr:.2f} dB, estimated poses {est_psnr:.2f} dB")
    # people fill little of the 60x80 frame, so errors must be large to cost much full-frame PSNR
    assert gt_psnr > est_psnr + 0.5, (gt_psnr, est_psnr)
    # the fit did fit: the source view is matched better than the held-out ones
    assert gt["summary"]["mean_psnr_source"] > gt_psnr


def test_render_scene_layout_manifest_and_determinism(materialized_scene, tmp_path):
    cfg = RenderConfig(**{**FAST_FIT, "fit_steps": 5, "num_gaussians": 300}, background=(1.0, 1.0, 1.0))
    frames = materialized_scene.frames[:2]
    manifest = render_scene(materialized_scene, tmp_path / "a", cfg, frames=frames)
    again = render_scene(materialized_scene, tmp_path / "b", cfg, frames=frames)

    assert read_render_manifest(tmp_path / "a") == manifest
    assert len(manifest["images"]) == len(materialized_scene.cam_ids) * len(frames)
    assert {i["cam"] for i in manifest["images"] if i["is_source"]} == {materialized_scene.mono_cam}
    assert manifest["config"]["pose_error"]["rot_deg"] == cfg.pose_error.rot_deg
    heldout = [i["psnr"] for i in manifest["images"] if not i["is_source"]]
    assert manifest["summary"]["mean_psnr_heldout"] == pytest.approx(np.mean(heldout))
    for item in manifest["images"]:
        path = tmp_path / "a" / item["path"]
        assert item["path"] == f"{item['cam']}/{item['frame']:06d}.png"
        assert path.read_bytes() == (tmp_path / "b" / item["path"]).read_bytes()
        assert read_image(path).shape == (materialized_scene.height, materialized_scene.width, 3)
        target = read_image(target_image_path(tmp_path / "a", item["cam"], item["frame"]))
        mask = materialized_scene.load_mask(item["cam"], item["frame"])
        np.testing.assert_allclose(target[~mask], 1.0)  # composited on the white background
        assert item["psnr"] == pytest.approx(-10 * np.log10(np.mean((read_image(path) - target) ** 2)), abs=1e-4)
    assert [i["psnr"] for i in again["images"]] == [i["psnr"] for i in manifest["images"]]


def _write_external(path: Path, image: np.ndarray, kind: str) -> np.ndarray:
    """Write ``image`` (float RGB) as a file of ``kind``; return what reading it must give."""
    import cv2
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    # 16-bit samples that are not 8-bit values times 257: a reduction to 8 bits would show
    deep = np.clip(np.round(image * 65535) + 97, 0, 65535).astype(np.uint16)
    grey8 = np.round(image.mean(axis=-1) * 255).astype(np.uint8)
    if kind == "rgb16":
        assert cv2.imwrite(str(path), deep[..., ::-1])
        return deep / 65535.0
    if kind == "rgba16":
        assert cv2.imwrite(str(path), np.dstack([deep[..., ::-1], np.full(deep.shape[:2], 65535, np.uint16)]))
        return deep / 65535.0
    if kind == "grey16":
        assert cv2.imwrite(str(path), deep[..., 1])
        return np.repeat(deep[..., 1:2] / 65535.0, 3, axis=-1)
    if kind == "grey8":
        Image.fromarray(grey8, "L").save(path)
    elif kind == "grey_alpha":
        Image.fromarray(np.dstack([grey8, np.full_like(grey8, 200)]), "LA").save(path)
    elif kind == "palette":
        Image.fromarray(np.round(image * 255).astype(np.uint8)).convert("P").save(path)
        with Image.open(path) as written:
            return np.asarray(written.convert("RGB")) / 255.0
    return np.repeat(grey8[..., None] / 255.0, 3, axis=-1)


@pytest.mark.parametrize("kind", ["rgb16", "rgba16", "grey16", "grey8", "grey_alpha", "palette"])
def test_ingest_external_converts_bit_depth_and_channels(materialized_scene, tmp_path, kind):
    """16-bit and single-channel renders used to be read as 8-bit RGB (a 16-bit grey one all white)."""
    pattern = str(tmp_path / "ext" / "{cam}" / "{frame:06d}.png")
    frames = materialized_scene.frames[:1]
    expected = {}
    for frame in frames:
        for cam in materialized_scene.cam_ids:
            path = Path(pattern.format(cam=cam, frame=frame))
            expected[(cam, frame)] = _write_external(path, materialized_scene.load_image(cam, frame), kind)
            assert read_image(path).shape == (materialized_scene.height, materialized_scene.width, 3)
            np.testing.assert_allclose(read_image(path), expected[(cam, frame)], atol=1e-6)
    manifest = ingest_external(materialized_scene, pattern, tmp_path / "out", frames=frames)
    for item in manifest["images"]:
        stored = read_image(tmp_path / "out" / item["path"])  # 8-bit, rounded
        np.testing.assert_allclose(stored, expected[(item["cam"], item["frame"])], atol=0.5 / 255 + 1e-6)


def test_ingest_external_refuses_images_it_cannot_convert(materialized_scene, tmp_path):
    from PIL import Image

    pattern = str(tmp_path / "ext" / "{cam}" / "{frame:06d}.tiff")
    frames = materialized_scene.frames[:1]
    for cam in materialized_scene.cam_ids:
        path = Path(pattern.format(cam=cam, frame=frames[0]))
        path.parent.mkdir(parents=True)
        Image.fromarray(np.full((materialized_scene.height, materialized_scene.width), 0.5, np.float32), "F").save(path)
    hdr = Path(pattern.format(cam=16, frame=frames[0]))
    Image.fromarray(np.full((materialized_scene.height, materialized_scene.width), 2.5, np.float32), "F").save(hdr)
    with pytest.raises(ValueError, match="1 unreadable") as err:
        ingest_external(materialized_scene, pattern, tmp_path / "out", frames=frames)
    assert f"{hdr} ({hdr}: float image with values outside [0, 1]" in str(err.value)


def test_render_scene_rejects_unknown_frames_and_cams(materialized_scene, tmp_path):
    with pytest.raises(ValueError, match="frames \\[99\\]"):
        render_scene(materialized_scene, tmp_path, RenderConfig(**FAST_FIT), frames=[99])
    with pytest.raises(ValueError, match="source_cams \\[5\\]"):
        render_scene(materialized_scene, tmp_path, RenderConfig(**FAST_FIT, source_cams=(5,)))


def test_read_render_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        read_render_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="no images"):
        read_render_manifest(tmp_path)


def test_ingest_external_names_missing_and_wrongly_sized_files(materialized_scene, tmp_path):
    ext = tmp_path / "ext"
    pattern = str(ext / "{scene}" / "{cam}" / "{frame:06d}.png")
    frames = materialized_scene.frames[:2]
    for frame in frames:
        for cam in materialized_scene.cam_ids:
            write_image(
                Path(pattern.format(scene=materialized_scene.name, cam=cam, frame=frame)),
                materialized_scene.load_image(cam, frame),
            )
    missing = Path(pattern.format(scene=materialized_scene.name, cam=28, frame=frames[1]))
    missing.unlink()
    small = Path(pattern.format(scene=materialized_scene.name, cam=40, frame=frames[0]))
    write_image(small, np.zeros((10, 12, 3), np.float32))
    with pytest.raises(ValueError) as err:
        ingest_external(materialized_scene, pattern, tmp_path / "out", frames=frames)
    message = str(err.value)
    assert str(missing) in message and "1 missing" in message
    assert str(small) in message and "12x10" in message
    assert not (tmp_path / "out" / "manifest.json").exists()

    write_image(missing, materialized_scene.load_image(28, frames[1]))
    write_image(small, materialized_scene.load_image(40, frames[0]))
    manifest = ingest_external(materialized_scene, pattern, tmp_path / "out", frames=frames)
    assert manifest["source"] == "external" and len(manifest["images"]) == 8 * len(frames)
    assert read_render_manifest(tmp_path / "out")["images"][0]["path"] == "4/%06d.png" % frames[0]
    # the "renders" are the unmasked ground truth: scored against it composited over black
    for item in manifest["images"]:
        image = materialized_scene.load_image(item["cam"], item["frame"])
        target = composite_on_background(image, materialized_scene.load_mask(item["cam"], item["frame"]), (0, 0, 0))
        np.testing.assert_array_equal(read_image(tmp_path / "out" / item["path"]), image)
        assert item["psnr"] == pytest.approx(-10 * np.log10(np.mean((image - target) ** 2)), abs=1e-3)
    # the same via a render profile, composited over white, and with a bad pattern key
    via_profile = render_from_profile(
        materialized_scene,
        tmp_path / "prof",
        {"source": "external", "external_pattern": pattern, "background": [1, 1, 1]},
        frames,
    )
    assert via_profile["background"] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="keys scene, cam and frame"):
        ingest_external(materialized_scene, str(ext / "{sequence}.png"), tmp_path / "bad")
