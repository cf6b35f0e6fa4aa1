"""Unit outlines of the toy shapes and their anti-aliased coverage, computed from signed distances.

Every shape has the area of the unit circle, so "small" and "large" mean the same area whatever the
shape. Coverage is exact up to the corners, which is anti-aliasing without supersampling.
"""

from __future__ import annotations

import math

import numpy as np

_SQUARE_HALF = math.sqrt(math.pi) / 2
_TRIANGLE_R = math.sqrt(math.pi / (3 * math.sqrt(3) / 4))
_DIAMOND_A = math.sqrt(math.pi / 1.2)  # half of the long diagonal; the short one is 0.6 of it
_STAR_INNER = 0.45  # inner / outer radius
_STAR_R = math.sqrt(math.pi / (5 * _STAR_INNER * math.sin(math.radians(36))))


def _polygon(angles_deg: list[float], radii: list[float]) -> np.ndarray:
    """Vertices at polar (angle, radius), angle 0 pointing up, clockwise on screen (y down)."""
    a = np.radians(np.asarray(angles_deg))
    r = np.asarray(radii)
    return np.stack([r * np.sin(a), -r * np.cos(a)], axis=1)


def _star_pieces() -> list[np.ndarray]:
    outer = _polygon([72.0 * k for k in range(5)], [_STAR_R] * 5)
    inner = _polygon([36.0 + 72.0 * k for k in range(5)], [_STAR_R * _STAR_INNER] * 5)
    # A star is not convex: a central pentagon plus five spikes, each convex.
    spikes = [np.stack([inner[k - 1], outer[k], inner[k]]) for k in range(5)]
    return [inner, *spikes]


# Convex pieces per shape, in unit coordinates (x right, y down); a circle has none.
SHAPE_PIECES: dict[str, list[np.ndarray]] = {
    "circle": [],
    "square": [_polygon([45, 135, 225, 315], [_SQUARE_HALF * math.sqrt(2)] * 4)],
    "triangle": [_polygon([0, 120, 240], [_TRIANGLE_R] * 3)],
    "diamond": [np.array([[0.0, -_DIAMOND_A], [0.6 * _DIAMOND_A, 0.0], [0.0, _DIAMOND_A], [-0.6 * _DIAMOND_A, 0.0]])],
    "star": _star_pieces(),
}

# Largest distance from the centre to the outline, in units of the size parameter.
SHAPE_EXTENT: dict[str, float] = {
    "circle": 1.0,
    "square": _SQUARE_HALF * math.sqrt(2),
    "triangle": _TRIANGLE_R,
    "diamond": _DIAMOND_A,
    "star": _STAR_R,
}


def _half_planes(piece: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outward unit normals (E, 2) and offsets (E,) of a convex polygon's edges."""
    edges = np.roll(piece, -1, axis=0) - piece
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    offsets = np.einsum("ed,ed->e", normals, piece)
    # Orient every normal away from the piece's centroid, whichever way round the vertices go.
    flip = normals @ piece.mean(axis=0) - offsets > 0
    normals[flip], offsets[flip] = -normals[flip], -offsets[flip]
    return normals, offsets


_HALF_PLANES: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
    name: [_half_planes(p) for p in pieces] for name, pieces in SHAPE_PIECES.items()
}


def shape_coverage(shape: str, qx: np.ndarray, qy: np.ndarray, pixels_per_unit: float) -> np.ndarray:
    """Fraction of each pixel inside `shape`, for pixel centres at unit coordinates (qx, qy)."""
    if shape == "circle":
        sdf = np.hypot(qx, qy) - 1.0
    else:
        sdf = None
        for normals, offsets in _HALF_PLANES[shape]:
            # max over edges is the exact inside distance of a convex piece (corners round off by
            # under a pixel outside, invisible at this size); min over pieces is their union.
            d = np.max(normals[:, 0, None, None] * qx + normals[:, 1, None, None] * qy - offsets[:, None, None], axis=0)
            sdf = d if sdf is None else np.minimum(sdf, d)
    return np.clip(0.5 - sdf * pixels_per_unit, 0.0, 1.0)
