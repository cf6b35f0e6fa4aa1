"""Bundled image sources: scikit-learn's handwritten digits and the photos scikit-image ships.

Both load lazily on first use and stay cached; nothing is ever downloaded (photos are read from
the files inside the installed skimage.data package, never through its pooch fetcher).
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
from PIL import Image
from scipy import ndimage

from training.data.toy_world.vocabulary import PHOTOS

# A zoom-1 view covers this fraction of a photo along its tighter side, leaving room to pan and
# to zoom out to 1 / PHOTO_COVERAGE.
PHOTO_COVERAGE = 0.6
_GLYPH_UPSAMPLE = 4  # the 8x8 digits are smoothed onto a 4x finer grid once, then sampled bilinearly
_GLYPH_PAD = 2  # empty digit pixels around the 8x8 box, so sampling near its edge fades to zero


@functools.lru_cache(maxsize=1)
def digit_dataset() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1,797 digits: images (N, 8, 8) float32 in [0, 16] and labels (N,) int64."""
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _upsampling_matrix() -> np.ndarray:
    """(4n, n) cubic-spline upsampling of one padded digit axis: glyph = M @ image @ M.T."""
    n = 8 + 2 * _GLYPH_PAD
    columns = [ndimage.zoom(np.eye(n)[j], _GLYPH_UPSAMPLE, order=3, grid_mode=True, mode="grid-constant") for j in range(n)]
    return np.stack(columns, axis=1)


def digit_glyphs(images: np.ndarray) -> np.ndarray:
    """Digits (N, 8, 8) in [0, 16] as smooth ink maps (N, 48, 48) in [0, 1], padded and upsampled."""
    m = _upsampling_matrix()
    padded = np.pad(images / 16.0, ((0, 0), (_GLYPH_PAD, _GLYPH_PAD), (_GLYPH_PAD, _GLYPH_PAD)))
    return np.clip(np.einsum("ij,njk,lk->nil", m, padded, m), 0.0, 1.0)


@functools.lru_cache(maxsize=4096)
def digit_glyph(sample: int) -> np.ndarray:
    """Digit `sample` as a smooth ink map in [0, 1] (read-only); see digit_glyphs."""
    images, _ = digit_dataset()
    if not 0 <= sample < len(images):
        raise ValueError(f"`sample` must be in [0, {len(images)}) but is {sample}")
    glyph = digit_glyphs(images[sample : sample + 1])[0]
    glyph.setflags(write=False)
    return glyph


def glyph_coordinates(qx: np.ndarray, qy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row/column indices into `digit_glyph` for unit coordinates (the 8x8 box spans [-1, 1])."""
    scale = 4.0 * _GLYPH_UPSAMPLE  # unit coordinates -> upsampled glyph pixels
    offset = (_GLYPH_PAD + 4.0) * _GLYPH_UPSAMPLE - 0.5
    return qy * scale + offset, qx * scale + offset


@functools.lru_cache(maxsize=len(PHOTOS))
def photo_pixels(name: str) -> np.ndarray:
    """Photo `name` as uint8 RGB (h, w, 3), read from the file bundled with scikit-image."""
    if name not in PHOTOS:
        raise ValueError(f"`name` must be one of {sorted(PHOTOS)} but is {name!r}")
    path = resources.files("skimage.data").joinpath(PHOTOS[name].filename)
    with path.open("rb") as f, Image.open(f) as img:
        pixels = np.asarray(img.convert("RGB"))
    pixels.setflags(write=False)
    return pixels


def photo_scale(name: str, width: int, height: int) -> float:
    """World pixels per photo pixel: a zoom-1 view of width x height covers PHOTO_COVERAGE of it."""
    ph, pw = photo_pixels(name).shape[:2]
    return max(width / (PHOTO_COVERAGE * pw), height / (PHOTO_COVERAGE * ph))


@functools.lru_cache(maxsize=64)
def photo_world(name: str, width: int, height: int) -> Image.Image:
    """Photo `name` resized once to world scale for an output of width x height."""
    pixels = photo_pixels(name)
    k = photo_scale(name, width, height)
    size = (max(1, round(pixels.shape[1] * k)), max(1, round(pixels.shape[0] * k)))
    return Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS)
