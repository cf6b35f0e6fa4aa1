"""LoRA on the video transformer: peft adapters on its attention and MLP projections, saved alone, loaded at a
strength.

A saved LoRA is `<name>.safetensors` in diffusers' pipeline format (keys "transformer.<module>.lora_A.weight", the
peft LoraConfig in the header under "lora_adapter_metadata") and `<name>.json` beside it: base model name and
weights hash, rank, alpha, targets and trigger words.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import torch
from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

from core.lora import FORMAT, PREFIX
from training.config import LoraSettings

# Loading (with a strength) is the engine's job: core.lora.load_lora reads what save_lora writes.


def add_lora(
    transformer: torch.nn.Module, settings: LoraSettings, adapter_name: str = "default"
) -> list[torch.nn.Parameter]:
    """Freeze `transformer`, add a LoRA adapter on `settings.targets`, and return its (float32) parameters."""
    names = [name for name, _ in transformer.named_modules()]
    for target in settings.targets:
        if not any(name == target or name.endswith(f".{target}") for name in names):
            raise ValueError(f"`lora.targets` entry {target!r} matches no module of {type(transformer).__name__}")
    transformer.requires_grad_(False)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.targets), init_lora_weights=True)
    transformer.add_adapter(config, adapter_name=adapter_name)
    params = [p for p in transformer.parameters() if p.requires_grad]
    for param in params:
        param.data = param.data.float()  # LoRA weights train in float32 whatever the base dtype
    return params


def lora_state_dict(transformer: torch.nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    state = get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    return {f"{PREFIX}.{key}": value.detach().cpu().contiguous() for key, value in state.items()}


def save_lora(
    path: str | Path,
    transformer: torch.nn.Module,
    *,
    base_model: str,
    base_weights_sha256: str,
    trigger_words: tuple[str, ...] = (),
    adapter_name: str = "default",
) -> Path:
    """Write the adapter's weights alone to `path` (.safetensors) and its description to `path` with .json."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"`path` must end in .safetensors, got {str(path)!r}")
    config = transformer.peft_config[adapter_name]
    config_dict = {k: sorted(v) if isinstance(v, set) else v for k, v in config.to_dict().items()}
    header = {"format": "pt", LORA_ADAPTER_METADATA_KEY: json.dumps(
        {f"{PREFIX}.{k}": v for k, v in config_dict.items()}, sort_keys=True, default=str)}
    info = {
        "format": FORMAT, "version": 1, "base_model": base_model, "base_weights_sha256": base_weights_sha256,
        "rank": config.r, "alpha": config.lora_alpha, "targets": sorted(config.target_modules),
        "trigger_words": list(trigger_words),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    tmp_weights = path.with_name(f".{path.name}.{token}.tmp")
    tmp_info = path.with_name(f".{path.stem}.{token}.json.tmp")
    try:
        save_file(lora_state_dict(transformer, adapter_name), tmp_weights, metadata=header)
        tmp_info.write_text(json.dumps(info, indent=2))
        os.replace(tmp_weights, path)
        os.replace(tmp_info, path.with_suffix(".json"))
    finally:
        tmp_weights.unlink(missing_ok=True)
        tmp_info.unlink(missing_ok=True)
    return path
