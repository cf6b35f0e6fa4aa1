"""Requests for the untrained tiny model and the decoded frames of a generation, shared by the core tests."""

import numpy as np

from core.pipeline import Engine
from core.request import GenerationRequest


def tiny_request(**overrides) -> GenerationRequest:
    """A short text-to-video request on seeded random tiny weights, at the tiny model's default size (64x64, 9 frames)."""
    settings = dict(prompt="a red circle moving left", model="random:tiny", seed=5, steps=3)
    return GenerationRequest(**{**settings, **overrides})


def decoded_frames(engine: Engine, request: GenerationRequest) -> np.ndarray:
    """uint8 (T, H, W, 3) frames of `request`, sampled and decoded without writing a file."""
    return np.concatenate(list(engine.iter_frames(engine.sample(request))))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8-valued frame arrays; inf when equal."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))
