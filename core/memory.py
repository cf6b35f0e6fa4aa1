"""Device memory between and during jobs: model CPU offload for small GPUs, freeing memory after a job, and the
VAE precision a device can afford."""

from __future__ import annotations

import gc
from typing import Sequence

import torch
from torch import nn


class ModelOffload:
    """accelerate hooks that keep each module on the CPU until its forward runs, in the order given (e.g. text
    encoder, transformer, VAE): running one moves it to the GPU and the one before it back to the CPU."""

    def __init__(self, hooks: list):
        self.hooks = hooks

    def offload_all(self) -> None:
        """Move every module back to the CPU (call at the end of a job)."""
        for hook in self.hooks:
            hook.offload()

    def remove(self) -> None:
        """Take the hooks off; the modules stay where they are (on the CPU after offload_all)."""
        for hook in self.hooks:
            hook.remove()
        self.hooks = []


def enable_model_cpu_offload(modules: Sequence[nn.Module], device: torch.device | str = "cuda") -> ModelOffload:
    """Whole-module CPU offload (diffusers' `enable_model_cpu_offload`): at most one of `modules` sits on the GPU.

    Kelp's VAE decode calls the decoder directly rather than `vae.forward`; core.models.vae runs the VAE's hook
    itself, so the VAE can be one of `modules`. bitsandbytes-quantized layers cannot move between devices: offload
    full-precision or native-int8 models.
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"model CPU offload needs a CUDA GPU to offload from; this device is {device}")
    if not modules:
        raise ValueError("`modules` must name at least one module to offload, got none")
    for module in modules:
        info = getattr(module, "kelp_quantization", None)
        if info is not None and info.backend.startswith("bnb"):
            raise ValueError(f"model CPU offload cannot move {info.backend} layers between devices; "
                             f"use quant='none' or the native int8 path, or keep the model on the GPU")
    from accelerate import cpu_offload_with_hook  # here: importing accelerate takes a while

    hooks, previous = [], None
    for module in modules:
        _, previous = cpu_offload_with_hook(module, execution_device=device, prev_module_hook=previous)
        hooks.append(previous)
    return ModelOffload(hooks)


def run_offload_hook(module: nn.Module) -> None:
    """Bring an offloaded module to its GPU before calling its parts directly (bypassing forward)."""
    hook = getattr(module, "_hf_hook", None)
    if hook is not None and hasattr(hook, "pre_forward"):
        hook.pre_forward(module)


def release_memory(device: torch.device | str | None = None) -> None:
    """Free what the last job left: Python garbage, then the CUDA caching allocator's unused blocks."""
    gc.collect()
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()


def vae_dtype_for(device: torch.device | str) -> torch.dtype:
    """The VAE's precision on `device` (the engine's choice): bfloat16 on CUDA GPUs that support it (half the weights
    and activations; it keeps float32's range, so the decoder's large activations cannot overflow as they can in
    float16), float32 on older GPUs and on the CPU (CPU convolutions are no faster in bfloat16, and float32 keeps
    CPU runs exact)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
