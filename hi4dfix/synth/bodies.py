"""Articulated ellipsoid bodies on SMPL's 24-joint skeleton.

Canonical body frame as in SMPL: y up, x towards the person's left, z forwards; the pelvis
joint sits at the origin, so a pose's ``transl`` is the pelvis position in the world. Each body
part is an ellipsoid rigidly attached to one joint; surface points (the stand-in for SMPL's
6890 vertices) and textures live in that part's local frame, so they move with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
NUM_JOINTS = 24
NUM_VERTS = 6890  # SMPL's vertex count, kept so files have Hi4D's shapes

# Rest-pose joint offsets from the parent joint (metres, T-pose, average adult).
REST_OFFSETS = np.array(
    [
        [0.0, 0.0, 0.0],  # pelvis
        [0.07, -0.09, 0.0],
        [-0.07, -0.09, 0.0],  # hips
        [0.0, 0.11, -0.01],  # spine1
        [0.0, -0.39, 0.0],
        [0.0, -0.39, 0.0],  # knees
        [0.0, 0.13, 0.0],  # spine2
        [0.0, -0.40, -0.01],
        [0.0, -0.40, -0.01],  # ankles
        [0.0, 0.06, 0.01],  # spine3
        [0.0, -0.05, 0.12],
        [0.0, -0.05, 0.12],  # feet
        [0.0, 0.21, -0.01],  # neck
        [0.07, 0.11, 0.0],
        [-0.07, 0.11, 0.0],  # collars
        [0.0, 0.08, 0.03],  # head
        [0.11, 0.03, -0.01],
        [-0.11, 0.03, -0.01],  # shoulders
        [0.27, 0.0, 0.0],
        [-0.27, 0.0, 0.0],  # elbows
        [0.25, 0.0, 0.0],
        [-0.25, 0.0, 0.0],  # wrists
        [0.08, 0.0, 0.0],
        [-0.08, 0.0, 0.0],  # hands
    ]
)

# Materials, indexing an Appearance's colours.
SHIRT, PANTS, SKIN, HEAD, SHOES = range(5)


@dataclass(frozen=True)
class PartSpec:
    name: str
    joint: int  # the joint whose frame carries the part
    centre: tuple[float, float, float]  # in the joint's frame, metres
    radii: tuple[float, float, float]  # semi-axes along the joint frame's x, y, z
    material: int


def _part(name: str, joint: str, centre, radii, material: int) -> PartSpec:
    return PartSpec(name, JOINT_INDEX[joint], tuple(centre), tuple(radii), material)


PARTS: tuple[PartSpec, ...] = (
    _part("pelvis", "pelvis", (0, -0.01, 0), (0.17, 0.12, 0.11), PANTS),
    _part("torso", "spine2", (0, 0.12, 0.0), (0.18, 0.26, 0.12), SHIRT),
    _part("head", "head", (0, 0.09, 0.01), (0.085, 0.115, 0.10), HEAD),
    _part("left_upper_arm", "left_shoulder", (0.14, 0, 0), (0.16, 0.055, 0.055), SHIRT),
    _part("right_upper_arm", "right_shoulder", (-0.14, 0, 0), (0.16, 0.055, 0.055), SHIRT),
    _part("left_lower_arm", "left_elbow", (0.15, 0, 0), (0.16, 0.042, 0.042), SKIN),
    _part("right_lower_arm", "right_elbow", (-0.15, 0, 0), (0.16, 0.042, 0.042), SKIN),
    _part("left_upper_leg", "left_hip", (0, -0.2, 0), (0.085, 0.23, 0.085), PANTS),
    _part("right_upper_leg", "right_hip", (0, -0.2, 0), (0.085, 0.23, 0.085), PANTS),
    _part("left_lower_leg", "left_knee", (0, -0.2, 0), (0.06, 0.23, 0.06), PANTS),
    _part("right_lower_leg", "right_knee", (0, -0.2, 0), (0.06, 0.23, 0.06), PANTS),
    _part("left_foot", "left_ankle", (0, -0.035, 0.05), (0.05, 0.035, 0.11), SHOES),
    _part("right_foot", "right_ankle", (0, -0.035, 0.05), (0.05, 0.035, 0.11), SHOES),
)
NUM_PARTS = len(PARTS)


@dataclass(frozen=True)
class Appearance:
    """Per-person colours (RGB in [0, 1]); textures are patterns mixing two colours."""

    shirt: tuple[np.ndarray, np.ndarray]  # stripes
    pants: tuple[np.ndarray, np.ndarray]  # checks
    skin: np.ndarray
    hair: np.ndarray
    shoes: np.ndarray
    stripe_width: float = 0.045  # metres per shirt stripe
    check_size: float = 0.06  # metres per trouser check


@dataclass(frozen=True)
class Person:
    """A synthetic person: shape, look and the surface points standing in for SMPL vertices."""

    index: int
    gender: str
    betas: np.ndarray  # (10,) written to the SMPL files; betas[0] also scales the body
    scale: float
    appearance: Appearance
    vert_parts: np.ndarray  # (6890,) part index of each surface point
    vert_local: np.ndarray  # (6890, 3) surface points in their part's frame (metres)

    @property
    def joint_offsets(self) -> np.ndarray:
        return REST_OFFSETS * self.scale

    def part_centres_local(self) -> np.ndarray:
        return np.array([p.centre for p in PARTS]) * self.scale

    def part_radii(self) -> np.ndarray:
        return np.array([p.radii for p in PARTS]) * self.scale


@dataclass(frozen=True)
class Pose:
    """SMPL-style pose: axis-angle rotations of the root and the 23 other joints, and the root position."""

    global_orient: np.ndarray  # (3,)
    body_pose: np.ndarray  # (23, 3)
    transl: np.ndarray  # (3,)


@dataclass(frozen=True)
class PosedBody:
    joints: np.ndarray  # (24, 3) world positions
    joint_rotations: np.ndarray  # (24, 3, 3) world orientations
    part_centres: np.ndarray  # (NUM_PARTS, 3)
    part_rotations: np.ndarray  # (NUM_PARTS, 3, 3)
    part_radii: np.ndarray  # (NUM_PARTS, 3)


# Clothing hues are drawn without replacement so the two people never share a colour.
_CLOTH_PALETTE = np.array(
    [
        [0.80, 0.15, 0.15], [0.15, 0.35, 0.80], [0.15, 0.60, 0.25], [0.85, 0.65, 0.10],
        [0.55, 0.20, 0.65], [0.10, 0.60, 0.65], [0.90, 0.45, 0.10], [0.85, 0.30, 0.55],
    ]
)  # fmt: skip
_SKIN_TONES = np.array([[0.93, 0.76, 0.64], [0.80, 0.60, 0.45], [0.55, 0.38, 0.26], [0.98, 0.84, 0.72]])
_HAIR = np.array([[0.10, 0.07, 0.05], [0.35, 0.22, 0.10], [0.75, 0.60, 0.35], [0.05, 0.05, 0.05]])


def make_people(rng: np.random.Generator, count: int = 2) -> list[Person]:
    """``count`` distinct people; everything random comes from ``rng``."""
    cloth = rng.permutation(len(_CLOTH_PALETTE))
    if 2 * count > len(cloth):
        raise ValueError(f"at most {len(cloth) // 2} distinct synthetic people, asked for {count}")
    people = []
    for i in range(count):
        # palette hues jittered per person, so people of different pairs differ even in one hue
        shirt = np.clip(_CLOTH_PALETTE[cloth[2 * i]] + rng.uniform(-0.1, 0.1, 3), 0.05, 0.95)
        pants = np.clip(_CLOTH_PALETTE[cloth[2 * i + 1]] + rng.uniform(-0.1, 0.1, 3), 0.05, 0.95) * 0.6  # darker
        appearance = Appearance(
            shirt=(shirt, 0.35 * shirt + 0.6),  # stripes: colour and a pale tint of it
            pants=(pants, 0.55 * pants + 0.05),
            skin=_SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.92, 1.05),
            hair=_HAIR[rng.integers(len(_HAIR))],
            shoes=np.array([0.12, 0.12, 0.14]) + 0.1 * rng.random(3),
            stripe_width=float(rng.uniform(0.03, 0.07)),
            check_size=float(rng.uniform(0.04, 0.09)),
        )
        betas = np.zeros(10)
        betas[:2] = rng.normal(0.0, 0.5, size=2)
        scale = float(1.0 + 0.04 * np.clip(betas[0], -2, 2))
        vert_parts, vert_local = _sample_surface(rng, scale)
        people.append(
            Person(
                i, ("female", "male")[(i + int(rng.integers(2))) % 2], betas, scale, appearance, vert_parts, vert_local
            )
        )
    return people


def _ellipsoid_area(radii: np.ndarray) -> np.ndarray:
    """Knud Thomsen's approximation of an ellipsoid's surface area (within ~1%)."""
    p = 1.6075
    a, b, c = radii[..., 0] ** p, radii[..., 1] ** p, radii[..., 2] ** p
    return 4 * np.pi * ((a * b + a * c + b * c) / 3) ** (1 / p)


def _sample_surface(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """NUM_VERTS points on the part surfaces, spread by surface area, in part-local coordinates."""
    radii = np.array([p.radii for p in PARTS]) * scale
    centres = np.array([p.centre for p in PARTS]) * scale
    area = _ellipsoid_area(radii)
    counts = np.floor(area / area.sum() * NUM_VERTS).astype(int)
    counts[np.argsort(-area)[: NUM_VERTS - counts.sum()]] += 1  # hand out the remainder
    parts = np.repeat(np.arange(NUM_PARTS), counts)
    directions = rng.normal(size=(NUM_VERTS, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    # Local frame = joint frame; points sit on the ellipsoid around the part's centre.
    local = centres[parts] + directions * radii[parts]
    return parts, local


def forward_kinematics(person: Person, pose: Pose) -> PosedBody:
    """World joints and part placements of a person in a pose (SMPL's kinematic chain)."""
    local_rot = Rotation.from_rotvec(np.concatenate([pose.global_orient[None], pose.body_pose])).as_matrix()
    offsets = person.joint_offsets
    rotations = np.empty((NUM_JOINTS, 3, 3))
    joints = np.empty((NUM_JOINTS, 3))
    rotations[0] = local_rot[0]
    joints[0] = pose.transl
    for j in range(1, NUM_JOINTS):
        parent = PARENTS[j]
        rotations[j] = rotations[parent] @ local_rot[j]
        joints[j] = joints[parent] + rotations[parent] @ offsets[j]
    part_joints = np.array([p.joint for p in PARTS])
    part_rot = rotations[part_joints]
    part_centres = joints[part_joints] + np.einsum("pij,pj->pi", part_rot, person.part_centres_local())
    return PosedBody(joints, rotations, part_centres, part_rot, person.part_radii())


def surface_points(person: Person, body: PosedBody) -> np.ndarray:
    """(6890, 3) world positions of the person's surface points."""
    rot = body.part_rotations[person.vert_parts]
    joints = body.joints[[PARTS[p].joint for p in range(NUM_PARTS)]][person.vert_parts]
    return joints + np.einsum("nij,nj->ni", rot, person.vert_local)


def lowest_point(body: PosedBody) -> float:
    """World height (y) of the lowest point over all part ellipsoids."""
    # Half-extent of a rotated ellipsoid along world y: || row_y(R) * radii ||.
    extent = np.linalg.norm(body.part_rotations[:, 1, :] * body.part_radii, axis=1)
    return float((body.part_centres[:, 1] - extent).min())
