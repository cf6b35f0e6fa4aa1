"""Flow-matching sampling: diffusers' flow-matching schedulers, a resolution-aware shift, and the loop.

Convention (rectified flow, as in SD3 and Wan): x_sigma = (1 - sigma) * x0 + sigma * noise, and the
model predicts the velocity v = noise - x0. Sigma runs from 1 (noise) to 0 (data).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler, UniPCMultistepScheduler

from core.cancellation import check_cancel

SAMPLERS = ("euler", "heun", "unipc")  # first order; second order (2 model calls a step); second order multistep


def resolution_shift(num_video_tokens: int, base_shift: float, base_tokens: int) -> float:
    """Timestep shift for a clip of `num_video_tokens`, given the shift the model was tuned with at
    `base_tokens`. More tokens carry more redundant signal, so more of the schedule must be spent at high
    noise; SD3 (Esser et al. 2024, sec. 5.3.2) scales the shift with sqrt(token ratio)."""
    if num_video_tokens <= 0 or base_tokens <= 0 or base_shift <= 0:
        raise ValueError(
            f"`num_video_tokens`, `base_tokens` and `base_shift` must be positive, "
            f"got {num_video_tokens}, {base_tokens}, {base_shift}"
        )
    return base_shift * math.sqrt(num_video_tokens / base_tokens)


def make_scheduler(sampler: str, shift: float):
    if sampler == "euler":
        return FlowMatchEulerDiscreteScheduler(shift=shift)
    if sampler == "heun":
        return FlowMatchHeunDiscreteScheduler(shift=shift)
    if sampler == "unipc":
        return UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift, solver_order=2
        )
    raise ValueError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}")


def classifier_free_guidance(velocity: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """velocity (2B, ...) stacked as [conditional; unconditional] -> guided (B, ...)."""
    cond, uncond = velocity.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def sample_flow(
    predict_velocity: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
    noise: torch.Tensor,
    sampler: str,
    steps: int,
    shift: float,
    on_step: Callable[[int, int], None] | None = None,
    cancel=None,
) -> torch.Tensor:
    """Integrate from pure noise (sigma 1) to data (sigma 0).

    predict_velocity(latents, timestep, call) -> velocity, with timestep a scalar tensor in [0, 1000] and
    `call` the index of this model call (0, 1, ...; Heun makes two a step).
    on_step(done, total) runs after each model call; `cancel` (has is_set()) is checked before each.
    """
    scheduler = make_scheduler(sampler, shift)
    scheduler.set_timesteps(steps, device=noise.device)
    timesteps = scheduler.timesteps
    latents = noise
    for index, timestep in enumerate(timesteps):
        check_cancel(cancel)
        velocity = predict_velocity(latents, timestep, index)
        latents = scheduler.step(velocity, timestep, latents, return_dict=False)[0]
        if on_step is not None:
            on_step(index + 1, len(timesteps))
    return latents


def model_calls(sampler: str, steps: int) -> int:
    """How many velocity evaluations `sample_flow` makes (Heun re-evaluates at every step but the last)."""
    return 2 * steps - 1 if sampler == "heun" else steps
