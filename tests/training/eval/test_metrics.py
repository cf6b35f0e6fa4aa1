"""PSNR, SSIM, temporal and subject consistency on toy clips and noise."""

import math

import numpy as np
import pytest

from training.data.toy_world import toy_clip
from training.eval.metrics import psnr, ssim, subject_consistency, temporal_consistency


@pytest.fixture(scope="module")
def clip():
    return toy_clip(2, kind="shape", camera=False).frames


@pytest.fixture(scope="module")
def noise():
    return np.random.default_rng(1).integers(0, 256, (17, 128, 128, 3), dtype=np.uint8)


def test_psnr_is_infinite_for_identical_and_low_for_noise(clip, noise):
    assert psnr(clip, clip.copy()) == math.inf
    assert psnr(clip, noise) < 12
    slightly = np.clip(clip.astype(int) + 2, 0, 255).astype(np.uint8)
    assert 35 < psnr(clip, slightly) < math.inf


def test_ssim_is_one_for_identical_and_near_zero_for_noise(clip, noise):
    assert ssim(clip, clip.copy()) == pytest.approx(1.0)
    assert -0.1 < ssim(clip, noise) < 0.1
    blurred = ((clip.astype(np.uint16) + np.roll(clip, 1, axis=2)) // 2).astype(np.uint8)
    assert 0.5 < ssim(clip, blurred) < 1.0


def test_temporal_consistency_is_high_for_toy_clips_and_low_for_noise(clip, noise):
    assert temporal_consistency(clip) > 0.8
    assert temporal_consistency(noise) < 0.1
    assert temporal_consistency(clip[:1]) == 1.0


def test_subject_consistency_follows_the_subject():
    clips = [toy_clip(s, kind="shape", camera=False) for s in range(40)]
    red_a, red_b = [c.frames for c in clips if c.truth.objects[0].colour == "red"][:2]
    blue = next(c.frames for c in clips if c.truth.objects[0].colour == "blue")
    assert subject_consistency(red_a, red_b) > 0.8  # two different red shapes on other backgrounds
    assert subject_consistency(red_a, blue) < 0.2


def test_mismatched_shapes_are_refused(clip):
    with pytest.raises(ValueError, match="same shape"):
        psnr(clip, clip[:5])
