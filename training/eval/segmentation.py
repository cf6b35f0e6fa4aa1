"""Foreground against the background: a smooth background fitted to each frame's border, the colour
distance of every pixel from it, and the connected regions that stand out.

The toy world keeps objects off the border and textures faint, so a quadratic surface through the
border pixels is the background, and a fixed distance threshold separates what lies on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import functools

import numpy as np
from scipy import ndimage

from training.eval.colour_names import name_colour

FOREGROUND_DISTANCE = 70.0  # RGB distance from the background; toy colours stand >= 134 off it
BORDER_FRACTION = 1 / 32  # width of the border ring the background is fitted to
MIN_AREA_FRACTION = 0.0008  # smaller regions are specks (12 pixels at 128x128)
MAX_AREA_FRACTION = 0.4  # larger regions are not objects (noise, photos)
MAX_PIECES = 64  # per frame, largest first: enough for any scene, bounded on noise


def _design(xs: np.ndarray, ys: np.ndarray, width: int, height: int) -> np.ndarray:
    """Quadratic surface terms at pixel (x, y), coordinates scaled to [-1, 1]: (N, 6)."""
    x = (xs + 0.5) / width * 2 - 1
    y = (ys + 0.5) / height * 2 - 1
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def estimate_background(frames: np.ndarray, hint: np.ndarray | tuple | None = None) -> np.ndarray:
    """Background of each frame, float32 (T, H, W, 3).

    hint: an RGB colour (3,), one image (H, W, 3) or per-frame images (T, H, W, 3) to use instead.
    """
    t, h, w, _ = frames.shape
    if hint is not None:
        hint = np.asarray(hint, dtype=np.float32)
        if hint.shape not in ((3,), (h, w, 3), (t, h, w, 3)):
            raise ValueError(f"`background_hint` must have shape (3,), (H, W, 3) or (T, H, W, 3) but has {hint.shape}")
        return np.broadcast_to(hint, frames.shape).astype(np.float32)
    ring_ys, ring_xs, solve, full = _background_fit(h, w)
    values = frames[:, ring_ys, ring_xs].astype(np.float64)  # (T, N, 3)
    coefs = solve @ values  # (T, 6, 3): least squares for every frame at once
    # One refit per frame without the border pixels far off the first fit (an object at the edge).
    design = full.reshape(h, w, 6)[ring_ys, ring_xs].astype(np.float64)
    far = np.linalg.norm(design @ coefs - values, axis=-1) >= FOREGROUND_DISTANCE  # (T, N)
    for i in np.flatnonzero(far.any(axis=1)):
        keep = ~far[i]
        if keep.sum() > design.shape[1] * 4:
            coefs[i] = np.linalg.lstsq(design[keep], values[i, keep], rcond=None)[0]
    return np.matmul(full, coefs.astype(np.float32)).reshape(t, h, w, 3)


@functools.lru_cache(maxsize=8)
def _background_fit(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Border ring pixels (ys, xs), their least-squares solver (6, N) and the design of every pixel."""
    ring = max(2, round(min(h, w) * BORDER_FRACTION))
    border = np.zeros((h, w), dtype=bool)
    border[:ring], border[-ring:], border[:, :ring], border[:, -ring:] = True, True, True, True
    ys, xs = np.nonzero(border)
    solve = np.linalg.pinv(_design(xs.astype(np.float64), ys.astype(np.float64), w, h))
    gy, gx = np.mgrid[0:h, 0:w]
    full = _design(gx.ravel().astype(np.float64), gy.ravel().astype(np.float64), w, h).astype(np.float32)
    return ys, xs, solve, full


def foreground_distance(frames: np.ndarray, background: np.ndarray) -> np.ndarray:
    """RGB distance of every pixel from the background, float32 (T, H, W)."""
    diff = frames.astype(np.float32) - background
    return np.sqrt(np.einsum("thwc,thwc->thw", diff, diff))


@dataclass(frozen=True)
class Region:
    """One connected foreground region of one frame."""

    frame: int
    mask: np.ndarray  # (h, w) bool inside `box`
    box: tuple[int, int, int, int]  # y0, x0, y1, x1 in the frame
    area: float  # pixels
    centroid: tuple[float, float]  # (x, y), pixel centres at +0.5
    rgb: tuple[float, float, float]  # median colour of its inner pixels
    colour: str  # palette name of `rgb`


@dataclass(frozen=True)
class _Piece:
    """A connected component before same-coloured neighbours are joined."""

    slices: tuple[slice, slice]
    mask: np.ndarray
    area: float
    rgb: tuple[float, float, float]
    colour: str


def frame_regions(frame: np.ndarray, distance: np.ndarray, index: int, merge_gap: float) -> list[Region]:
    """Regions of frame `index`: 8-connected pixels over the threshold, with same-coloured pieces
    closer than `merge_gap` pixels joined (a handwritten digit can break into strokes)."""
    h, w = distance.shape
    mask = distance > FOREGROUND_DISTANCE
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return []
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    min_area, max_area = MIN_AREA_FRACTION * h * w, MAX_AREA_FRACTION * h * w
    # Specks far below the minimum cannot make an object even merged; noise has thousands.
    keep = np.flatnonzero((areas <= max_area) & (areas >= min_area / 4))
    keep = keep[np.argsort(-areas[keep], kind="stable")][:MAX_PIECES]
    slices_of = ndimage.find_objects(labels)
    pieces = []
    for k in sorted(keep):
        slices = slices_of[k]
        piece = labels[slices] == k + 1
        rgb = _inner_colour(frame[slices], distance[slices], piece)
        pieces.append(_Piece(slices, piece, float(areas[k]), rgb, name_colour(rgb)[0]))
    regions = []
    for group in _merge_nearby(pieces, merge_gap):
        y0, x0 = min(p.slices[0].start for p in group), min(p.slices[1].start for p in group)
        y1, x1 = max(p.slices[0].stop for p in group), max(p.slices[1].stop for p in group)
        region_mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        for p in group:
            region_mask[p.slices[0].start - y0 : p.slices[0].stop - y0, p.slices[1].start - x0 : p.slices[1].stop - x0] |= p.mask
        area = sum(p.area for p in group)
        if not min_area <= area <= max_area:
            continue
        if len(group) == 1:
            rgb, colour = group[0].rgb, group[0].colour
        else:
            rgb = _inner_colour(frame[y0:y1, x0:x1], distance[y0:y1, x0:x1], region_mask)
            colour = name_colour(rgb)[0]
        yy, xx = np.nonzero(region_mask)
        centroid = (float(xx.mean() + x0 + 0.5), float(yy.mean() + y0 + 0.5))
        regions.append(Region(index, region_mask, (y0, x0, y1, x1), area, centroid, rgb, colour))
    return regions


def _inner_colour(pixels: np.ndarray, distance: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """Median colour of a region's pixels that stand out nearly fully, leaving out the anti-aliased
    rim, which blends into the background."""
    d = distance[mask]
    solid = distance >= 0.8 * np.percentile(d, 90)
    return tuple(float(v) for v in np.median(pixels[mask & solid].reshape(-1, 3), axis=0))


def _merge_nearby(pieces: list[_Piece], gap: float) -> list[list[_Piece]]:
    """Groups of pieces, joining pieces of one colour that come within `gap` pixels of each other."""
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(pieces):
        for j in range(i + 1, len(pieces)):
            b = pieces[j]
            if a.colour == b.colour and _box_gap(a.slices, b.slices) <= gap and _mask_gap(a, b) <= gap:
                parent[root(j)] = root(i)
    groups: dict[int, list[_Piece]] = {}
    for i, piece in enumerate(pieces):
        groups.setdefault(root(i), []).append(piece)
    return list(groups.values())


def _box_gap(a: tuple[slice, slice], b: tuple[slice, slice]) -> float:
    dy = max(0, a[0].start - b[0].stop, b[0].start - a[0].stop)
    dx = max(0, a[1].start - b[1].stop, b[1].start - a[1].stop)
    return float(np.hypot(dx, dy))


def _mask_gap(a: _Piece, b: _Piece) -> float:
    """Gap in pixels between the nearest pixels of two pieces (0 when they touch)."""
    ya, xa = np.nonzero(a.mask)
    yb, xb = np.nonzero(b.mask)
    pa = np.stack([ya + a.slices[0].start, xa + a.slices[1].start], axis=1).astype(np.float32)
    pb = np.stack([yb + b.slices[0].start, xb + b.slices[1].start], axis=1).astype(np.float32)
    # Boundary pixels would do, but pieces are small; cap the work on large ones.
    pa, pb = pa[:: max(1, len(pa) // 400)], pb[:: max(1, len(pb) // 400)]
    return float(np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1).min())) - 1.0
