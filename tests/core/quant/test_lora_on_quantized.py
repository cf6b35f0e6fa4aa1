"""LoRAs load onto int8 and fp8 transformers (peft wraps their nn.Linear subclasses; adapters stay float32) and
act as on the float model; quantizing after loading LoRAs is refused."""

import pytest
import torch

from core.lora import load_lora, unload_loras
from core.model_loader import load_model, resolve_model
from core.quant.apply import quantize_model
from core.quant.fp8 import Float8Backend


def forward(transformer) -> torch.Tensor:
    torch.manual_seed(0)
    x, text = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 5, 384)
    with torch.no_grad():
        return transformer(x, torch.tensor([500.0]), text).sample


@pytest.mark.parametrize("mode", ["int8", "fp8"])
def test_lora_changes_the_quantized_model_as_it_changes_the_float_one(lora_file, mode):
    full = load_model(resolve_model("random:tiny")).transformer
    quantized = load_model(resolve_model("random:tiny")).transformer
    quantize_model(quantized, mode, backend=Float8Backend() if mode == "fp8" else None)  # fp8: by hand on a CPU
    full_before, quantized_before = forward(full), forward(quantized)
    load_lora(full, lora_file, 1.0)
    load_lora(quantized, lora_file, 1.0)
    full_delta, quantized_delta = forward(full) - full_before, forward(quantized) - quantized_before
    assert full_delta.norm() > 1e-3
    assert next(p for n, p in quantized.named_parameters() if "lora_A" in n).dtype == torch.float32
    assert ((quantized_delta - full_delta).norm() / full_delta.norm()).item() < 0.1
    unload_loras(quantized)
    assert torch.equal(forward(quantized), quantized_before)
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(quantized, "int8")


def test_quantizing_after_loras_is_refused(lora_file):
    transformer = load_model(resolve_model("random:tiny")).transformer
    load_lora(transformer, lora_file, 1.0)
    with pytest.raises(ValueError, match="carries LoRA adapters; quantize first"):
        quantize_model(transformer, "int8")
