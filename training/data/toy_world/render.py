"""Draws a toy clip from its ClipTruth: background, then each object, anti-aliased, frame by frame.

Pure numpy (plus PIL for photo crops), so the same truth gives the same bytes every time.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage

from training.data.toy_world.shapes import SHAPE_EXTENT, shape_coverage
from training.data.toy_world.sources import digit_glyph, glyph_coordinates, photo_world
from training.data.toy_world.textures import background_image
from training.data.toy_world.truth import ClipTruth, ObjectTruth
from training.data.toy_world.vocabulary import BACKGROUNDS, COLOURS

INK_THRESHOLD = 0.4  # smoothed digit ink at which a pixel is half covered


def render_clip(truth: ClipTruth) -> np.ndarray:
    """The clip described by `truth`, uint8 (T, H, W, 3)."""
    w, h = truth.width, truth.height
    frames = np.empty((truth.num_frames, h, w, 3), dtype=np.uint8)
    for t in range(truth.num_frames):
        camera = truth.camera_path[t]
        if truth.photo is not None:
            frames[t] = _photo_frame(truth.photo, w, h, camera)
            continue
        frame = background_image(BACKGROUNDS[truth.background], w, h, camera, truth.background_phase)
        for obj in truth.objects:
            _draw_object(frame, obj, t)
        frames[t] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    return frames


def object_coverage(truth: ClipTruth) -> np.ndarray:
    """How much of each pixel the clip's objects cover, float32 (T, H, W) in [0, 1]; zeros for a photo clip."""
    coverage = np.zeros((truth.num_frames, truth.height, truth.width), dtype=np.float32)
    for t in range(truth.num_frames):
        for obj in truth.objects:
            drawn = _object_alpha(obj, t, truth.height, truth.width)
            if drawn is not None:
                (ys, xs), alpha = drawn
                np.maximum(coverage[t, ys, xs], alpha, out=coverage[t, ys, xs])
    return coverage


def _draw_object(frame: np.ndarray, obj: ObjectTruth, t: int) -> None:
    """Blend `obj` as it is at frame `t` into `frame` (float32, H x W x 3), in place."""
    drawn = _object_alpha(obj, t, *frame.shape[:2])
    if drawn is None:
        return
    (ys, xs), alpha = drawn
    colour = np.asarray(COLOURS[obj.colour], dtype=np.float32)
    region = frame[ys, xs]
    region += alpha[..., None] * (colour - region)


def _object_alpha(obj: ObjectTruth, t: int, h: int, w: int) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Where `obj` touches an h x w frame at frame `t`: the (rows, columns) slices and its coverage there
    (float32), or None when it is out of view."""
    (cx, cy), radius, angle = obj.centres[t], obj.radii[t], obj.angles[t]
    extent = SHAPE_EXTENT[obj.shape] if obj.kind == "shape" else math.sqrt(2.0)
    reach = extent * radius + 2.0  # pixels around the centre that can be touched
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 2)
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 2)
    if x0 >= x1 or y0 >= y1:
        return None
    # Pixel centres relative to the object, rotated into its own frame, in units of its size.
    px = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
    py = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    qx = (cos * px + sin * py) / radius
    qy = (-sin * px + cos * py) / radius
    if obj.kind == "shape":
        alpha = shape_coverage(obj.shape, qx, qy, radius)
    else:
        alpha = digit_coverage(obj.digit_sample, qx, qy)
    return (slice(y0, y1), slice(x0, x1)), alpha.astype(np.float32)


def digit_coverage(sample: int, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
    """Ink coverage of digit `sample` at unit coordinates (its 8x8 box spans [-1, 1])."""
    qx, qy = np.broadcast_arrays(qx, qy)
    rows, cols = glyph_coordinates(qx, qy)
    ink = ndimage.map_coordinates(digit_glyph(sample), [rows, cols], order=1, mode="constant")
    # Ink above INK_THRESHOLD of full strength is the stroke; a ramp keeps its edge anti-aliased.
    return np.clip((ink - INK_THRESHOLD) * 5.0 + 0.5, 0.0, 1.0)


def _photo_frame(name: str, width: int, height: int, camera: tuple[float, float, float]) -> np.ndarray:
    """The view of photo `name` from `camera` (x, y, zoom in world pixels), uint8 (H, W, 3)."""
    world = photo_world(name, width, height)
    cx, cy, zoom = camera
    half_w, half_h = width / (2 * zoom), height / (2 * zoom)
    extent = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
    view = world.transform((width, height), Image.Transform.EXTENT, extent, resample=Image.Resampling.BILINEAR)
    return np.asarray(view)
