"""Quantize a model in place: the Linear layers a rule selects become one backend's quantized layers."""

from __future__ import annotations

import torch
from torch import nn

from core.quant.base import QuantBackend, QuantizationInfo, is_quantized_layer
from core.quant.modes import NONE, backend_for, check_mode
from core.quant.rules import TEXT_ENCODER_PROJECTIONS, TRANSFORMER_PROJECTIONS, QuantRule, select_linears


def quantize_model(
    model: nn.Module,
    mode: str,
    device: torch.device | str = "cpu",
    compute_dtype: torch.dtype = torch.float32,
    rule: QuantRule = TRANSFORMER_PROJECTIONS,
    backend: QuantBackend | None = None,
) -> QuantizationInfo | None:
    """Replace the layers `rule` selects with `mode`'s layers on `device`, one at a time (the float copy of each
    is freed as it goes). Other layers are not moved. Quantize before loading LoRAs. "none" returns None.

    `backend` overrides the device's choice for `mode` (benchmarks and tests: e.g. bitsandbytes' CPU kernels).
    """
    if backend is None:
        check_mode(mode, device)
    if mode == NONE:
        return None
    if getattr(model, "kelp_quantization", None) is not None:
        raise ValueError(f"`model` is already quantized ({model.kelp_quantization.mode}); load it again to change mode")
    if getattr(model, "_hf_peft_config_loaded", False):
        raise ValueError("`model` carries LoRA adapters; quantize first, then load the LoRAs")
    backend = backend or backend_for(mode, device)
    if backend.mode != mode:
        raise ValueError(f"`backend` {backend.name!r} serves {backend.mode!r}, not `mode` {mode!r}")
    names = select_linears(model, rule)
    if not names:
        raise ValueError(f"`rule` {rule.name!r} selects no Linear layer of this {type(model).__name__}")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, backend.quantize_linear(getattr(parent, child), torch.device(device), compute_dtype))
    info = QuantizationInfo(mode=mode, backend=backend.name, rule=rule.name, modules=tuple(names))
    model.kelp_quantization = info
    return info


def quantize_text_encoder(
    model: nn.Module, mode: str, device: torch.device | str = "cpu", compute_dtype: torch.dtype = torch.float32
) -> QuantizationInfo | None:
    """The same for a loaded BERT-style text encoder (e.g. `MiniLMTextEncoder.loaded_model()`)."""
    return quantize_model(model, mode, device, compute_dtype, rule=TEXT_ENCODER_PROJECTIONS)


def quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: module for name, module in model.named_modules() if is_quantized_layer(module)}


def weight_bytes(model: nn.Module) -> int:
    """Bytes of everything the model's state_dict holds: quantized codes, their scales and every float tensor."""
    return sum(tensor.numel() * tensor.element_size() for tensor in model.state_dict().values())
