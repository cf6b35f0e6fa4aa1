"""Names an object's motion from its track: centre positions and areas per frame.

In order: two or more reversals of direction are bouncing; a clear net shift is one of eight
directions; a clear change of area is growing or shrinking; a changing outline around a still
centre is rotating; anything else is still.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

BOUNCE_SWING = 0.05  # a reversal must swing back this far (fraction of min(width, height))
MOVE_DISTANCE = 0.12  # net shift of a moving object; toy motions travel 0.25-0.5
GROW_RATIO = 1.5  # last / first area; toy growth is 2.6-3.2x in area ...
SHRINK_RATIO = 0.67  # ... and shrinking 0.2-0.3x
ROTATION_CHANGE = 0.19  # 1 - IoU of the outline against frame 0: rotating shapes 0.23-0.58, still ones under a camera move up to 0.15

# Compass names counter-clockwise from "right", with y pointing up.
_COMPASS = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")


def count_reversals(values: np.ndarray, swing: float) -> int:
    """How often a sequence turns back by more than `swing` (hysteresis, so jitter never counts)."""
    reversals, direction = 0, 0
    extreme = float(values[0])  # the farthest point reached in the current direction
    for v in values[1:]:
        if direction == 0:
            if abs(v - extreme) > swing:
                direction, extreme = (1 if v > extreme else -1), float(v)
        elif (v - extreme) * direction > 0:
            extreme = float(v)
        elif abs(v - extreme) > swing:
            reversals, direction, extreme = reversals + 1, -direction, float(v)
    return reversals


def direction_name(dx: float, dy: float) -> str:
    """Compass name of an image displacement (y pointing down)."""
    angle = math.degrees(math.atan2(-dy, dx)) % 360.0
    return _COMPASS[int(((angle + 22.5) % 360.0) // 45.0)]


def net_displacement(centres: np.ndarray) -> np.ndarray:
    """First-to-last shift (2,) of a straight-line fit through the centres, robust to jitter."""
    t = np.arange(len(centres), dtype=np.float64)
    slope = np.polyfit(t, centres, 1)[0]  # (2,)
    return slope * (len(centres) - 1)


def motion_label(centres: np.ndarray, areas: np.ndarray, side: float, outline_change: Callable[[], float]) -> str:
    """Motion of a track: centres (T, 2) and areas (T,) in first-frame coordinates.

    outline_change: computes 1 - IoU of the scale-normalised outline against frame 0 (only asked for
    when the cheaper tests leave rotation open).
    """
    if len(centres) < 2:
        return "still"
    swing = BOUNCE_SWING * side
    if max(count_reversals(centres[:, 0], swing), count_reversals(centres[:, 1], swing)) >= 2:
        return "bouncing"
    shift = net_displacement(centres)
    if np.hypot(*shift) > MOVE_DISTANCE * side:
        return direction_name(*shift)
    k = max(1, len(areas) // 8)
    ratio = float(np.mean(areas[-k:]) / max(np.mean(areas[:k]), 1e-6))
    if ratio > GROW_RATIO:
        return "growing"
    if ratio < SHRINK_RATIO:
        return "shrinking"
    return "rotating" if outline_change() > ROTATION_CHANGE else "still"
