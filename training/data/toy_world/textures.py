"""Backgrounds as smooth functions of world position, so a camera can pan and zoom over them.

Texture edges are soft (a few pixels wide), which keeps them free of aliasing at every zoom. The
mottled and dotted textures are irregular on purpose: a repeating pattern looks the same after a
step of one period, which hides which way the camera went.
"""

from __future__ import annotations

import numpy as np

from training.data.toy_world.vocabulary import Background


def world_grid(width: int, height: int, camera: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (x (1, W), y (H, 1)) of the pixel centres seen by `camera` (x, y, zoom)."""
    cx, cy, zoom = camera
    x = (np.arange(width, dtype=np.float64) + 0.5 - width / 2) / zoom + cx
    y = (np.arange(height, dtype=np.float64) + 0.5 - height / 2) / zoom + cy
    return x[None, :], y[:, None]


def cell_random(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) for every integer lattice cell (ix, iy)."""
    h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ (salt * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF) / 65536.0


def _mottle(x: np.ndarray, y: np.ndarray, cell: float) -> np.ndarray:
    """Value noise: random levels on a lattice, blended with smoothstep weights."""
    gx, gy = x / cell, y / cell
    ix, iy = np.floor(gx), np.floor(gy)
    fx, fy = gx - ix, gy - iy
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    top = cell_random(ix, iy, 1) * (1 - sx) + cell_random(ix + 1, iy, 1) * sx
    bottom = cell_random(ix, iy + 1, 1) * (1 - sx) + cell_random(ix + 1, iy + 1, 1) * sx
    return top * (1 - sy) + bottom * sy


def _dots(x: np.ndarray, y: np.ndarray, spacing: float) -> np.ndarray:
    """Polka dots, one per lattice cell, each nudged and sized at random (and kept inside its cell)."""
    gx, gy = x / spacing, y / spacing
    ix, iy = np.floor(gx), np.floor(gy)
    centre_x = ix + 0.5 + (cell_random(ix, iy, 2) - 0.5) * 0.4
    centre_y = iy + 0.5 + (cell_random(ix, iy, 3) - 0.5) * 0.4
    radius = 0.15 + 0.13 * cell_random(ix, iy, 4)  # at most 0.28 + 0.2 < 0.5 from the cell centre
    dist = np.hypot(gx - centre_x, gy - centre_y)
    return np.clip((radius - dist) * spacing + 0.5, 0.0, 1.0)


def background_image(
    background: Background,
    width: int,
    height: int,
    camera: tuple[float, float, float],
    phase: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """The background seen by `camera`, float32 (H, W, 3) in [0, 255]."""
    c0 = np.asarray(background.colours[0], dtype=np.float32)
    c1 = np.asarray(background.colours[1], dtype=np.float32)
    if background.kind == "plain":
        return np.broadcast_to(c0, (height, width, 3)).copy()
    x, y = world_grid(width, height, camera)
    x, y = x + phase[0], y + phase[1]
    side = min(width, height)
    if background.kind == "gradient":
        mix = np.broadcast_to(np.clip((y - phase[1]) / height, 0.0, 1.0), (height, width))  # top to bottom
    elif background.kind == "checkerboard":
        cell = side / 8
        mix = 0.5 + 0.5 * np.tanh(3.0 * np.sin(np.pi * x / cell) * np.sin(np.pi * y / cell))
    elif background.kind == "mottled":
        # Two octaves: blotches and a finer grain, which gives a camera move detail to follow.
        mix = (2 * _mottle(x, y, side / 6) + _mottle(x + 1000.0, y, side / 16)) / 3
    elif background.kind == "dots":
        mix = _dots(x, y, side / 6)
    else:
        raise ValueError(f"`background.kind` must be plain, gradient, checkerboard, mottled or dots but is {background.kind!r}")
    return (c0 * (1.0 - mix[..., None]) + c1 * mix[..., None]).astype(np.float32)
