"""Camera motion from the background: phase correlation of each frame quadrant against the previous
frame gives four shifts; their common part is the pan, their spread away from the centre the zoom.

A plain colour or a smooth gradient shows no camera move, so those report "static" and say the
camera was not measurable. A background that, objects left out, stays as it was in the first frame
is a still camera, whatever objects moving over it do to a correlation; the toy world moves its
camera only over still objects, so in a moving shot they move with the background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from training.eval.phase_correlation import content_shift
from training.eval.segmentation import estimate_background

SMOOTH = 1.5  # Gaussian sigma, pixels: grain of sigma 8 grey levels drops to about 1.5
TEXTURE_STD = 2.0  # smoothed grey-level spread a background needs before a camera move can show
STILL_CHANGE = 0.25  # largest mean change of the bare background from frame 0, over its spread
ZOOM_IN_SCALE = 1.2  # content scale at the last frame; toy zooms end at 1.4-1.6 ...
ZOOM_OUT_SCALE = 0.87  # ... or 0.68-0.75
PAN_DISTANCE = 0.1  # content shift at the last frame, fraction of min(width, height); toy pans 0.25-0.45
# Most a camera move carries content across the frame over a whole clip (fraction of the side):
# it bounds the step searched between frames, which keeps repeating textures from aliasing.
MAX_TRAVEL = 0.6
FLAT_STD = 0.05  # a windowed quadrant this flat has nothing to correlate
OUTLIER_SHIFT = 0.025  # a quadrant this far (fraction of the side) off the fitted step is left out


@dataclass(frozen=True)
class CameraEstimate:
    label: str  # "pan left" | "pan right" | "zoom in" | "zoom out" | "static"
    measurable: bool  # whether the background had texture to see a move by
    # Content of frame 0 appears in frame t at c + scales[t] * (x - c) + offsets[t], c the image centre.
    scales: np.ndarray  # (T,)
    offsets: np.ndarray  # (T, 2) pixels (x, y)

    def to_first_frame(self, points: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Image points (T, 2) of frame t mapped back to where frame 0 has that content."""
        return (points - centre - self.offsets) / self.scales[:, None] + centre


def static_camera(num_frames: int, measurable: bool) -> CameraEstimate:
    return CameraEstimate("static", measurable, np.ones(num_frames), np.zeros((num_frames, 2)))


def estimate_camera(frames: np.ndarray, background: np.ndarray | None = None, objects: np.ndarray | None = None) -> CameraEstimate:
    """Camera move of `frames` (T, H, W, 3).

    background: as segmentation.estimate_background gives it (estimated if None). objects: (T, H, W)
    bool mask of objects that may move on their own; None treats the whole frame as scenery (a
    photo, where a salient part on a plain sky is no object of its own).
    """
    t, h, w, _ = frames.shape
    if background is None:
        background = estimate_background(frames)
    if objects is None:
        objects = np.zeros(frames.shape[:3], dtype=bool)
    # Texture without its trend, smoothed so that pixel noise (a generated clip's grain) is neither
    # texture nor change.
    first = ndimage.gaussian_filter((frames[0].astype(np.float32) - background[0]).mean(axis=-1), SMOOTH)
    spread = first[~objects[0]].std() if (~objects[0]).any() else 0.0
    if t < 2 or spread < TEXTURE_STD:
        return static_camera(t, measurable=False)
    residual = ndimage.gaussian_filter((frames.astype(np.float32) - background).mean(axis=-1), (0, SMOOTH, SMOOTH))
    # A still camera leaves the bare background as it was: check that first, because objects
    # moving over a texture can fool phase correlation, while they cannot change the bare pixels.
    # Every frame is compared, since a pan by a whole texture period ends where it began.
    change = max(_mean_or_zero(np.abs(residual[i] - residual[0])[~objects[i] & ~objects[0]]) for i in range(1, t))
    if change < STILL_CHANGE * spread:
        return static_camera(t, measurable=True)
    # From here on the background moves, and so (in the toy world) do the objects with it: they
    # are kept, as more texture to correlate; and the residual is not smoothed, for precision.
    scales, offsets, coherent = _chain_steps((frames.astype(np.float32) - background).mean(axis=-1))
    if coherent < (t - 1) / 2:  # the quadrants mostly disagree: grain or flicker, not a camera
        return static_camera(t, measurable=False)
    return CameraEstimate(_label(scales[-1], offsets[-1], min(h, w)), True, scales, offsets)


def _chain_steps(residual: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Scales (T,) and offsets (T, 2) of every frame relative to frame 0, from the quadrants of
    consecutive residual frames (T, H, W), and how many steps the quadrants agreed on."""
    t, h, w = residual.shape
    hh, hw = h // 2, w // 2
    window = np.outer(np.hanning(hh), np.hanning(hw)).astype(np.float32)
    arms = np.array([[-hw / 2, -hh / 2], [hw / 2, -hh / 2], [-hw / 2, hh / 2], [hw / 2, hh / 2]])  # quadrant centres
    radius = max(2.0, MAX_TRAVEL * min(h, w) / (t - 1))
    scales, offsets = np.ones(t), np.zeros((t, 2))
    coherent = 0
    for i in range(t - 1):
        moves = []
        for qy in (0, hh):
            for qx in (0, hw):
                ref = residual[i, qy : qy + hh, qx : qx + hw] * window
                mov = residual[i + 1, qy : qy + hh, qx : qx + hw] * window
                flat = min(ref.std(), mov.std()) < FLAT_STD  # nothing to correlate in this quadrant
                moves.append([np.nan, np.nan] if flat else content_shift(ref, mov, radius))
        step, growth, agreed = _fit_step(np.asarray(moves), arms, OUTLIER_SHIFT * min(h, w))
        coherent += agreed
        scales[i + 1] = scales[i] * growth
        offsets[i + 1] = offsets[i] * growth + step
    return scales, offsets, coherent


def _label(scale: float, offset: np.ndarray, side: int) -> str:
    """The camera move that leaves frame-0 content at `scale` and `offset` in the last frame."""
    if scale > ZOOM_IN_SCALE:
        return "zoom in"
    if scale < ZOOM_OUT_SCALE:
        return "zoom out"
    if abs(offset[0]) > PAN_DISTANCE * side and abs(offset[0]) > 2 * abs(offset[1]):
        return "pan right" if offset[0] < 0 else "pan left"  # the camera turns against the content
    return "static"


def _mean_or_zero(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 0.0


def _fit_step(moves: np.ndarray, arms: np.ndarray, outlier: float) -> tuple[np.ndarray, float, bool]:
    """(shift (2,), growth, coherent) of one frame step from the quadrants' moves (4, 2) at `arms`.

    move = shift + (growth - 1) * arm. All textured quadrants are fitted together if every one lies
    within `outlier` pixels of the fit; otherwise the best fit that leaves one out (an object can
    throw a quadrant's correlation peak anywhere). Failing both, the step is the median move,
    without zoom, and not coherent.
    """
    valid = np.flatnonzero(~np.isnan(moves).any(axis=1))
    if len(valid) < 3:
        return (np.median(moves[valid], axis=0) if len(valid) else np.zeros(2)), 1.0, False
    fits = [_fit(moves, arms, valid)]
    if fits[0][0] > outlier and len(valid) == 4:
        fits = [_fit(moves, arms, np.delete(valid, k)) for k in range(4)]
    worst, solution = min(fits, key=lambda fit: fit[0])
    if worst > outlier:
        return np.median(moves[valid], axis=0), 1.0, False
    return solution[:2], 1.0 + float(solution[2]), True


def _fit(moves: np.ndarray, arms: np.ndarray, quadrants: np.ndarray) -> tuple[float, np.ndarray]:
    """(largest residual, [shift x, shift y, growth - 1]) of a least-squares fit to `quadrants`."""
    design = np.zeros((2 * len(quadrants), 3))
    design[0::2, 0], design[1::2, 1] = 1.0, 1.0
    design[0::2, 2], design[1::2, 2] = arms[quadrants, 0], arms[quadrants, 1]
    solution = np.linalg.lstsq(design, moves[quadrants].ravel(), rcond=None)[0]
    residuals = np.linalg.norm((design @ solution).reshape(-1, 2) - moves[quadrants], axis=1)
    return float(residuals.max()), solution
