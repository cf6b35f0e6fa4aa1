"""Names a colour: the nearest toy palette colour in CIE Lab, where distance tracks what people see."""

from __future__ import annotations

import functools

import numpy as np
from skimage.color import rgb2lab

from training.data.toy_world.vocabulary import COLOURS


@functools.lru_cache(maxsize=1)
def _palette_lab() -> tuple[tuple[str, ...], np.ndarray]:
    names = tuple(COLOURS)
    rgb = np.array([COLOURS[n] for n in names], dtype=np.float64) / 255.0
    return names, rgb2lab(rgb[None])[0]


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 255], shape (..., 3) -> CIE Lab (..., 3)."""
    rgb = np.clip(np.asarray(rgb, dtype=np.float64) / 255.0, 0.0, 1.0)
    return rgb2lab(rgb.reshape(-1, 1, 3)).reshape(rgb.shape)


def name_colour(rgb: np.ndarray | tuple[float, float, float]) -> tuple[str, float]:
    """(palette name, Lab distance to it) of one sRGB colour in [0, 255]."""
    return _name_rounded(tuple(round(float(v), 1) for v in np.asarray(rgb).reshape(3)))


@functools.lru_cache(maxsize=4096)
def _name_rounded(rgb: tuple[float, float, float]) -> tuple[str, float]:
    # Cached: region colours are medians, so the same few values come back frame after frame.
    names, lab = _palette_lab()
    distances = np.linalg.norm(lab - to_lab(np.asarray(rgb, dtype=np.float64)), axis=1)
    best = int(np.argmin(distances))
    return names[best], float(distances[best])
