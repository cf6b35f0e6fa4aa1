"""Flow-matching training maths, in the convention of core/sampling.py (rectified flow, as SD3 and Wan):
x_sigma = (1 - sigma) * x0 + sigma * noise, the model predicts v = noise - x0, and timestep = 1000 * sigma.
"""

from __future__ import annotations

import torch

from core.models.presets import GenerationDefaults
from core.sampling import resolution_shift


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """diffusers' FlowMatchEulerDiscreteScheduler shift: more of the schedule at high noise for shift > 1."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def sample_sigmas(
    batch: int, *, logit_mean: float, logit_std: float, shift: float, generator: torch.Generator
) -> torch.Tensor:
    """(batch,) noise levels in (0, 1): logit-normal (SD3, Esser et al. 2024) then shifted like the sampler."""
    logits = torch.randn(batch, generator=generator) * logit_std + logit_mean
    return shift_sigmas(torch.sigmoid(logits), shift)


def training_shift(shift: float | None, defaults: GenerationDefaults, num_video_tokens: int) -> float:
    """The shift to train a size with: the recipe's, or the one the engine samples that size with."""
    if shift is not None:
        return shift
    return resolution_shift(num_video_tokens, defaults.shift, defaults.shift_base_tokens)


def noisy_latents(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    sigma = sigmas.view(-1, *([1] * (latents.ndim - 1)))  # (B, 1, 1, 1, 1)
    return (1 - sigma) * latents + sigma * noise


def velocity_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - latents


def foreground_weights(foreground: torch.Tensor, strength: float | torch.Tensor) -> torch.Tensor:
    """Loss weights 1 + strength * foreground, scaled so that each clip's weights average 1. (B, 1, T, h, w)

    `foreground` (B, 1, T, h, w) in [0, 1] marks the subject on the latent grid (training.tasks.BatchBuilder). A
    clip's subject then counts (1 + strength)x its background per position, and the clip as a whole as much as any
    other; a clip without a subject (all zeros) keeps weight 1 everywhere. Strength 0 is the plain loss; a (B,)
    tensor gives each clip its own.
    """
    strength = torch.as_tensor(strength, dtype=torch.float32, device=foreground.device)
    weights = 1 + strength.view(-1, *([1] * (foreground.ndim - 1))) * foreground.float()
    return weights / weights.mean(dim=(1, 2, 3, 4), keepdim=True)


def foreground_strengths(sigmas: torch.Tensor, strength: float, max_sigma: float) -> torch.Tensor:
    """(B,) foreground weight per sample: `strength` at noise levels up to `max_sigma`, 0 above.

    A weight that depends on the target biases the regression: the best prediction becomes E[w v | x] / E[w | x],
    which leans to the outcomes where the subject is. Where the noisy clip already shows where the subject is (low
    noise) that changes nothing but emphasis; at high noise, where it could be in many places, it leans towards a
    subject at each of them.
    """
    return torch.where(sigmas <= max_sigma, strength, 0.0).float()


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, given_mask: torch.Tensor,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the frames the model must make; given frames (mask 1) do not count.

    prediction, target: (B, C, T, h, w); given_mask and the optional per-position `weights`: (B, 1, T, h, w).
    With weights, the mean is weighted: scaling them all leaves the loss unchanged.
    """
    weight = 1.0 - given_mask.float()
    if weights is not None:
        weight = weight * weights
    squared = (prediction.float() - target.float()).pow(2) * weight  # (B, C, T, h, w)
    return squared.sum() / (weight.sum() * prediction.shape[1]).clamp(min=1.0)
