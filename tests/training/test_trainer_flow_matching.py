"""Flow-matching maths and task conditioning, against the engine's sampling convention."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from core.models.presets import MODEL_PRESETS
from core.sampling import resolution_shift
from training.flow_matching import (
    masked_mse, noisy_latents, sample_sigmas, shift_sigmas, training_shift, velocity_target,
)  # fmt: skip
from training.tasks import draw_task, first_last_window, given_latent_frames


def test_shift_is_the_samplers_shift():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)  # its training sigmas: the shifted grid t / 1000
    plain = torch.arange(1000, 0, -1, dtype=torch.float32) / 1000
    assert torch.allclose(shift_sigmas(plain, 3.0), scheduler.sigmas, atol=1e-6)
    assert torch.allclose(scheduler.timesteps, scheduler.sigmas * 1000)  # timestep = 1000 * sigma


def test_logit_normal_sigmas_are_seeded_and_shifted():
    draw = lambda shift, seed=0: sample_sigmas(4096, logit_mean=0.0, logit_std=1.0, shift=shift,  # noqa: E731
                                               generator=torch.Generator().manual_seed(seed))
    plain = draw(1.0)
    assert torch.equal(plain, draw(1.0)) and not torch.equal(plain, draw(1.0, seed=1))
    assert 0 < plain.min() and plain.max() < 1 and abs(plain.median().item() - 0.5) < 0.03
    assert torch.allclose(draw(3.0), shift_sigmas(plain, 3.0))
    assert draw(3.0).median() > 0.7  # shift > 1 spends more training on high noise


def test_training_shift_follows_the_engine():
    defaults = MODEL_PRESETS["small"].defaults
    assert training_shift(None, defaults, 320) == pytest.approx(3.0)
    assert training_shift(None, defaults, 80) == resolution_shift(80, defaults.shift, defaults.shift_base_tokens)
    assert training_shift(2.5, defaults, 80) == 2.5


def test_noisy_latents_lie_on_the_straight_path_that_the_velocity_describes():
    x0, noise = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    sigmas = torch.tensor([0.0, 1.0])
    ends = noisy_latents(x0, noise, sigmas)
    assert torch.equal(ends[0], x0[0]) and torch.equal(ends[1], noise[1])
    v = velocity_target(x0, noise)
    at = lambda s: noisy_latents(x0, noise, torch.full((2,), s))  # noqa: E731
    assert torch.allclose(at(0.7) + (0.3 - 0.7) * v, at(0.3), atol=1e-6)  # one Euler step, as the sampler takes


def test_loss_ignores_given_frames():
    target = torch.zeros(2, 4, 3, 2, 2)
    prediction = torch.ones_like(target)
    mask = torch.zeros(2, 1, 3, 2, 2)
    mask[:, :, 0] = 1
    prediction[:, :, 0] = 1000.0  # wrong only where the frame is given
    assert masked_mse(prediction, target, mask).item() == pytest.approx(1.0)
    assert masked_mse(prediction, target, torch.zeros_like(mask)) > 100


def test_given_frames_per_task():
    generator = torch.Generator().manual_seed(0)
    assert given_latent_frames("t2v", 5, generator) == [] and given_latent_frames("multishot", 5, generator) == []
    assert given_latent_frames("i2v", 5, generator) == [0]
    assert given_latent_frames("first_last", 5, generator) == [0, 4]
    counts = {len(given_latent_frames("extend", 5, generator)) for _ in range(200)}
    assert counts == {1, 2, 3, 4}  # always at least one frame given and one left to make


def test_draw_task_follows_ratios():
    generator = torch.Generator().manual_seed(0)
    draws = [draw_task({"t2v": 3.0, "i2v": 1.0, "extend": 0.0}, generator) for _ in range(4000)]
    assert "extend" not in draws and abs(draws.count("t2v") / 4000 - 0.75) < 0.03


def test_first_last_window_matches_the_engine():
    video = torch.rand(3, 9, 8, 8) * 2 - 1
    window = first_last_window(video)
    assert torch.equal(window[:, 0], video[:, 0]) and torch.equal(window[:, -1], video[:, -1])
    assert torch.all(window[:, 1:-1] == 127 / 127.5 - 1)  # core.conditioning fills with uint8 127
