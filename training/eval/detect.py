"""Finds the objects in a clip and describes each: colour, shape (or digit), size and motion.

Pipeline: background fit -> regions per frame -> camera move from the background -> tracks ->
per-track attributes, with motion measured in first-frame coordinates so a camera move is not
mistaken for the object's own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from training.eval.camera_motion import CameraEstimate, estimate_camera, static_camera
from training.eval.colour_names import name_colour
from training.eval.digit_recognition import read_digit
from training.eval.motion_labels import motion_label
from training.eval.segmentation import Region, estimate_background, foreground_distance, frame_regions
from training.eval.shape_features import classify_shape, shape_features
from training.eval.tracking import link_regions

# Size classes split between the toy sizes (fractions of min(width, height)) at the first frame: a
# shape's radius of the circle of equal area (0.072-0.088 vs 0.144-0.176), a digit's half ink
# height (0.11-0.14 vs 0.18-0.22, measured on 300 clips).
SHAPE_SIZE_SPLIT = (0.08 * 0.16) ** 0.5
DIGIT_SIZE_SPLIT = 0.157
MERGE_GAP = 0.06  # same-coloured pieces closer than this (fraction of the side) are one object
MAX_SHAPE_VOTES = 9  # frames whose outline votes on the shape
SAME_SCALE = 0.7  # area ratio within which two outlines are compared for rotation
RIM = 2  # pixels around a region that its anti-aliased edge may tint


@dataclass(frozen=True)
class DetectedObject:
    colour: str
    shape: str  # the toy shape its outline is closest to (also for digits)
    digit: int  # the digit its outline reads as (also for shapes)
    size: str  # "small" | "large" as a shape
    digit_size: str  # "small" | "large" as a digit
    motion: str
    centres: tuple[tuple[float, float], ...]  # (x, y) per frame, interpolated where unseen
    areas: tuple[float, ...]  # pixels per frame, interpolated where unseen
    seen: int  # frames it was found in
    rgb: tuple[float, float, float]  # median colour


@dataclass(frozen=True)
class ClipAnalysis:
    objects: tuple[DetectedObject, ...]  # largest first
    camera: str  # "pan left" | "pan right" | "zoom in" | "zoom out" | "static"
    camera_measurable: bool  # False on a plain or gradient background, where no move can show


def check_frames(frames: np.ndarray, name: str = "frames") -> None:
    """Raise ValueError unless `frames` is a uint8 (T, H, W, 3) video."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise ValueError(f"`{name}` must be a uint8 array (T, H, W, 3) but is {dtype} with shape {shape}")
    if min(frames.shape[:3]) < 1:
        raise ValueError(f"`{name}` must not be empty but has shape {frames.shape}")


def analyse_clip(frames: np.ndarray, background_hint: np.ndarray | tuple | None = None) -> ClipAnalysis:
    """Objects and camera move of a uint8 (T, H, W, 3) clip.

    background_hint: the background instead of estimating it (see segmentation.estimate_background);
    with one, the camera is taken to be still.
    """
    return _analyse(frames, background_hint)[0]


def subject_pixels(frames: np.ndarray, background_hint: np.ndarray | tuple | None = None) -> np.ndarray:
    """RGB pixels (N, 3) inside the clip's largest object (its anti-aliased rim left out) over all
    frames; every pixel if it has none."""
    analysis, tracks = _analyse(frames, background_hint)
    if not tracks:
        return frames.reshape(-1, 3)
    biggest = max(tracks, key=lambda track: sum(r.area for r in track if r is not None))
    pixels = []
    for r in (r for r in biggest if r is not None):
        y0, x0, y1, x1 = r.box
        inner = ndimage.binary_erosion(r.mask)
        pixels.append(frames[r.frame, y0:y1, x0:x1][inner if inner.any() else r.mask])
    return np.concatenate(pixels)


def _analyse(frames: np.ndarray, background_hint) -> tuple[ClipAnalysis, list[list[Region]]]:
    check_frames(frames)
    num_frames, h, w, _ = frames.shape
    side = float(min(h, w))
    background = estimate_background(frames, background_hint)
    distance = foreground_distance(frames, background)
    regions = [frame_regions(frames[t], distance[t], t, max(2.0, MERGE_GAP * side)) for t in range(num_frames)]
    covered = _covered_by(regions, (num_frames, h, w))
    camera = estimate_camera(frames, background, covered) if background_hint is None else static_camera(num_frames, False)
    tracks = link_regions(regions, side)
    objects = [_describe(track, distance, camera, side, np.array([w / 2, h / 2])) for track in tracks]
    order = sorted(range(len(objects)), key=lambda k: -float(np.mean(objects[k].areas)))
    analysis = ClipAnalysis(tuple(objects[k] for k in order), camera.label, camera.measurable)
    return analysis, [tracks[k] for k in order]


def _covered_by(regions: list[list[Region]], shape: tuple[int, int, int]) -> np.ndarray:
    """(T, H, W) mask of every region grown by RIM pixels, so that it holds their soft rims too."""
    num_frames, h, w = shape
    covered = np.zeros(shape, dtype=bool)
    grow = np.ones((2 * RIM + 1, 2 * RIM + 1), dtype=bool)
    for region in (r for found in regions for r in found):
        y0, x0, y1, x1 = region.box
        ya, xa, yb, xb = max(0, y0 - RIM), max(0, x0 - RIM), min(h, y1 + RIM), min(w, x1 + RIM)
        mask = np.zeros((yb - ya, xb - xa), dtype=bool)
        mask[y0 - ya : y1 - ya, x0 - xa : x1 - xa] = region.mask
        covered[region.frame, ya:yb, xa:xb] |= ndimage.binary_dilation(mask, structure=grow)
    return covered


def detect_objects(frames: np.ndarray, background_hint: np.ndarray | tuple | None = None) -> list[DetectedObject]:
    """The objects of a uint8 (T, H, W, 3) clip, largest first."""
    return list(analyse_clip(frames, background_hint).objects)


def count_objects(frames: np.ndarray, background_hint: np.ndarray | tuple | None = None) -> int:
    """How many objects a clip shows."""
    return len(analyse_clip(frames, background_hint).objects)


def dominant_motion(frames: np.ndarray, background_hint: np.ndarray | tuple | None = None) -> str:
    """The largest object's motion; the camera move if there is no object ("static" if neither)."""
    analysis = analyse_clip(frames, background_hint)
    return analysis.objects[0].motion if analysis.objects else analysis.camera


def _describe(track: list[Region | None], distance: np.ndarray, camera: CameraEstimate, side: float, centre: np.ndarray) -> DetectedObject:
    present = [r for r in track if r is not None]
    seen_at = np.array([r.frame for r in present])
    every = np.arange(len(track))
    centres = np.stack([np.interp(every, seen_at, [r.centroid[k] for r in present]) for k in (0, 1)], axis=1)
    areas = np.interp(every, seen_at, [r.area for r in present])
    moving_camera = camera.label != "static"
    world_centres = camera.to_first_frame(centres, centre) if moving_camera else centres
    world_areas = areas / camera.scales**2 if moving_camera else areas

    rgb = tuple(float(v) for v in np.median([r.rgb for r in present], axis=0))
    step = -(-len(present) // MAX_SHAPE_VOTES)  # ceil: at most MAX_SHAPE_VOTES votes
    votes: Counter[str] = Counter()
    for r in present[::step]:
        votes[classify_shape(shape_features(r.mask))] += r.area
    largest = max(present, key=lambda r: r.area)
    first = present[0]
    scale = camera.scales[first.frame] if moving_camera else 1.0
    radius = np.sqrt(first.area / np.pi) / scale / side
    half_height = (first.box[2] - first.box[0]) / 2 / scale / side
    motion = motion_label(world_centres, world_areas, side, lambda: _outline_change(present, distance))
    return DetectedObject(
        colour=name_colour(rgb)[0],
        shape=votes.most_common(1)[0][0],
        digit=read_digit(largest.mask)[0],
        size="large" if radius > SHAPE_SIZE_SPLIT else "small",
        digit_size="large" if half_height > DIGIT_SIZE_SPLIT else "small",
        motion=motion,
        centres=tuple((float(x), float(y)) for x, y in centres),
        areas=tuple(float(a) for a in areas),
        seen=len(present),
        rgb=rgb,
    )


def _soft_alpha(distance: np.ndarray, region: Region, pad: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(alpha crop, crop origin (x, y)): coverage of the region from its colour distance, which
    blends linearly from the background to the object colour across an anti-aliased edge."""
    h, w = distance.shape
    y0, x0, y1, x1 = region.box
    ya, xa, yb, xb = max(0, y0 - pad), max(0, x0 - pad), min(h, y1 + pad), min(w, x1 + pad)
    mask = np.zeros((yb - ya, xb - xa), dtype=bool)
    mask[y0 - ya : y1 - ya, x0 - xa : x1 - xa] = region.mask
    crop = distance[ya:yb, xa:xb]
    inside = crop[mask]
    full = np.median(inside[inside >= 0.8 * np.percentile(inside, 90)])  # leave out the soft rim
    near = ndimage.binary_dilation(mask, structure=np.ones((2 * pad + 1, 2 * pad + 1), dtype=bool))
    alpha = np.clip(crop / max(full, 1e-6), 0.0, 1.0) * near
    return alpha, np.array([xa, ya], dtype=np.float64)


def _outline_change(present: list[Region], distance: np.ndarray, max_frames: int = 8) -> float:
    """Largest 1 - IoU of the outline against its first frame, after aligning centre and scale.

    Frames at a very different scale are skipped: resampling a small raster outline to a large one
    changes it by itself (a rotating object keeps its size, so it is always compared).
    """
    ref, ref_origin = _soft_alpha(distance[present[0].frame], present[0])
    ys, xs = np.mgrid[0 : ref.shape[0], 0 : ref.shape[1]].astype(np.float64)
    ref_area = ref.sum()
    ref_centre = np.array([(xs * ref).sum(), (ys * ref).sum()]) / max(ref_area, 1e-6) + ref_origin
    change = 0.0
    for region in present[1 :: max(1, len(present) // max_frames)]:
        alpha, origin = _soft_alpha(distance[region.frame], region)
        ay, ax = np.mgrid[0 : alpha.shape[0], 0 : alpha.shape[1]].astype(np.float64)
        area = alpha.sum()
        if not SAME_SCALE < area / max(ref_area, 1e-6) < 1 / SAME_SCALE:
            continue
        centre = np.array([(ax * alpha).sum(), (ay * alpha).sum()]) / max(area, 1e-6) + origin
        k = np.sqrt(area / max(ref_area, 1e-6))
        # Where each reference pixel lands in this frame, in this frame's crop.
        px = centre[0] + (xs + ref_origin[0] - ref_centre[0]) * k - origin[0]
        py = centre[1] + (ys + ref_origin[1] - ref_centre[1]) * k - origin[1]
        moved = ndimage.map_coordinates(alpha, [py, px], order=1, mode="constant")
        union = np.maximum(ref, moved).sum()
        if union > 0:
            change = max(change, 1.0 - float(np.minimum(ref, moved).sum() / union))
    return change
