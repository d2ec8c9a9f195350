"""Write a synthetic two-person sequence in exactly Hi4D's released layout.

Two articulated ellipsoid people move according to the scene's action and are ray cast into
eight distorted cameras on a ring (Hi4D's camera ids), so images, per-person masks and the
"SMPL" surface points agree exactly. Everything random comes from ``SynthConfig.seed`` and the
scene: people, cameras and room from (seed, pair), the motion from (seed, pair, action)
(:func:`sequence_rngs`), so every scene is its own capture and the same config and scene give
byte-identical files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from hi4dfix.camera import look_at_w2c, pixel_rays
from hi4dfix.hi4d.layout import HI4D_CAMERA_IDS, MASK_ALL, Hi4DLayout, SceneName, parse_scene_name
from hi4dfix.io import write_image, write_npz
from hi4dfix.progress import progress
from hi4dfix.synth.bodies import Person, Pose, PosedBody, forward_kinematics, make_people, surface_points
from hi4dfix.synth.motion import poses_at
from hi4dfix.synth.render import Room, Scene, make_room, render_rays

HI4D_IMAGE_SIZE = (940, 1280)  # (width, height) of released Hi4D images
_UP = np.array([0.0, 1.0, 0.0])


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    num_frames: int = 4
    start_frame: int = 11  # Hi4D sequences start at a nonzero frame number
    width: int = 120  # Hi4D: 940
    height: int = 160  # Hi4D: 1280
    jpeg_quality: int = 90
    distortion_scale: float = 1.0  # multiplies the drawn lens distortion; 0 gives pinhole images
    fps: float = 30.0  # frame rate the motion is sampled at
    focal_scale: float = 0.95  # focal length in units of the image height
    ring_radius: float = 3.6  # metres from the scene centre to the cameras
    mono_cam: int = 4
    contact_distance: float = 0.02  # metres between the two bodies' points that count as contact

    def __post_init__(self) -> None:
        problems = []
        if self.num_frames < 1:
            problems.append(f"num_frames must be >= 1, got {self.num_frames}")
        if self.start_frame < 0:
            problems.append(f"start_frame must be >= 0, got {self.start_frame}")
        if self.width < 8 or self.height < 8:
            problems.append(f"width/height must be >= 8, got {self.width}x{self.height}")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.distortion_scale < 0:
            problems.append(f"distortion_scale must be >= 0, got {self.distortion_scale}")
        if self.fps <= 0 or self.focal_scale <= 0 or self.ring_radius <= 1.5:
            problems.append("fps and focal_scale must be > 0 and ring_radius > 1.5 m")
        if self.mono_cam not in HI4D_CAMERA_IDS:
            problems.append(f"mono_cam must be one of {HI4D_CAMERA_IDS}, got {self.mono_cam}")
        if problems:
            raise ValueError("SynthConfig: " + "; ".join(problems))

    @property
    def frames(self) -> list[int]:
        return list(range(self.start_frame, self.start_frame + self.num_frames))


@dataclass(frozen=True)
class SynthCamera:
    id: int
    K: np.ndarray  # (3, 3)
    extrinsics: np.ndarray  # (3, 4) world-to-camera
    dist_coeffs: np.ndarray  # (5,)


def ring_cameras(cfg: SynthConfig, rng: np.random.Generator) -> list[SynthCamera]:
    """Eight cameras on a slightly irregular ring, all looking at the people.

    Values are rounded to float32, as stored, so rendering uses exactly the saved calibration.
    """
    cameras = []
    for i, cam_id in enumerate(HI4D_CAMERA_IDS):
        angle = np.deg2rad(45.0 * i + rng.uniform(-6, 6))
        radius = cfg.ring_radius * (1 + rng.uniform(-0.04, 0.04))
        eye = np.array([radius * np.sin(angle), rng.uniform(1.25, 1.6), radius * np.cos(angle)])
        target = np.array([rng.uniform(-0.1, 0.1), rng.uniform(0.85, 0.95), rng.uniform(-0.1, 0.1)])
        w2c = look_at_w2c(eye, target, _UP)
        roll = Rotation.from_rotvec([0, 0, np.deg2rad(rng.uniform(-2, 2))]).as_matrix()
        w2c[:3, :] = roll @ w2c[:3, :]
        focal = cfg.focal_scale * cfg.height * (1 + rng.uniform(-0.03, 0.03))
        K = np.array(
            [
                [focal, 0.0, (cfg.width - 1) / 2 + rng.uniform(-0.01, 0.01) * cfg.width],
                [
                    0.0,
                    focal * (1 + rng.uniform(-0.003, 0.003)),
                    (cfg.height - 1) / 2 + rng.uniform(-0.01, 0.01) * cfg.height,
                ],
                [0.0, 0.0, 1.0],
            ]
        )
        # Mild barrel distortion, like a real wide-ish lens (monotonic over the whole image).
        dist = cfg.distortion_scale * np.array(
            [
                rng.uniform(-0.12, -0.06),
                rng.uniform(0.02, 0.06),
                rng.uniform(-1e-3, 1e-3),
                rng.uniform(-1e-3, 1e-3),
                0.0,
            ]
        )
        cameras.append(
            SynthCamera(
                id=cam_id,
                K=K.astype(np.float32).astype(np.float64),
                extrinsics=w2c[:3, :].astype(np.float32).astype(np.float64),
                dist_coeffs=dist.astype(np.float32).astype(np.float64),
            )
        )
    return cameras


def contact_correspondences(verts: np.ndarray, max_distance: float) -> np.ndarray:
    """(2, V) int32: for each point, the index of the other person's nearest point within
    ``max_distance``, else -1."""
    if verts.shape[0] != 2:
        raise ValueError(f"contact needs exactly two people, got {verts.shape[0]}")
    contact = np.full(verts.shape[:2], -1, dtype=np.int32)
    for p in range(2):
        dist, index = cKDTree(verts[1 - p]).query(verts[p], distance_upper_bound=max_distance)
        close = np.isfinite(dist)
        contact[p, close] = index[close]
    return contact


@dataclass(frozen=True)
class _Frame:
    number: int
    people: list[Person]
    bodies: list[PosedBody]
    poses: list[Pose]
    verts: np.ndarray  # (2, 6890, 3)
    contact: np.ndarray  # (2, 6890)


def _simulate(action: str, people: list[Person], cfg: SynthConfig, rng: np.random.Generator) -> list[_Frame]:
    time_offset = rng.uniform(0.0, 10.0)  # start somewhere in the motion, per seed
    scene_yaw = rng.uniform(-180.0, 180.0)  # and turn the whole pair relative to the cameras
    frames = []
    for number in cfg.frames:
        t = time_offset + (number - cfg.start_frame) / cfg.fps
        poses = poses_at(action, people, t, scene_yaw)
        bodies = [forward_kinematics(person, pose) for person, pose in zip(people, poses)]
        verts = np.stack([surface_points(person, body) for person, body in zip(people, bodies)])
        frames.append(
            _Frame(number, people, bodies, poses, verts, contact_correspondences(verts, cfg.contact_distance))
        )
    return frames


def _write_smpl(layout: Hi4DLayout, frame: _Frame) -> None:
    write_npz(
        layout.smpl_path(frame.number),
        betas=np.stack([p.betas for p in frame.people]).astype(np.float32),
        body_pose=np.stack([pose.body_pose.reshape(-1) for pose in frame.poses]).astype(np.float32),
        global_orient=np.stack([pose.global_orient for pose in frame.poses]).astype(np.float32),
        transl=np.stack([pose.transl for pose in frame.poses]).astype(np.float32),
        joints_3d=np.stack([body.joints for body in frame.bodies]).astype(np.float32),
        verts=frame.verts.astype(np.float32),
        contact=frame.contact,
    )


def _render_camera(layout: Hi4DLayout, camera: SynthCamera, frames: list[_Frame], room: Room, cfg: SynthConfig) -> None:
    # Rays depend only on the camera, so compute them once for all frames.
    origin, dirs = pixel_rays(camera.K, camera.extrinsics, camera.dist_coeffs, cfg.width, cfg.height)
    shape = (cfg.height, cfg.width)
    for frame in frames:
        scene = Scene.from_bodies(frame.people, frame.bodies, room)
        colour, person = render_rays(scene, origin, dirs)
        image = (colour.reshape(*shape, 3) * 255.0 + 0.5).astype(np.uint8)
        write_image(layout.image_path(camera.id, frame.number), image, quality=cfg.jpeg_quality)
        person = person.reshape(shape)
        for index in range(len(frame.people)):
            write_image(
                layout.mask_path(camera.id, frame.number, index), np.where(person == index, 255, 0).astype(np.uint8)
            )
        write_image(layout.mask_path(camera.id, frame.number, MASK_ALL), np.where(person >= 0, 255, 0).astype(np.uint8))


def generate_sequence(
    out_dir: str | os.PathLike, scene_name: str, cfg: SynthConfig = SynthConfig(), replace: bool = False
) -> Path:
    """Write a synthetic sequence for ``scene_name`` (``hi4d_pairNN_action``) into ``out_dir``.

    ``out_dir`` is the sequence folder itself (the one holding ``meta.npz``). It may exist if it
    holds no files (workflow engines create output folders up front); a folder with files is
    an error unless ``replace`` is set. The sequence is built in a sibling temporary folder and
    renamed into place, so an interrupted run leaves nothing half-written behind.
    """
    out_dir = Path(out_dir)
    scene = parse_scene_name(scene_name)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and not replace and any(p.is_file() or p.is_symlink() for p in out_dir.rglob("*")):
        raise FileExistsError(f"{out_dir}: already holds files; remove it first or pass replace=True")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    old = out_dir.parent / f"{work.name}.old"
    try:
        _write_sequence(Hi4DLayout(work), scene, cfg)
        if out_dir.exists():
            out_dir.rename(old)
        try:
            work.rename(out_dir)
        except BaseException:
            if old.exists():
                old.rename(out_dir)  # put the previous folder back
            raise
    finally:
        for leftover in (work, old):
            if leftover.exists():
                shutil.rmtree(leftover)
    return out_dir


# Streams of randomness a sequence draws from, each its own child of the config seed.
_PEOPLE, _CAMERAS, _ROOM, _MOTION = range(4)


def _action_key(action: str) -> int:
    """A stable 32-bit number for an action name (Python's ``hash`` of a str changes per process)."""
    return int.from_bytes(hashlib.sha256(action.encode()).digest()[:4], "little")


def sequence_rngs(seed: int, scene: SceneName) -> dict[int, np.random.Generator]:
    """Independent generators for one sequence, as Hi4D's captures differ.

    People (body shape, clothing colours and textures), cameras and room depend on (seed, pair):
    each Hi4D pair is one couple filmed in one session; the motion depends on (seed, pair, action).
    Children of one :class:`numpy.random.SeedSequence` per stream, so no two streams or
    sequences share draws.
    """
    def child(stream: int, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, *key)))

    return {
        _PEOPLE: child(_PEOPLE, scene.pair),
        _CAMERAS: child(_CAMERAS, scene.pair),
        _ROOM: child(_ROOM, scene.pair),
        _MOTION: child(_MOTION, scene.pair, _action_key(scene.action)),
    }


def _write_sequence(layout: Hi4DLayout, scene: SceneName, cfg: SynthConfig) -> None:
    action = scene.action
    rngs = sequence_rngs(cfg.seed, scene)
    people = make_people(rngs[_PEOPLE])
    cameras = ring_cameras(cfg, rngs[_CAMERAS])
    room = make_room(rngs[_ROOM])
    frames = _simulate(action, people, cfg, rngs[_MOTION])
    for frame in frames:
        _write_smpl(layout, frame)
    for camera in progress(cameras, f"synthesize {action}", unit="camera"):
        _render_camera(layout, camera, frames, room, cfg)
    write_npz(
        layout.cameras_path,
        ids=np.array([c.id for c in cameras], dtype=np.int64),
        intrinsics=np.stack([c.K for c in cameras]).astype(np.float32),
        extrinsics=np.stack([c.extrinsics for c in cameras]).astype(np.float32),
        dist_coeffs=np.stack([c.dist_coeffs for c in cameras]).astype(np.float32),
    )
    contact_ids = [f.number for f in frames if np.any(f.contact >= 0)]
    write_npz(
        layout.meta_path,
        start=np.array(cfg.frames[0], dtype=np.int64),
        end=np.array(cfg.frames[-1], dtype=np.int64),
        num_persons=np.array(len(people), dtype=np.int64),
        genders=np.array([p.gender for p in people]),
        betas=np.stack([p.betas for p in people]).astype(np.float32),
        contact_ids=np.array(contact_ids, dtype=np.int64),
        mono_cam=np.array(cfg.mono_cam, dtype=np.int64),
    )
