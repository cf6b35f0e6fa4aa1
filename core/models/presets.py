"""Named model presets: which transformer, VAE and text encoder go together, and their default settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.models.vae import VAE_PRESETS, VAEConfig
from core.models.video_dit import TRANSFORMER_PRESETS, TransformerConfig


@dataclass(frozen=True)
class GenerationDefaults:
    width: int = 128  # pixels; multiple of 16
    height: int = 128  # pixels; multiple of 16
    num_frames: int = 17  # 1 + 4k: the causal VAE codes the first frame alone, then 4 frames a latent
    fps: float = 8.0  # playback rate of the written video
    steps: int = 20  # sampling steps
    guidance_scale: float = 5.0  # classifier-free guidance; 1 turns it off (and halves the work)
    sampler: str = "euler"  # one of core.sampling.SAMPLERS
    shift: float = 3.0  # timestep shift the model was tuned with, at `shift_base_tokens` video tokens
    shift_base_tokens: int = 320  # video tokens of the default size (17 frames of 128x128 = 5 x 8 x 8)
    max_frames: int = 129  # longest clip (all shots together) the model is meant to make


@dataclass(frozen=True)
class ModelPreset:
    transformer: TransformerConfig
    vae: VAEConfig
    text_encoder: str = "minilm-l6-v2"  # a key of core.text.encoder.TEXT_ENCODERS
    defaults: GenerationDefaults = field(default_factory=GenerationDefaults)


MODEL_PRESETS: dict[str, ModelPreset] = {
    # Unit tests: random weights, 64x64 clips, a few milliseconds a step.
    "tiny": ModelPreset(
        TRANSFORMER_PRESETS["tiny"],
        VAE_PRESETS["tiny"],
        defaults=GenerationDefaults(width=64, height=64, num_frames=9, steps=4, shift_base_tokens=48, max_frames=65),
    ),
    # The bundled CPU model: 2-second clips at 128x128, 8 fps.
    "small": ModelPreset(TRANSFORMER_PRESETS["small"], VAE_PRESETS["small"]),
    # GPU sizes with Wan 2.1's VAE layout (480p, 81 frames at 16 fps); no Kelp weights exist for them yet.
    "base": ModelPreset(
        TRANSFORMER_PRESETS["base"],
        VAE_PRESETS["wan2.1"],
        defaults=GenerationDefaults(width=832, height=480, num_frames=81, fps=16.0, steps=40, shift=5.0,
                                    shift_base_tokens=32760, max_frames=241),
    ),
    "large": ModelPreset(
        TRANSFORMER_PRESETS["large"],
        VAE_PRESETS["wan2.1"],
        defaults=GenerationDefaults(width=832, height=480, num_frames=81, fps=16.0, steps=40, shift=5.0,
                                    shift_base_tokens=32760, max_frames=241),
    ),
}
