"""Loading LoRA adapters onto a Kelp transformer with a strength, as requests ask for them.

A LoRA is `<name>.safetensors` in diffusers' pipeline format (keys "transformer.<module>.lora_A.weight",
the peft LoraConfig in the header under "lora_adapter_metadata") with `<name>.json` beside it (base
model, rank, alpha, targets, trigger words). `training/lora.py` writes them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

PREFIX = "transformer"  # key prefix of the transformer's weights in diffusers' pipeline-level LoRA files
FORMAT = "kelp-lora"
MAX_STRENGTH = 4.0


def check_lora_file(name: str, path, strength) -> None:
    """Validate a LoRA reference without loading it: an existing .safetensors file and a sane strength."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength) \
            or not 0 <= strength <= MAX_STRENGTH:
        raise ValueError(f"`{name}.strength` must be a number from 0 to {MAX_STRENGTH}, got {strength!r}")
    if not isinstance(path, (str, Path)) or not Path(path).is_file() or Path(path).suffix != ".safetensors":
        raise ValueError(f"`{name}.path` must be an existing .safetensors file, got {str(path)!r}")


def read_lora_info(path: str | Path) -> dict:
    """The JSON description saved beside a LoRA file."""
    info_path = Path(path).with_suffix(".json")
    try:
        return json.loads(info_path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"`lora` {str(path)!r} has no readable description {info_path.name} ({err})") from err


def load_lora(transformer: torch.nn.Module, path: str | Path, strength: float = 1.0, adapter_name: str = "default") -> str:
    """Load a LoRA onto `transformer` as `adapter_name`, at `strength`.

    0 leaves the output exactly as without it, 1 is the LoRA as trained, above 1 exaggerates it. Adapters
    already loaded stay active at their strengths. Returns the adapter name.
    """
    path = Path(path)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise ValueError(f"`strength` must be a finite number, got {strength!r}")
    if not path.is_file() or path.suffix != ".safetensors":
        raise ValueError(f"`lora` must be an existing .safetensors file, got {str(path)!r}")
    if adapter_name in getattr(transformer, "peft_config", {}):
        raise ValueError(f"`adapter_name` {adapter_name!r} is already loaded on this transformer")
    try:
        state = load_file(path)
        with safe_open(path, framework="pt") as handle:
            raw = (handle.metadata() or {}).get(LORA_ADAPTER_METADATA_KEY)
    except (OSError, SafetensorError) as err:
        raise ValueError(f"`lora` {str(path)!r} is not a readable safetensors file ({err})") from err
    foreign = [k for k in state if not k.startswith(f"{PREFIX}.") or ".lora_" not in k]
    if not state or foreign:
        raise ValueError(f"`lora` {str(path)!r} holds keys that are not transformer LoRA weights, e.g. {foreign[:3]}")
    metadata = json.loads(raw) if raw else None
    active = {name: _strength(transformer, name) for name in _active_adapters(transformer)}
    try:
        transformer.load_lora_adapter(state, prefix=PREFIX, adapter_name=adapter_name, metadata=metadata)
    except (RuntimeError, ValueError, KeyError) as err:  # e.g. shapes of another base model
        raise ValueError(f"`lora` {str(path)!r} does not fit this model ({err})") from err
    active[adapter_name] = float(strength)
    transformer.set_adapters(list(active), weights=list(active.values()))
    return adapter_name


def unload_loras(transformer: torch.nn.Module) -> None:
    """Remove every adapter, leaving the base weights as they were."""
    if getattr(transformer, "_hf_peft_config_loaded", False):
        transformer.unload_lora()


def _active_adapters(transformer: torch.nn.Module) -> list[str]:
    if not getattr(transformer, "_hf_peft_config_loaded", False):
        return []
    return list(transformer.active_adapters())


def _strength(transformer: torch.nn.Module, adapter_name: str) -> float:
    """The strength an adapter runs at now: its scaling over alpha / r (1 as trained)."""
    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer) and adapter_name in module.scaling:
            return module.scaling[adapter_name] * module.r[adapter_name] / module.lora_alpha[adapter_name]
    return 1.0
