"""Timings of the per-frame render stage: fit the Gaussians of one frame, render all 8 cameras.

Rows: the pure-PyTorch backend on CPU at the default small size (120x160), and gsplat on
CUDA at 512 px long side (376x512) and at Hi4D's full 940x1280, each with the default
RenderConfig and with a heavier GPU-sized fit. gsplat rows are skipped without CUDA.

    python bench/bench_render.py            # prints a markdown table
    python bench/bench_render.py --repeats 3 --threads 2

The frame is synthetic (two people of 6890 vertices each, 8 cameras on a ring, ground
truth splatted from the true vertices), so timings do not depend on any data on disk.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from hi4dfix.render import RenderConfig, SourceView, fit_frame, rasterize, render_cameras
from hi4dfix.render.poses import perturb_vertices
from hi4dfix.render.rasterize import gsplat_usable
from hi4dfix.scene import Camera
from record import append_markdown

SMPL_VERTS = 6890
CAM_IDS = (4, 16, 28, 40, 52, 64, 76, 88)


def ring_cameras(width: int, height: int) -> list[Camera]:
    """8 cameras 3.2 m from the people, 1 m up, framing 2 m of height."""
    f = 0.9 * height * 3.2 / 2.0
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    cams = []
    for cam_id, angle in zip(CAM_IDS, np.linspace(0, 2 * math.pi, 9)[:-1]):
        center = np.array([3.2 * math.sin(angle), 1.0, 3.2 * math.cos(angle)])
        forward = (np.array([0.0, 0.9, 0.0]) - center) / np.linalg.norm(np.array([0.0, 0.9, 0.0]) - center)
        right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        R = np.stack([right, np.cross(forward, right), forward])
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = R, -R @ center
        cams.append(Camera(cam_id, K, w2c, width, height))
    return cams


def two_people(seed: int = 0) -> np.ndarray:
    """(2, 6890, 3) points on a torso ellipsoid and a head sphere per person, y up, metres."""
    rng = np.random.default_rng(seed)
    people = []
    for x in (-0.35, 0.35):
        dirs = rng.normal(size=(SMPL_VERTS, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        head = np.arange(SMPL_VERTS) < SMPL_VERTS // 5
        radii = np.where(head[:, None], [0.11, 0.12, 0.11], [0.2, 0.7, 0.14])
        centres = np.where(head[:, None], [x, 1.6, 0.0], [x, 0.8, 0.0])
        people.append(dirs * radii + centres)
    return np.stack(people).astype(np.float32)


def source_view(camera: Camera, verts: np.ndarray, backend: str, device: torch.device) -> SourceView:
    """Ground truth at ``camera``: the true vertices splatted with a striped texture."""
    points = torch.as_tensor(verts.reshape(-1, 3), device=device)
    n = len(points)
    colors = 0.5 + 0.4 * torch.sin(points[:, 1:2] * 18.0 + torch.tensor([0.0, 2.0, 4.0], device=device))
    with torch.no_grad():
        rgb, alpha = rasterize(
            points,
            torch.tensor([[1.0, 0, 0, 0]], device=device).repeat(n, 1),
            torch.full((n, 3), 0.015, device=device),
            torch.full((n,), 0.95, device=device),
            colors,
            torch.as_tensor(camera.w2c, dtype=torch.float32, device=device),
            torch.as_tensor(camera.K, dtype=torch.float32, device=device),
            camera.width, camera.height, None, backend=backend,
        )  # fmt: skip
    mask = (alpha > 0.5).cpu().numpy()
    image = (rgb / alpha.clamp(min=1e-6)[..., None]).clamp(0, 1).cpu().numpy()
    return SourceView(camera, image, mask)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_frame(width: int, height: int, cfg: RenderConfig, repeats: int) -> dict:
    """Best-of-``repeats`` seconds for the fit and for rendering all 8 cameras, after a warm-up."""
    device = torch.device(cfg.device)
    cameras = ring_cameras(width, height)
    true_verts = two_people()
    view = source_view(cameras[0], true_verts, cfg.backend, device)
    verts = perturb_vertices(true_verts, cfg.pose_error, "bench", 0)
    warm = dataclasses.replace(cfg, fit_steps=2)
    model, _ = fit_frame(verts, [view], warm, "bench", 0, device)
    render_cameras(model, cameras, warm, device)
    fit_s, render_s = math.inf, math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        model, losses = fit_frame(verts, [view], cfg, "bench", 0, device)
        sync(device)
        mid = time.perf_counter()
        render_cameras(model, cameras, cfg, device)
        sync(device)
        end = time.perf_counter()
        fit_s, render_s = min(fit_s, mid - start), min(render_s, end - mid)
    return {"fit_s": fit_s, "render_s": render_s, "loss": losses[-1] if losses else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--gpu-gaussians", type=int, default=13780, help="heavier GPU fit: Gaussians")
    parser.add_argument("--gpu-steps", type=int, default=300, help="heavier GPU fit: steps")
    parser.add_argument("--append", type=Path, help="append the table to this markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    default = RenderConfig()
    rows = [("torch", "cpu", 120, 160, default.num_gaussians, default.fit_steps)]
    if torch.cuda.is_available() and gsplat_usable():
        for width, height in ((376, 512), (940, 1280)):
            rows.append(("gsplat", "cuda", width, height, default.num_gaussians, default.fit_steps))
            rows.append(("gsplat", "cuda", width, height, args.gpu_gaussians, args.gpu_steps))
        rows.append(("torch", "cuda", 120, 160, default.num_gaussians, default.fit_steps))
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA"

    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), GPU: {device_name}; best of {args.repeats}\n")
    lines = [
        "| backend | device | W x H | Gaussians | steps | fit s | ms/step | render 8 cams s | frame s | final loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for backend, device, width, height, gaussians, steps in rows:
        cfg = dataclasses.replace(default, backend=backend, device=device, num_gaussians=gaussians, fit_steps=steps)
        t = time_frame(width, height, cfg, args.repeats)
        lines.append(
            f"| {backend} | {device} | {width} x {height} | {gaussians} | {steps} | {t['fit_s']:.2f} | "
            f"{1000 * t['fit_s'] / max(steps, 1):.1f} | {t['render_s']:.3f} | {t['fit_s'] + t['render_s']:.2f} "
            f"| {t['loss']:.4f} |"
        )
        print(lines[-1], flush=True)
    if len(rows) == 1:
        print("\n(gsplat rows skipped: no CUDA, or gsplat's kernels do not build here)")
    if args.append:
        accelerator = f"{device_name}, torch {torch.__version__}, {args.threads} CPU thread(s), best of {args.repeats}"
        append_markdown(
            args.append, "Render stage: fit one frame's Gaussians, render all 8 cameras", "\n".join(lines), accelerator
        )


if __name__ == "__main__":
    main()
