"""From a training run to files the engine reads: Kelp model folders, and validation clips rendered through them."""

from __future__ import annotations

import copy
import os
import re
import secrets
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan

from core.model_loader import MODEL_INDEX, load_model, resolve_model, save_model
from core.models.presets import GenerationDefaults
from core.models.vae import load_vae_folder
from core.request import GenerationRequest


def export_model(
    folder: str | Path,
    *,
    transformer: torch.nn.Module,
    vae: torch.nn.Module,
    preset: str,
    ema=None,
    defaults: GenerationDefaults | None = None,
) -> Path:
    """Write a Kelp model folder that `Engine` loads by path: the EMA weights if `ema` is given (it tracks the
    transformer's trainable parameters), with any LoRA adapters fused in. Replaces `folder` atomically."""
    folder = Path(folder)
    model = shipped_weights(transformer, ema)
    if getattr(model, "_hf_peft_config_loaded", False):
        model.fuse_lora(lora_scale=1.0)
        model.unload_lora()  # keeps the fused weights, drops the adapter layers
    tmp = folder.with_name(f".{folder.name}.tmp-{secrets.token_hex(4)}")
    try:
        save_model(tmp, model, vae, preset, defaults)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def shipped_weights(transformer: torch.nn.Module, ema) -> torch.nn.Module:
    """A copy of `transformer` holding the EMA weights (or its own), so training continues untouched."""
    model = copy.deepcopy(transformer).eval()
    if ema is not None:
        ema.copy_to([p for p in model.parameters() if p.requires_grad])
    return model


def load_vae(spec: str, field: str = "model.vae_from") -> AutoencoderKLWan:
    """A VAE from a VAE folder (config.json + safetensors, as VAE training writes), a Kelp model folder or name,
    or "random:<preset>[:seed]"; errors name the recipe `field`."""
    path = Path(spec).expanduser()
    if (path / "config.json").is_file() and not (path / MODEL_INDEX).is_file():
        return load_vae_folder(path)
    try:
        return load_model(resolve_model(spec)).vae
    except ValueError as err:
        raise ValueError(f"`{field}` must be a VAE folder or a model, got {spec!r} ({err})") from err


def render_validation_clips(
    engine, model_folder: Path, prompts: tuple[str, ...], folder: Path, *, width: int, height: int, num_frames: int,
    steps: int, guidance_scale: float, seed: int,
) -> list[Path]:
    """One mp4 per prompt through `engine.generate`, the same API as the CLI, with the same seed every time."""
    paths = []
    for index, prompt in enumerate(prompts):
        request = GenerationRequest(prompt=prompt, model=str(model_folder), width=width, height=height,
                                    num_frames=num_frames, steps=steps, guidance_scale=guidance_scale, seed=seed)
        slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40]
        paths.append(engine.generate(request, folder / f"{index:02d}-{slug}.mp4").video_path)
    return paths
