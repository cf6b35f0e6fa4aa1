"""Which toy-world photo a clip shows, if any: every frame against views of every photo in PHOTOS.

The views are the toy world's own renders from a grid of camera positions covering every pan and
zoom it draws. Frames and views are compared small and blurred (so that blur, noise and a camera
between grid points cost little): structure by normalised cross-correlation, minus the distance
between mean colours. A clip's score for a photo is the median over frames of its best view's
score; the best photo is named only when that score is high and clearly above the runner-up's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from training.data.toy_world.camera import ZOOM_IN_RANGE, ZOOM_OUT_RANGE
from training.data.toy_world.render import render_clip
from training.data.toy_world.sources import photo_world
from training.data.toy_world.truth import ClipTruth
from training.data.toy_world.vocabulary import PHOTOS
from training.eval.detect import check_frames

GRID = 16  # frames and views are compared at GRID x GRID pixels
BLUR = 1.0  # Gaussian sigma at GRID pixels: a camera half a grid step off the nearest view still matches
COLOUR_WEIGHT = 1.0  # score lost per unit of RGB distance (0-1 per channel) between mean colours
VIEW_SIDE = 64  # views are rendered this many pixels on the frame's shorter side, then shrunk to GRID
VIEW_STEP = 1 / 16  # grid of camera centres: this fraction of the view's shorter side apart
ZOOMS = 5  # zoom levels, geometric from the widest toy zoom-out to the closest zoom-in
ACCEPT = 0.72  # a photo is named at this clip score or above ...
MARGIN = 0.08  # ... and when the runner-up scores at least this much less
# Measured with `python -m training.eval.validate_photo_subject` (440 clips a case at 128x128x17):
# every toy photo clip is named, scoring at least 0.78 for its own photo (0.87 but for "galaxies"),
# or 0.74 blurred, tinted and noisy; shape and digit clips score at most 0.73 and 99.3% of them are
# rejected: a bright shape or digit on black can pass for one bright galaxy of the deep field.


@dataclass(frozen=True)
class PhotoMatch:
    photo: str | None  # the photo the clip shows, or None when no photo is close and clearly best
    best: str  # the closest photo, named or not
    score: float  # its clip score: median over frames of the best view's correlation minus colour distance
    runner_up: str
    runner_up_score: float

    def shows(self, name: str) -> bool:
        return self.photo == name


def check_photo_name(name: object, argument: str = "photo") -> None:
    """Raise ValueError unless `name` is a key of the toy world's PHOTOS."""
    if name not in PHOTOS:
        raise ValueError(f"`{argument}` must be one of {sorted(PHOTOS)} but is {name!r}")


def identify_photo(frames: np.ndarray) -> PhotoMatch:
    """The toy-world photo a uint8 (T, H, W, 3) clip shows, if any, with the scores behind the answer."""
    check_frames(frames)
    _, height, width, _ = frames.shape
    if min(height, width) < GRID:
        raise ValueError(f"`frames` must be at least {GRID} pixels a side but have shape {frames.shape}")
    structure, colour = frame_features(frames)
    scores = {name: _clip_score(structure, colour, bank) for name, bank in view_bank(_view_size(width, height)).items()}
    best, runner_up = sorted(scores, key=scores.get, reverse=True)[:2]
    named = scores[best] >= ACCEPT and scores[best] - scores[runner_up] >= MARGIN
    return PhotoMatch(best if named else None, best, scores[best], runner_up, scores[runner_up])


def shows_photo(frames: np.ndarray, name: str) -> bool:
    """Whether a uint8 (T, H, W, 3) clip shows toy-world photo `name`."""
    check_photo_name(name, "name")
    return identify_photo(frames).shows(name)


def frame_features(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm structure (T, GRID * GRID * 3) and mean colour (T, 3) in [0, 1] of uint8 (T, H, W, 3) frames."""
    small = np.stack([np.asarray(Image.fromarray(f).resize((GRID, GRID), Image.Resampling.BOX)) for f in frames])
    small = ndimage.gaussian_filter(small.astype(np.float32) / 255.0, (0, BLUR, BLUR, 0), mode="nearest")
    pixels = small.reshape(len(frames), GRID * GRID, 3)  # (T, P, 3)
    colour = pixels.mean(axis=1)  # (T, 3)
    structure = (pixels - colour[:, None]).reshape(len(frames), -1)  # (T, P * 3)
    # The small constant keeps a flat frame's structure near zero instead of amplifying its noise.
    structure /= np.linalg.norm(structure, axis=1, keepdims=True) + 1e-3
    return structure, colour


def camera_grid(name: str, width: int, height: int) -> np.ndarray:
    """(N, 3) camera positions (x, y, zoom) over photo `name` as the toy world places it for width x height."""
    world_w, world_h = photo_world(name, width, height).size
    step = VIEW_STEP * min(width, height)
    positions = []
    for zoom in np.geomspace(ZOOM_OUT_RANGE[0], ZOOM_IN_RANGE[1], ZOOMS):
        half_w, half_h = width / (2 * zoom), height / (2 * zoom)
        xs = _spaced(half_w, world_w - half_w, step / zoom)
        ys = _spaced(half_h, world_h - half_h, step / zoom)
        positions += [(x, y, zoom) for x in xs for y in ys]
    return np.array(positions)


@functools.lru_cache(maxsize=4)
def view_bank(size: tuple[int, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per photo, frame_features of its views at `size` (width, height): built once per aspect ratio."""
    width, height = size
    bank = {}
    for name in PHOTOS:
        path = tuple(tuple(float(v) for v in p) for p in camera_grid(name, width, height))
        views = render_clip(ClipTruth((), None, None, name, "", 1.0, width, height, len(path), path))
        bank[name] = frame_features(views)
    return bank


def _view_size(width: int, height: int) -> tuple[int, int]:
    """The size views are rendered at for frames of width x height: same aspect, VIEW_SIDE on the shorter side.

    A view of the toy world at any size shows the same part of the photo, as the photo is scaled to the frame.
    """
    scale = VIEW_SIDE / min(width, height)
    return max(GRID, round(width * scale)), max(GRID, round(height * scale))


def _spaced(low: float, high: float, step: float) -> np.ndarray:
    """Points from low to high at most `step` apart; the middle if the range is empty."""
    if high <= low:
        return np.array([(low + high) / 2])
    return np.linspace(low, high, int(np.ceil((high - low) / step)) + 1)


def _clip_score(structure: np.ndarray, colour: np.ndarray, bank: tuple[np.ndarray, np.ndarray]) -> float:
    view_structure, view_colour = bank  # (N, D), (N, 3)
    correlation = structure @ view_structure.T  # (T, N)
    colour_distance = np.linalg.norm(colour[:, None] - view_colour[None], axis=-1)  # (T, N)
    return float(np.median((correlation - COLOUR_WEIGHT * colour_distance).max(axis=1)))
