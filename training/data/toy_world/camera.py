"""Camera paths: per frame, the world point at the image centre and the zoom.

"pan right" moves the camera right, so the scene slides left across the frame; zooms are geometric
in time so they look steady.
"""

from __future__ import annotations

import numpy as np

PAN_RANGE = (0.25, 0.45)  # pan distance, fraction of min(width, height)
ZOOM_IN_RANGE = (1.4, 1.6)  # zoom at the last frame (the first is 1)
ZOOM_OUT_RANGE = (0.68, 0.75)


def still_camera(width: int, height: int, num_frames: int) -> np.ndarray:
    """A camera that does not move, looking at the middle of a scene: (T, 3)."""
    return np.tile([width / 2, height / 2, 1.0], (num_frames, 1))


def camera_path(
    rng: np.random.Generator,
    move: str,
    *,
    width: int,
    height: int,
    num_frames: int,
    world_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """(T, 3) path of `move`; within a world of `world_size` (a photo) if given, else a scene."""
    t = np.linspace(0.0, 1.0, num_frames)
    side = min(width, height)
    if move.startswith("pan"):
        zoom = np.ones(num_frames)
        distance = rng.uniform(*PAN_RANGE) * side
    elif move in ("zoom in", "zoom out"):
        zoom = rng.uniform(*(ZOOM_IN_RANGE if move == "zoom in" else ZOOM_OUT_RANGE)) ** t
        distance = 0.0
    else:
        raise ValueError(f"`move` must be pan left, pan right, zoom in or zoom out but is {move!r}")
    sign = -1.0 if move == "pan left" else 1.0
    if world_size is None:
        x0, y0 = width / 2, height / 2
    else:
        # The view, at its widest, must stay inside the photo for the whole move.
        ww, wh = world_size
        half_w, half_h = width / (2 * zoom.min()), height / (2 * zoom.min())
        distance = min(distance, ww - 2 * half_w)
        lo_x = half_w + (distance if sign < 0 else 0.0)
        hi_x = ww - half_w - (distance if sign > 0 else 0.0)
        x0 = rng.uniform(lo_x, max(lo_x, hi_x))
        y0 = rng.uniform(half_h, max(half_h, wh - half_h))
    x = x0 + sign * distance * t
    return np.stack([x, np.full(num_frames, y0), zoom], axis=1)
