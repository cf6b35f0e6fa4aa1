"""How far image content moved between two frames, by phase correlation searched near zero.

A repeating texture (a checkerboard, polka dots) correlates equally well at every multiple of its
period, so the peak is looked for only within `radius` pixels: the largest step the caller thinks
plausible. The integer peak is then refined to 0.1 pixel by evaluating the correlation on a finer
grid around it (an upsampled inverse DFT, as in Guizar-Sicairos et al. 2008).
"""

from __future__ import annotations

import numpy as np

UPSAMPLE = 10  # sub-pixel steps per pixel


def _correlate_at(spectrum: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Inverse DFT of `spectrum` (h, w) at the fractional shifts ys x xs, real part, unnormalised.

    Written as real products: complex matrix products are far slower with some BLAS builds.
    """
    h, w = spectrum.shape
    angle_y = 2 * np.pi * ys[:, None] * np.fft.fftfreq(h)[None, :]
    angle_x = 2 * np.pi * xs[:, None] * np.fft.fftfreq(w)[None, :]
    rows_re = np.cos(angle_y) @ spectrum.real - np.sin(angle_y) @ spectrum.imag
    rows_im = np.cos(angle_y) @ spectrum.imag + np.sin(angle_y) @ spectrum.real
    return rows_re @ np.cos(angle_x).T - rows_im @ np.sin(angle_x).T


def content_shift(before: np.ndarray, after: np.ndarray, radius: float) -> np.ndarray:
    """(dx, dy) by which the content of 2-D `before` has moved in `after`, |dx|, |dy| <= radius."""
    cross = np.fft.fft2(after) * np.conj(np.fft.fft2(before))
    whitened = cross / np.maximum(np.abs(cross), 1e-12)  # phase only: a sharp peak to locate
    correlation = np.fft.ifft2(whitened).real  # peaks at the displacement, modulo the size
    h, w = correlation.shape
    dy = np.fft.fftfreq(h) * h
    dx = np.fft.fftfreq(w) * w
    near = (np.abs(dy)[:, None] <= radius) & (np.abs(dx)[None, :] <= radius)
    row, col = np.unravel_index(np.argmax(np.where(near, correlation, -np.inf)), correlation.shape)
    # Refine on a grid of 1/UPSAMPLE pixel over +-1.5 pixels around the integer peak.
    fine = np.arange(-1.5 * UPSAMPLE, 1.5 * UPSAMPLE + 1) / UPSAMPLE
    ys, xs = dy[row] + fine, dx[col] + fine
    upsampled = _correlate_at(whitened, ys, xs)
    i, j = np.unravel_index(np.argmax(upsampled), upsampled.shape)
    return np.array([xs[j], ys[i]])
