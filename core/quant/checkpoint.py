"""Quantized models on disk: a folder with the model's config.json, one safetensors file and quantization.json.

Quantized layers are stored in their backend's saved layout (int8: `weight` int8 (out, in) + `weight_scale`
float32 (out,); fp8: `weight` uint8 holding e4m3 bits + `weight_scale`); every other tensor as the model held it.
quantization.json names the mode, the backend, the rule and the quantized modules. Never pickle. NF4 has no
saved layout (see core.quant.bnb): save the full-precision model and quantize at load instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from core.quant.base import QuantizationInfo
from core.quant.fp8 import Float8WeightLinear
from core.quant.modes import backend_for, backend_named
from core.quant.native_int8 import Int8WeightOnlyLinear

QUANT_INDEX = "quantization.json"
WEIGHTS_FILE = "quantized_weights.safetensors"
FORMAT = "kelp-quantized"
VERSION = 1
SAVED_LAYERS: dict[str, type[nn.Linear]] = {"int8": Int8WeightOnlyLinear, "fp8": Float8WeightLinear}


def is_quantized_folder(folder: str | Path) -> bool:
    return (Path(folder) / QUANT_INDEX).is_file()


def read_quantization(folder: str | Path) -> QuantizationInfo:
    path = Path(folder) / QUANT_INDEX
    try:
        index = json.loads(path.read_text())
        if index["format"] != FORMAT or index["mode"] not in SAVED_LAYERS:
            raise ValueError(f"format {index['format']!r}, mode {index['mode']!r}")
        return QuantizationInfo(index["mode"], index["backend"], index["rule"], tuple(index["modules"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{str(path)!r} is not a valid Kelp quantization index ({err})") from err


def save_quantized(model: nn.Module, folder: str | Path) -> Path:
    """Write a model quantized by `quantize_model` (a diffusers ModelMixin: its config is saved too)."""
    info = getattr(model, "kelp_quantization", None)
    if info is None:
        raise ValueError("`model` is not quantized; save it with save_pretrained")
    backend = backend_named(info.backend)
    if info.mode not in SAVED_LAYERS or not backend.saves_quantized:
        raise ValueError(f"quantization {info.mode!r} layers are not saved quantized; save the full-precision "
                         f"model and pass quant={info.mode!r} when loading it")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    quantized = set(info.modules)
    for name, tensor in model.state_dict().items():
        if name.rpartition(".")[0] not in quantized:
            state[name] = tensor.detach().to("cpu").contiguous()
    for name in info.modules:
        saved = backend.to_saved(model.get_submodule(name))
        state.update({f"{name}.{key}": t.detach().to("cpu").contiguous() for key, t in saved.state_dict().items()})
    model.save_config(folder)
    save_file(state, folder / WEIGHTS_FILE, metadata={"format": FORMAT, "mode": info.mode})
    index = {"format": FORMAT, "version": VERSION, "mode": info.mode, "backend": info.backend, "rule": info.rule,
             "layout": _LAYOUTS[info.mode], "modules": list(info.modules)}
    (folder / QUANT_INDEX).write_text(json.dumps(index, indent=2))
    return folder


def load_quantized(
    folder: str | Path, model_class, device: torch.device | str = "cpu", compute_dtype: torch.dtype = torch.float32
) -> nn.Module:
    """Rebuild `model_class` from `folder` without re-quantizing: codes and scales load as saved, bit for bit.

    Float tensors stay on the CPU as saved; the quantized layers are placed on `device` for the backend that
    runs the mode there (int8: LLM.int8 on CUDA, the native path elsewhere).
    """
    folder = Path(folder)
    info = read_quantization(folder)
    backend = backend_for(info.mode, device)  # fails before reading the weights when the device cannot run it
    with torch.device("meta"):
        model = model_class.from_config(model_class.load_config(folder))
    for name in info.modules:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"{str(folder)!r}: quantized module {name!r} is not a Linear of {model_class.__name__}")
        layer = SAVED_LAYERS[info.mode](linear.in_features, linear.out_features, linear.bias is not None, device="meta")
        setattr(parent, child, layer)
    try:
        model.load_state_dict(load_file(folder / WEIGHTS_FILE), strict=True, assign=True)
    except (OSError, RuntimeError) as err:
        raise ValueError(f"{str(folder / WEIGHTS_FILE)!r} does not fit {model_class.__name__} ({err})") from err
    missing = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if missing:
        raise ValueError(f"{str(folder)!r}: no saved values for {missing[:5]}")
    for name in info.modules:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, backend.from_saved(getattr(parent, child), torch.device(device), compute_dtype))
    model.kelp_quantization = QuantizationInfo(info.mode, backend.name, info.rule, info.modules)
    return model.eval()


_LAYOUTS = {
    "int8": "weight int8 (out, in), symmetric per output channel; weight_scale float32 (out,); w = weight * scale",
    "fp8": "weight uint8 (out, in) = float8_e4m3fn bits; weight_scale float32 (out,) per output channel; "
           "w = weight.view(float8_e4m3fn) * scale",
}
