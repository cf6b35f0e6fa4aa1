"""Video quality metrics on uint8 (T, H, W, 3) clips: PSNR, SSIM, temporal and subject consistency."""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from training.eval.detect import check_frames, subject_pixels

HISTOGRAM_BINS = 8  # per RGB channel for subject colour histograms


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    check_frames(a, "a")
    check_frames(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"`a` and `b` must have the same shape but have {a.shape} and {b.shape}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over the whole clip; inf for identical clips."""
    _check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of corresponding frames: 1 for identical, about 0 for unrelated."""
    _check_pair(a, b)
    if min(a.shape[1:3]) < 7:
        raise ValueError(f"SSIM needs frames of at least 7x7 pixels but `a` has shape {a.shape}")
    return float(np.mean([structural_similarity(x, y, channel_axis=-1, data_range=255) for x, y in zip(a, b)]))


def temporal_consistency(frames: np.ndarray) -> float:
    """Mean SSIM of consecutive frames: 1 for a still clip, low for flicker or noise."""
    check_frames(frames)
    if len(frames) < 2:
        return 1.0
    return ssim(frames[:-1], frames[1:])


def colour_histogram(pixels: np.ndarray) -> np.ndarray:
    """Normalised RGB histogram (HISTOGRAM_BINS ** 3,) of pixels (N, 3)."""
    bins = (pixels.astype(np.int64) * HISTOGRAM_BINS) // 256
    index = (bins[:, 0] * HISTOGRAM_BINS + bins[:, 1]) * HISTOGRAM_BINS + bins[:, 2]
    hist = np.bincount(index, minlength=HISTOGRAM_BINS**3).astype(np.float64)
    return hist / max(hist.sum(), 1.0)


def subject_consistency(shot_a: np.ndarray, shot_b: np.ndarray) -> float:
    """Colour-histogram intersection in [0, 1] of the main subject of two shots (1: same colours).

    The subject is each shot's largest detected object; a shot without one is compared whole.
    """
    check_frames(shot_a, "shot_a")
    check_frames(shot_b, "shot_b")
    ha, hb = colour_histogram(subject_pixels(shot_a)), colour_histogram(subject_pixels(shot_b))
    return float(np.minimum(ha, hb).sum())
