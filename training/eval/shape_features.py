"""Names a region's shape from rotation-invariant features of its mask.

solidity (pixel count / area of their convex hull) singles out the star; the ratio of the principal axes the
diamond; how much of the circle through its farthest pixel it fills (1 circle, 0.64 square,
0.41 triangle) the rest. Thresholds were measured on rendered shapes of radius 5 px and up. Every shape has the same area, so size never enters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError

STAR_SOLIDITY = 0.9  # a star is 0.57-0.78 from radius 5 px up, convex shapes 1.0-1.3
DIAMOND_AXIS_RATIO = 1.35  # a diamond is 1.67, the regular shapes 1
CIRCLE_FILL = 0.75  # circle 0.8-0.97 (the low end at radius 5 px), square 0.57-0.68
SQUARE_FILL = 0.53  # square 0.57-0.68, triangle 0.38-0.5


@dataclass(frozen=True)
class ShapeFeatures:
    solidity: float
    axis_ratio: float  # major / minor principal axis
    fill: float  # area / (pi * farthest pixel distance from the centroid ** 2)


def shape_features(mask: np.ndarray) -> ShapeFeatures:
    """Features of the one region in bool `mask` (any crop that contains it)."""
    ys, xs = np.nonzero(mask)
    area = float(len(ys))
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    centred = points - points.mean(axis=0)
    # Second moments of the pixel squares (each adds 1/12 per axis): the principal axes' ratio.
    eigen = np.linalg.eigvalsh(centred.T @ centred / max(area, 1.0) + np.eye(2) / 12.0)
    axis_ratio = float(np.sqrt(eigen[1] / max(eigen[0], 1e-9)))
    # Pixel centres sit half a pixel inside the outline, so reach out to the pixel's far side.
    reach = float(np.sqrt((centred**2).sum(axis=1).max())) + 0.5
    try:
        # The hull of the pixel centres is about half a perimeter smaller than the pixel count, so
        # convex regions score a little over 1 and a star about 0.6.
        solidity = area / ConvexHull(points).volume
    except QhullError:  # a line or a few pixels: no area to compare
        solidity = 1.0
    return ShapeFeatures(float(solidity), axis_ratio, area / (np.pi * reach**2))


def classify_shape(features: ShapeFeatures) -> str:
    """The toy shape the features describe."""
    if features.solidity < STAR_SOLIDITY:
        return "star"
    if features.axis_ratio > DIAMOND_AXIS_RATIO:
        return "diamond"
    if features.fill > CIRCLE_FILL:
        return "circle"
    return "square" if features.fill > SQUARE_FILL else "triangle"
