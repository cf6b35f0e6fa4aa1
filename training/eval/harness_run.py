"""What every harness section shares: one Engine with one resident model, fixed seeds, frames in memory.

Generation goes through the engine's own API (`sample` then `iter_frames`), so the harness measures
exactly what the CLI and the UI would make, without writing video files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.model_loader import LoadedModel, ModelSource
from core.models.presets import GenerationDefaults
from core.pipeline import Engine
from core.request import GenerationRequest, LoraSpec

# Toy clips of the harness come from their own seed stream: training draws clip_seed(seed, index) =
# SeedSequence([seed, index]), and a four-word entropy never gives the same stream as a two-word one.
_HARNESS_STREAM = 0x4A55


@dataclass
class HarnessRun:
    engine: Engine
    source: ModelSource  # the model every section uses
    seed: int  # the harness seed: every clip and every generation seed derives from it
    steps: int | None = None  # None: the model's default
    sampler: str | None = None  # None: the model's default
    guidance_scale: float | None = None  # None: the model's default
    loras: tuple[LoraSpec, ...] = ()  # for the subject section's "with LoRA" clips
    shift: float | None = None  # None: the model's, scaled by clip size

    @property
    def defaults(self) -> GenerationDefaults:
        return self.source.defaults

    def model(self) -> LoadedModel:
        """The loaded model (transformer and VAE), through the engine: loaded once, kept resident."""
        return self.engine.model(self.source)

    def base_model(self) -> LoadedModel:
        """The loaded model without any LoRA (a generation with the run's LoRAs may have left them applied)."""
        loaded = self.model()
        self.engine.apply_loras(loaded, ())
        return loaded

    def clip_seed(self, section: str, index: int) -> int:
        """The seed of clip `index` of `section` at this run's harness seed."""
        return harness_clip_seed(self.seed, section, index)

    def generate(self, seed: int, **fields) -> np.ndarray:
        """uint8 frames (T, H, W, 3) of a request for this run's model and sampling settings with `fields`, at
        `seed`."""
        request = GenerationRequest(model=self.source.name, steps=self.steps, sampler=self.sampler,
                                    guidance_scale=self.guidance_scale, shift=self.shift, seed=seed, **fields)
        sampled = self.engine.sample(request)
        return np.concatenate(list(self.engine.iter_frames(sampled)))


def harness_clip_seed(harness_seed: int, section: str, index: int) -> int:
    """The seed of clip `index` of harness section `section`: fixed for a harness seed, apart from training's clips."""
    entropy = [_HARNESS_STREAM, int.from_bytes(section.encode(), "little"), harness_seed, index]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)
