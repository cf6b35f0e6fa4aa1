"""Object paths: how each motion moves an object, and where it can start so it stays in view.

A path is built relative to its start, then the start is drawn from the exact box of positions that
keep the object inside the frame at every frame (through the camera) and clear of earlier objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.data.toy_world.shapes import SHAPE_EXTENT
from training.data.toy_world.truth import ObjectTruth
from training.data.toy_world.vocabulary import DIRECTIONS

EDGE_PIXELS = 2.0  # kept free between an object and the frame edge
GAP = 0.05  # kept free between two objects at every frame, as a fraction of min(width, height)
ATTEMPTS = 10  # paths tried per placement
STARTS_PER_PATH = 16  # start positions tried per path
MIN_TRAVEL = 0.25  # shortest straight move or bounce, fraction of min(width, height)
MIN_GROWTH = 1.5  # smallest final / first radius of a growing object


@dataclass(frozen=True)
class Subject:
    """What an object is, before it is given a motion and a place."""

    kind: str  # "shape" | "digit"
    shape: str | None
    digit: int | None
    digit_sample: int | None
    colour: str
    size: str
    radius: float  # size parameter in world pixels

    @property
    def extent(self) -> float:
        """Half-width of the object's box in units of its radius (a digit fills its 8x8 box)."""
        return SHAPE_EXTENT[self.shape] if self.kind == "shape" else 1.0

    @property
    def reach(self) -> float:
        """Distance from the centre to the farthest inked point, in units of its radius."""
        return SHAPE_EXTENT[self.shape] if self.kind == "shape" else math.sqrt(2.0)


def _relative_path(
    rng: np.random.Generator, subject: Subject, motion: str, t: np.ndarray, side: float, room: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Offsets from the start (T, 2), radii (T,) and angles (T,) in world units for `motion`, or
    None if it cannot fit.

    room: (x, y) span the object's centre can travel over while it stays fully in view at its
    start size; distances and growth are drawn within it (but never below a clearly visible amount).
    """
    offsets = np.zeros((len(t), 2))
    radii = np.full(len(t), subject.radius)
    angles = np.zeros(len(t))
    if motion in DIRECTIONS:
        direction = np.asarray(DIRECTIONS[motion])
        longest = min(r / abs(d) for r, d in zip(room, direction) if d != 0)
        if longest < MIN_TRAVEL * side:
            return None
        distance = min(rng.uniform(0.3, 0.5) * side, rng.uniform(MIN_TRAVEL * side, longest))
        offsets = np.outer(t, direction * distance)
    elif motion == "bouncing":
        if room[1] < MIN_TRAVEL * side:
            return None
        height = min(rng.uniform(0.25, 0.4) * side, rng.uniform(MIN_TRAVEL * side, room[1]))
        bounces = rng.uniform(1.5, 2.5) if len(t) >= 17 else 1.5  # a bounce needs about 6 frames
        drift = rng.uniform(-0.1, 0.1) * min(side, room[0])
        offsets = np.stack([drift * t, -height * np.abs(np.sin(np.pi * bounces * t))], axis=1)
    elif motion == "rotating":
        turn = rng.uniform(90.0, 180.0) * (1 if rng.random() < 0.5 else -1)
        angles = turn * t
    elif motion == "growing":
        # The grown object must still fit: its box grows by (growth - 1) * extent * radius a side.
        most = 1.0 + min(room) / (2 * subject.extent * subject.radius)
        if most < MIN_GROWTH:
            return None
        radii = subject.radius * (1.0 + (min(rng.uniform(1.6, 1.8), most) - 1.0) * t)
    elif motion == "shrinking":
        radii = subject.radius * (1.0 + (rng.uniform(0.45, 0.55) - 1.0) * t)
    elif motion != "still":
        raise ValueError(f"`motion` must be one of the toy motions but is {motion!r}")
    return offsets, radii, angles


def place_object(
    rng: np.random.Generator,
    subject: Subject,
    motion: str,
    *,
    width: int,
    height: int,
    camera_path: np.ndarray,
    others: tuple[ObjectTruth, ...] = (),
) -> ObjectTruth | None:
    """`subject` doing `motion`, placed in view and clear of `others`; None if it does not fit."""
    num_frames = len(camera_path)
    t = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    side = min(width, height)
    cam_xy, zoom = camera_path[:, :2], camera_path[:, 2:3]
    frame_centre = np.array([width / 2, height / 2])
    margin_at_start = subject.extent * subject.radius * zoom.max() + EDGE_PIXELS
    room = np.array([width, height]) - 2 * margin_at_start
    if np.any(room < 0):
        return None
    # Every earlier object's centres (T, 2) and reach (T,) in image pixels.
    obstacles = [(np.asarray(o.centres), np.asarray(o.radii) * _reach(o)) for o in others]
    for _ in range(ATTEMPTS):
        path = _relative_path(rng, subject, motion, t, side, room)
        if path is None:
            return None
        offsets, radii, angles = path
        # Image position = (start + offset - camera) * zoom + frame centre must keep the object's
        # box inside the frame: solve for the box of feasible starts, frame by frame.
        margin = subject.extent * radii[:, None] * zoom + EDGE_PIXELS
        low = (margin - frame_centre) / zoom + cam_xy - offsets
        high = (np.array([width, height]) - margin - frame_centre) / zoom + cam_xy - offsets
        low, high = low.max(axis=0), high.min(axis=0)
        if np.any(low > high):
            continue
        # Several starts at once, the first that keeps clear of every earlier object wins.
        starts = rng.uniform(low, high, size=(STARTS_PER_PATH, 2))
        centres = (starts[:, None, :] + offsets - cam_xy) * zoom + frame_centre  # (K, T, 2)
        image_radii = radii * zoom[:, 0]
        clear = np.ones(STARTS_PER_PATH, dtype=bool)
        for other_centres, other_reach in obstacles:
            distance = np.linalg.norm(centres - other_centres, axis=-1)  # (K, T)
            clear &= np.all(distance >= image_radii * subject.reach + other_reach + GAP * side, axis=1)
        if not clear.any():
            continue
        chosen = centres[int(np.argmax(clear))]
        return ObjectTruth(
            kind=subject.kind,
            shape=subject.shape,
            digit=subject.digit,
            colour=subject.colour,
            size=subject.size,
            motion=motion,
            centres=tuple((float(x), float(y)) for x, y in chosen),
            radii=tuple(float(r) for r in image_radii),
            angles=tuple(float(a) for a in angles),
            digit_sample=subject.digit_sample,
        )
    return None


def _reach(obj: ObjectTruth) -> float:
    """Distance from an object's centre to its farthest inked point, in units of its radius."""
    return SHAPE_EXTENT[obj.shape] if obj.kind == "shape" else math.sqrt(2.0)
