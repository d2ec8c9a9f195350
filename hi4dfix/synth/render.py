"""Exact ray casting of ellipsoid bodies in a simple textured room (vectorized numpy).

The room is a floor (y = 0, checkerboard) inside a cylindrical backdrop (vertical panels and
bands) around the vertical axis. Bodies are Lambertian ellipsoids with textures defined in
each part's local frame, so the appearance sticks to the body as it moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hi4dfix.synth.bodies import HEAD, PANTS, PARTS, SHIRT, SHOES, SKIN, Person, PosedBody

_LIGHT = np.array([0.35, 0.85, 0.40]) / np.linalg.norm([0.35, 0.85, 0.40])
_AMBIENT, _DIFFUSE = 0.45, 0.60


@dataclass(frozen=True)
class Room:
    """Background geometry and colours; ``panel_colours`` comes from the seed."""

    backdrop_radius: float
    tile_size: float
    floor_colours: tuple[np.ndarray, np.ndarray]
    panel_colours: np.ndarray  # (num_panels, 3)


def make_room(rng: np.random.Generator, backdrop_radius: float = 7.0, num_panels: int = 24) -> Room:
    base = np.array([0.55, 0.52, 0.48])
    panels = np.clip(base + rng.uniform(-0.25, 0.25, size=(num_panels, 3)), 0.05, 0.95)
    return Room(
        backdrop_radius=backdrop_radius,
        tile_size=0.5,
        floor_colours=(np.array([0.62, 0.60, 0.55]), np.array([0.36, 0.34, 0.32])),
        panel_colours=panels,
    )


@dataclass(frozen=True)
class Scene:
    """Everything a frame's renderer needs: the posed ellipsoids of all people, and the room."""

    centres: np.ndarray  # (M, 3)
    rotations: np.ndarray  # (M, 3, 3) part frame -> world
    radii: np.ndarray  # (M, 3)
    person: np.ndarray  # (M,) person index
    part: np.ndarray  # (M,) index into PARTS
    people: tuple[Person, ...]
    room: Room

    @staticmethod
    def from_bodies(people: list[Person], bodies: list[PosedBody], room: Room) -> "Scene":
        return Scene(
            centres=np.concatenate([b.part_centres for b in bodies]),
            rotations=np.concatenate([b.part_rotations for b in bodies]),
            radii=np.concatenate([b.part_radii for b in bodies]),
            person=np.repeat(np.arange(len(bodies)), len(PARTS)),
            part=np.tile(np.arange(len(PARTS)), len(bodies)),
            people=tuple(people),
            room=room,
        )


def intersect_ellipsoid(
    origin: np.ndarray, dirs: np.ndarray, centre: np.ndarray, rotation: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    """Distance along each ray to its first hit of the ellipsoid (inf on a miss or behind)."""
    # In the ellipsoid's unit-sphere space the problem is |o + t d|^2 = 1.
    o = (rotation.T @ (origin - centre)) / radii
    d = (dirs @ rotation) / radii
    a = np.einsum("ij,ij->i", d, d)
    b = d @ o
    c = o @ o - 1.0
    disc = b * b - a * c
    hit = disc >= 0
    t = np.full(dirs.shape[0], np.inf)
    sqrt_disc = np.sqrt(disc[hit])
    near = (-b[hit] - sqrt_disc) / a[hit]
    far = (-b[hit] + sqrt_disc) / a[hit]
    t_hit = np.where(near > 1e-9, near, np.where(far > 1e-9, far, np.inf))  # origin inside: exit point
    t[hit] = t_hit
    return t


def _rays_near_sphere(origin: np.ndarray, dirs: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Indices of the rays whose direction points into the cone around a sphere."""
    to_centre = centre - origin
    dist = float(np.linalg.norm(to_centre))
    if dist <= radius:
        return np.arange(len(dirs))
    return np.flatnonzero(dirs @ (to_centre / dist) >= np.sqrt(1.0 - (radius / dist) ** 2))


def render_rays(scene: Scene, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour (N, 3) in [0, 1] and person id (N,) (-1 for background) of each ray."""
    n = dirs.shape[0]
    depth = np.full(n, np.inf)
    owner = np.full(n, -1, dtype=np.int64)
    bound = scene.radii.max(axis=1)  # bounding sphere of each ellipsoid
    # Cull twice, by a sphere around each whole person and then around each part, so the exact
    # test runs on few rays and only two passes touch every ray.
    for person in np.unique(scene.person):
        parts = np.flatnonzero(scene.person == person)
        centre = scene.centres[parts].mean(axis=0)
        radius = float((np.linalg.norm(scene.centres[parts] - centre, axis=1) + bound[parts]).max())
        person_rays = _rays_near_sphere(origin, dirs, centre, radius)
        person_dirs = dirs[person_rays]
        for m in parts:
            near = _rays_near_sphere(origin, person_dirs, scene.centres[m], bound[m])
            if near.size == 0:
                continue
            t = intersect_ellipsoid(origin, person_dirs[near], scene.centres[m], scene.rotations[m], scene.radii[m])
            candidates = person_rays[near]
            closer = t < depth[candidates]
            depth[candidates[closer]] = t[closer]
            owner[candidates[closer]] = m

    colour = np.empty((n, 3))
    background = owner < 0
    colour[background] = _room_colour(scene, origin, dirs[background])
    for m in np.unique(owner[~background]):
        rays = np.flatnonzero(owner == m)
        points = origin + depth[rays, None] * dirs[rays]
        colour[rays] = _body_colour(scene, m, points)
    person = np.where(background, -1, scene.person[np.maximum(owner, 0)])
    return np.clip(colour, 0.0, 1.0), person


def _body_colour(scene: Scene, m: int, points: np.ndarray) -> np.ndarray:
    rotation, radii = scene.rotations[m], scene.radii[m]
    local = (points - scene.centres[m]) @ rotation  # part frame, centred on the ellipsoid
    normal = (local / radii**2) @ rotation.T
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    shade = _AMBIENT + _DIFFUSE * np.clip(normal @ _LIGHT, 0.0, None)
    spec = PARTS[scene.part[m]]
    look = scene.people[scene.person[m]].appearance
    # Texture coordinates: position along the part's long axis and around it (metres).
    long_axis = int(np.argmax(radii))
    a, b = [i for i in range(3) if i != long_axis]
    along = local[:, long_axis]
    around = np.arctan2(local[:, b], local[:, a]) * 0.5 * (radii[a] + radii[b])
    if spec.material == SHIRT:
        stripes = (np.floor(along / look.stripe_width) % 2)[:, None]
        albedo = look.shirt[0] * (1 - stripes) + look.shirt[1] * stripes
    elif spec.material == PANTS:
        checks = ((np.floor(along / look.check_size) + np.floor(around / look.check_size)) % 2)[:, None]
        albedo = look.pants[0] * (1 - checks) + look.pants[1] * checks
    elif spec.material == HEAD:
        # Hair on top and at the back (head faces local +z), face elsewhere.
        u = local / radii
        hair = ((u[:, 1] > 0.35) | (u[:, 2] < -0.2))[:, None]
        eyes = ((np.abs(np.abs(u[:, 0]) - 0.35) < 0.12) & (np.abs(u[:, 1] - 0.15) < 0.08) & (u[:, 2] > 0.5))[:, None]
        albedo = np.where(hair, look.hair, np.where(eyes, 0.15 * look.skin, look.skin))
    elif spec.material == SKIN:
        albedo = look.skin * (0.93 + 0.07 * np.cos(along / 0.04))[:, None]
    elif spec.material == SHOES:
        albedo = np.broadcast_to(look.shoes, (len(points), 3))
    else:  # pragma: no cover - every part has one of the materials above
        raise ValueError(f"unknown material {spec.material}")
    return albedo * shade[:, None]


def _room_colour(scene: Scene, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    room = scene.room
    # Backdrop: exit point of the vertical cylinder x^2 + z^2 = R^2 (the camera is inside).
    ox, oz = origin[0], origin[2]
    dx, dz = dirs[:, 0], dirs[:, 2]
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - room.backdrop_radius**2
    t_wall = (-b + np.sqrt(np.maximum(b * b - a * c, 0.0))) / np.maximum(a, 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(dirs[:, 1] < 0, -origin[1] / dirs[:, 1], np.inf)
    on_floor = t_floor < t_wall
    colour = np.empty((len(dirs), 3))

    p = origin + t_floor[on_floor, None] * dirs[on_floor]
    tiles = ((np.floor(p[:, 0] / room.tile_size) + np.floor(p[:, 2] / room.tile_size)) % 2)[:, None]
    floor = room.floor_colours[0] * (1 - tiles) + room.floor_colours[1] * tiles
    # Soft contact shadow under the people, so the floor reads as a ground plane.
    shadow = np.ones(len(p))
    for centre in scene.centres[scene.part == 0]:
        shadow *= 1 - 0.35 * np.exp(-((p[:, 0] - centre[0]) ** 2 + (p[:, 2] - centre[2]) ** 2) / 0.12)
    colour[on_floor] = floor * (0.9 * shadow)[:, None]

    wall = ~on_floor
    p = origin + t_wall[wall, None] * dirs[wall]
    angle = np.arctan2(p[:, 2], p[:, 0])
    panel = ((angle + np.pi) / (2 * np.pi) * len(room.panel_colours)).astype(int) % len(room.panel_colours)
    height = p[:, 1]
    bands = 0.85 + 0.15 * (np.floor(height / 0.4) % 2)
    trim = np.where(height < 0.15, 0.55, 1.0)  # skirting board where wall meets floor
    colour[wall] = room.panel_colours[panel] * (bands * trim * 0.95)[:, None]
    return colour
