"""Reads a handwritten digit: the nearest of scikit-learn's 1,797 digits, compared as size- and
position-normalised silhouettes.

The toy world draws its digits from the same 1,797, so on toy clips this is close to a lookup; on
generated clips it is a plain 1-nearest-neighbour reader (about 98% on unseen 8x8 digits).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from training.data.toy_world.render import INK_THRESHOLD
from training.data.toy_world.sources import digit_dataset, digit_glyphs

GRID = 16  # silhouettes are compared on a GRID x GRID raster


def silhouette(mask: np.ndarray) -> np.ndarray:
    """Unit vector (GRID * GRID,) of a bool mask's ink, its bounding square scaled to GRID."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.zeros(GRID * GRID, dtype=np.float32)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
    side = max(crop.shape)
    square = np.zeros((side, side), dtype=np.float32)
    y0, x0 = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    small = np.asarray(Image.fromarray(square).resize((GRID, GRID), Image.Resampling.BOX)).ravel()
    norm = np.linalg.norm(small)
    return small / norm if norm > 0 else small


@functools.lru_cache(maxsize=1)
def _references() -> tuple[np.ndarray, np.ndarray]:
    """Silhouettes (N, GRID * GRID) of every sklearn digit as the toy world draws it, and labels."""
    images, labels = digit_dataset()
    # Ink >= INK_THRESHOLD is where the renderer's coverage is >= 0.5.
    refs = np.stack([silhouette(g >= INK_THRESHOLD) for g in digit_glyphs(images)])
    return refs, labels


def read_digit(mask: np.ndarray) -> tuple[int, float]:
    """(digit, cosine similarity to the nearest reference) of the ink in bool `mask`."""
    refs, labels = _references()
    scores = refs @ silhouette(mask)
    best = int(np.argmax(scores))
    return int(labels[best]), float(scores[best])
