"""LoRAs in a request: strength 0 is the base model, 1 changes it, and a later request without one is clean."""

import json

import pytest
import torch

from core.pipeline import Engine
from core.request import GenerationRequest, LoraSpec


def latents(engine, **fields):
    request = GenerationRequest(prompt="a red circle", model="random:tiny", seed=3, steps=2, **fields)
    return engine.sample(request).latents


def test_lora_strength_and_unloading(lora_file, tmp_path):
    engine = Engine(device="cpu", output_dir=tmp_path)
    base = latents(engine)
    assert torch.equal(latents(engine, loras=(LoraSpec(str(lora_file), 0.0),)), base)
    full = latents(engine, loras=(LoraSpec(str(lora_file), 1.0),))
    assert not torch.allclose(full, base)
    assert torch.equal(latents(engine), base)  # the adapter is gone again
    result = engine.generate(GenerationRequest(prompt="a red circle", model="random:tiny", seed=3, steps=2,
                                               loras=(LoraSpec(str(lora_file), 0.7),)), tmp_path / "c.mp4")
    recorded = json.loads(result.metadata_path.read_text())["loras"][0]
    assert recorded["strength"] == 0.7 and len(recorded["sha256"]) == 64


def test_bad_lora_references(tmp_path):
    engine = Engine(device="cpu", output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"`loras\[0\].path` must be an existing .safetensors file"):
        latents(engine, loras=(LoraSpec(str(tmp_path / "missing.safetensors")),))
    with pytest.raises(ValueError, match=r"`loras\[0\].strength` must be a number from 0 to 4"):
        latents(engine, loras=(LoraSpec(str(tmp_path / "x.safetensors"), 9.0),))
