"""Two-person motions keyed by the Hi4D action name (dance, talk, fight, jump, piggyback, hug, ...).

Each action is a smooth function of time giving, per person, a heading, a floor position and
joint rotations; :func:`poses_at` turns that into SMPL-style poses with the feet on the floor
(y = 0, world y up). Unknown actions fall back to an idle, swaying pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation

from hi4dfix.synth.bodies import JOINT_NAMES, NUM_JOINTS, Person, Pose, forward_kinematics, lowest_point

# Hi4D action names without a motion of their own, mapped onto the closest one.
ACTION_ALIASES = {
    "kiss": "hug",
    "sidehug": "hug",
    "backhug": "hug",
    "cheers": "highfive",
    "basketball": "jump",
}
_DEG = np.pi / 180


@dataclass
class _Plan:
    """What an action says about one person at one instant."""

    yaw: float  # heading in degrees; 0 faces world +z
    position: tuple[float, float]  # pelvis (x, z) on the floor
    joints: dict[str, Rotation] = field(default_factory=dict)
    hop: float = 0.0  # height of the lowest body point above the floor
    # Carried persons are placed relative to another person's pelvis, in that person's heading frame.
    carried_by: int | None = None
    carry_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _rx(deg: float) -> Rotation:
    return Rotation.from_rotvec([deg * _DEG, 0, 0])


def _ry(deg: float) -> Rotation:
    return Rotation.from_rotvec([0, deg * _DEG, 0])


def _rz(deg: float) -> Rotation:
    return Rotation.from_rotvec([0, 0, deg * _DEG])


def _aim(rest: np.ndarray, target: np.ndarray) -> Rotation:
    """Smallest rotation turning direction ``rest`` into ``target``."""
    rest, target = rest / np.linalg.norm(rest), target / np.linalg.norm(target)
    axis = np.cross(rest, target)
    sin, cos = np.linalg.norm(axis), float(rest @ target)
    if sin < 1e-9:
        return Rotation.identity() if cos > 0 else Rotation.from_rotvec([0, np.pi, 0])
    return Rotation.from_rotvec(axis / sin * np.arctan2(sin, cos))


def _arm(side: str, elevation: float, azimuth: float, elbow: float) -> dict[str, Rotation]:
    """Upper arm aimed at ``elevation`` (deg above horizontal; -90 hangs) and ``azimuth``
    (deg from sideways towards the front); the elbow bends the forearm by ``elbow`` degrees."""
    sign = 1.0 if side == "left" else -1.0
    el, az = elevation * _DEG, azimuth * _DEG
    target = np.array([sign * np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])
    return {
        f"{side}_shoulder": _aim(np.array([sign, 0.0, 0.0]), target),
        f"{side}_elbow": _ry(-sign * elbow),
    }


def _leg(side: str, hip_flex: float, knee: float, abduction: float = 0.0) -> dict[str, Rotation]:
    """Thigh swung forward by ``hip_flex`` and outwards by ``abduction``; knee bent by ``knee`` (deg)."""
    sign = 1.0 if side == "left" else -1.0
    return {f"{side}_hip": _rz(sign * abduction) * _rx(-hip_flex), f"{side}_knee": _rx(knee)}


def _spine(lean: float = 0.0, twist: float = 0.0, nod: float = 0.0, turn: float = 0.0) -> dict[str, Rotation]:
    """Forward ``lean`` split over the spine, torso ``twist``, and head ``nod``/``turn`` (deg)."""
    return {
        "spine1": _rx(lean / 2) * _ry(twist / 2),
        "spine2": _rx(lean / 2) * _ry(twist / 2),
        "head": _ry(turn) * _rx(nod),
    }


def _idle_arms(t: float, phase: float) -> dict[str, Rotation]:
    swing = 6 * np.sin(1.3 * t + phase)
    return {**_arm("left", -75, 10 + swing, 15), **_arm("right", -75, 10 - swing, 15)}


def _facing_pair(distance: float, spin: float = 0.0) -> tuple[tuple, tuple, float]:
    """Floor positions of two people facing each other across ``distance``, the pair turned by ``spin`` deg."""
    a = spin * _DEG
    half = distance / 2
    p0 = (-half * np.cos(a), half * np.sin(a))
    p1 = (half * np.cos(a), -half * np.sin(a))
    return p0, p1, spin


def _idle(t: float) -> list[_Plan]:
    p0, p1, spin = _facing_pair(1.2)
    plans = []
    for i, (pos, yaw) in enumerate([(p0, 90 + spin), (p1, -90 + spin)]):
        phase = i * np.pi
        sway = 3 * np.sin(1.1 * t + phase)
        joints = {**_idle_arms(t, phase), **_spine(twist=sway, turn=8 * np.sin(0.7 * t + phase))}
        joints |= _leg("left", 0, 5, 3 + sway) | _leg("right", 0, 5, 3 - sway)
        plans.append(_Plan(yaw + sway, pos, joints))
    return plans


def _dance(t: float) -> list[_Plan]:
    w = 2 * np.pi / 2.0  # one step cycle every two seconds
    p0, p1, spin = _facing_pair(0.95, spin=25 * t)  # the couple turns slowly on the spot
    plans = []
    for i, (pos, yaw) in enumerate([(p0, 90 + spin), (p1, -90 + spin)]):
        phase = i * np.pi
        beat = np.sin(w * t + phase)
        joints = _arm("left", 15 + 20 * beat, 45, 35 + 20 * beat) | _arm("right", 15 - 20 * beat, 45, 35 - 20 * beat)
        joints |= _leg("left", 10 + 15 * max(beat, 0), 10 + 30 * max(beat, 0), 6)
        joints |= _leg("right", 10 + 15 * max(-beat, 0), 10 + 30 * max(-beat, 0), 6)
        joints |= _spine(lean=5, twist=12 * beat, nod=5 * beat)
        plans.append(_Plan(yaw + 8 * beat, pos, joints))
    return plans


def _talk(t: float) -> list[_Plan]:
    w = 2 * np.pi / 1.6
    p0, p1, spin = _facing_pair(1.3)
    plans = []
    for i, (pos, yaw) in enumerate([(p0, 90 + spin), (p1, -90 + spin)]):
        phase = i * np.pi
        g = np.sin(w * t + phase)
        joints = _arm("right", -55 + 20 * g, 55, 70 + 25 * np.sin(2 * w * t + phase))
        joints |= _arm("left", -75 + 8 * max(g, 0), 15, 25)
        joints |= _spine(twist=6 * g, nod=8 * np.sin(2 * w * t + phase))
        joints |= _leg("left", 0, 5, 4) | _leg("right", 0, 5, 4)
        plans.append(_Plan(yaw + 10, pos, joints))  # turned a little, as people do when chatting
    return plans


def _fight(t: float) -> list[_Plan]:
    w = 2 * np.pi / 1.2
    plans = []
    for i in range(2):
        phase = i * np.pi
        step = 0.08 * np.sin(0.5 * w * t + phase)
        x = (-1 if i == 0 else 1) * (0.55 + step)
        joints = {}
        for arm, arm_phase in (("left", 0.0), ("right", np.pi)):
            punch = max(np.sin(w * t + phase + arm_phase), 0.0) ** 2
            joints |= _arm(arm, -30 + 25 * punch, 75 + 10 * punch, 110 * (1 - punch) + 5)
        joints |= _leg("left", 25, 35, 10) | _leg("right", 10, 25, 10)
        joints |= _spine(lean=12, twist=15 * np.sin(w * t + phase))
        plans.append(_Plan(90 if i == 0 else -90, (x, 0.1 * (1 if i == 0 else -1)), joints))
    return plans


def _jump(t: float) -> list[_Plan]:
    w = 2 * np.pi / 1.0
    p0, p1, spin = _facing_pair(1.2)
    plans = []
    for i, (pos, yaw) in enumerate([(p0, 90 + spin), (p1, -90 + spin)]):
        s = np.sin(w * t + i * 0.6)
        air, crouch = max(s, 0.0), max(-s, 0.0)
        joints = _arm("left", -70 + 150 * air, 20, 20) | _arm("right", -70 + 150 * air, 20, 20)
        joints |= _leg("left", 35 * crouch, 70 * crouch, 5) | _leg("right", 35 * crouch, 70 * crouch, 5)
        joints |= _spine(lean=20 * crouch)
        plans.append(_Plan(yaw, pos, joints, hop=0.28 * air))
    return plans


def _piggyback(t: float) -> list[_Plan]:
    heading = 35 * np.sin(0.6 * t)  # the carrier turns slowly back and forth
    bob = np.sin(2 * np.pi / 0.9 * t)
    carrier = _arm("left", -55, -35, 70) | _arm("right", -55, -35, 70)
    carrier |= _leg("left", 10 + 8 * bob, 15 + 10 * bob, 5) | _leg("right", 10 - 8 * bob, 15 - 10 * bob, 5)
    carrier |= _spine(lean=22, nod=-15)
    rider = _arm("left", -15, 75, 65) | _arm("right", -15, 75, 65)
    rider |= _leg("left", 80, 85, 28) | _leg("right", 80, 85, 28)
    rider |= _spine(lean=18, nod=-10, turn=10 * np.sin(0.8 * t))
    return [
        _Plan(heading, (0.0, 0.0), carrier),
        _Plan(heading, (0.0, 0.0), rider, carried_by=0, carry_offset=(0.0, 0.30 + 0.02 * bob, -0.30)),
    ]


def _hug(t: float) -> list[_Plan]:
    sway = 10 * np.sin(0.9 * t)
    p0, p1, spin = _facing_pair(0.46, spin=sway)
    plans = []
    for i, (pos, yaw) in enumerate([(p0, 90 + spin), (p1, -90 + spin)]):
        elevation = 5 if i == 0 else -25  # one hugs over, the other under the arms
        joints = _arm("left", elevation, 72, 75) | _arm("right", elevation, 72, 75)
        joints |= _spine(lean=6, turn=25 * (1 if i == 0 else -1), nod=-5)
        joints |= _leg("left", 0, 6, 4) | _leg("right", 0, 6, 4)
        plans.append(_Plan(yaw, pos, joints))
    return plans


def _highfive(t: float) -> list[_Plan]:
    w = 2 * np.pi / 2.0
    p0, p1, spin = _facing_pair(1.05)
    plans = []
    for i, (pos, yaw) in enumerate([(p0, 90 + spin), (p1, -90 + spin)]):
        reach = 0.5 + 0.5 * np.sin(w * t)
        joints = _arm("right", -60 + 125 * reach, 65, 60 * (1 - reach) + 10) | _arm("left", -75, 15, 20)
        joints |= _spine(lean=-3 * reach, twist=-10 * reach)
        joints |= _leg("left", 8 * reach, 10, 4) | _leg("right", 0, 5, 4)
        plans.append(_Plan(yaw, pos, joints))
    return plans


ACTIONS: dict[str, Callable[[float], list[_Plan]]] = {
    "idle": _idle,
    "dance": _dance,
    "talk": _talk,
    "fight": _fight,
    "jump": _jump,
    "piggyback": _piggyback,
    "hug": _hug,
    "highfive": _highfive,
}


def resolve_action(action: str) -> str:
    """The motion used for a Hi4D action name: itself, an alias, or the ``idle`` fallback."""
    action = ACTION_ALIASES.get(action, action)
    return action if action in ACTIONS else "idle"


def _to_pose(plan: _Plan, scene_yaw: float) -> Pose:
    body_pose = np.zeros((NUM_JOINTS - 1, 3))
    for name, rotation in plan.joints.items():
        body_pose[JOINT_NAMES.index(name) - 1] = rotation.as_rotvec()
    yaw = plan.yaw + scene_yaw
    a = scene_yaw * _DEG
    x, z = plan.position
    # Rotate the whole arrangement about the vertical axis through the origin.
    transl = np.array([x * np.cos(a) + z * np.sin(a), 0.0, -x * np.sin(a) + z * np.cos(a)])
    return Pose(global_orient=_ry(yaw).as_rotvec(), body_pose=body_pose, transl=transl)


def poses_at(action: str, people: list[Person], t: float, scene_yaw: float = 0.0) -> list[Pose]:
    """Poses of ``people`` at time ``t`` (seconds) of ``action``, feet on the floor (y = 0).

    ``scene_yaw`` (deg) turns the whole arrangement about the vertical axis.
    """
    plans = ACTIONS[resolve_action(action)](t)
    if len(plans) != len(people):
        raise ValueError(f"action {action!r} is written for {len(plans)} people, got {len(people)}")
    poses: list[Pose] = []
    for person, plan in zip(people, plans):
        pose = _to_pose(plan, scene_yaw)
        if plan.carried_by is not None:
            carrier = poses[plan.carried_by]
            offset = Rotation.from_rotvec(carrier.global_orient).apply(np.array(plan.carry_offset))
            pose = Pose(pose.global_orient, pose.body_pose, carrier.transl + offset)
        else:
            # Lift the pelvis so the body's lowest point sits ``hop`` above the floor.
            lift = plan.hop - lowest_point(forward_kinematics(person, pose))
            pose = Pose(pose.global_orient, pose.body_pose, pose.transl + np.array([0.0, lift, 0.0]))
        poses.append(pose)
    return poses
