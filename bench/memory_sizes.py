"""Transformer sizes for bench.memory: Kelp's bundled model and Wan 2.1's 1.3B and 14B shapes, built without
materialising float32 weights they do not need, and weight bytes computed from a quantized layout."""

from __future__ import annotations

import torch
from accelerate import init_empty_weights
from torch import nn

from core.models.video_dit import TRANSFORMER_PRESETS
from core.quant.base import QuantBackend
from core.quant.rules import QuantRule, select_linears

# diffusers' WanTransformer3DModel arguments of Wan 2.1 T2V (the published 1.3B and 14B configs).
_WAN_COMMON = dict(patch_size=(1, 2, 2), attention_head_dim=128, in_channels=16, out_channels=16, text_dim=4096,
                   freq_dim=256, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
WAN_SHAPES = {
    "wan-1.3b": dict(_WAN_COMMON, num_attention_heads=12, ffn_dim=8960, num_layers=30),
    "wan-14b": dict(_WAN_COMMON, num_attention_heads=40, ffn_dim=13824, num_layers=40),
}
SIZES = ("kelp-small", *WAN_SHAPES)


def build_on_meta(size: str) -> nn.Module:
    """The transformer with its parameters on the meta device (no memory); buffers are real."""
    with init_empty_weights(include_buffers=False):
        if size == "kelp-small":
            return TRANSFORMER_PRESETS["small"].build()
        if size in WAN_SHAPES:
            from diffusers import WanTransformer3DModel

            return WanTransformer3DModel(**WAN_SHAPES[size])
    raise ValueError(f"`size` must be one of {SIZES}, got {size!r}")


def materialize(model: nn.Module, dtype: torch.dtype, rule: QuantRule | None = None,
                backend: QuantBackend | None = None, device: torch.device | str = "cpu") -> None:
    """Random weights (std 0.02) in `dtype` on `device`, one layer at a time; with `backend`, the layers `rule`
    selects are quantized as they are made, so the float32 copy of the whole model never exists."""
    device = torch.device(device)
    selected = set(select_linears(model, rule)) if backend is not None else set()
    for name in selected:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        meta = getattr(parent, child)
        linear = nn.Linear(meta.in_features, meta.out_features, bias=meta.bias is not None, device=device)
        nn.init.normal_(linear.weight, std=0.02)
        setattr(parent, child, backend.quantize_linear(linear, device, dtype))
        del linear
    for module in model.modules():
        own = list(module.named_parameters(recurse=False))
        if any(p.is_meta for _, p in own):
            buffers = {name: b.clone() for name, b in module.named_buffers(recurse=False)}  # to_empty drops values
            module.to_empty(device=device, recurse=False)
            for name, value in buffers.items():
                getattr(module, name).copy_(value)
            for _, param in module.named_parameters(recurse=False):
                if param.is_floating_point():
                    nn.init.normal_(param, std=0.02)
                    param.data = param.data.to(dtype)  # per module: a float32 copy of one layer at most
    if device.type != "cpu":
        model.to(device)  # the buffers built on the CPU (rotary tables and the like)


def computed_bytes(model: nn.Module, rest_bytes: int, rule: QuantRule | None = None,
                   backend: QuantBackend | None = None) -> int:
    """Weight bytes of `model` (meta is fine) with `backend`'s layout for the layers `rule` selects and
    `rest_bytes` per value for every other parameter and buffer."""
    selected = set(select_linears(model, rule)) if backend is not None else set()
    total = 0
    for name, module in model.named_modules():
        if name in selected:
            total += backend.layout_bytes(module.out_features, module.in_features, module.bias is not None, rest_bytes)
            continue
        for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
            total += tensor.numel() * rest_bytes
    return total


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_inputs(size: str, dtype: torch.dtype) -> tuple[tuple, dict]:
    """One model call's inputs: Kelp's default clip (17 frames of 128x128, batch 2 for guidance); for Wan shapes a
    small call (one latent frame of 16x16, 16 text tokens) so that a CPU can time it."""
    generator = torch.Generator().manual_seed(0)
    if size == "kelp-small":
        latent = torch.randn(2, 16, 5, 16, 16, generator=generator, dtype=torch.float32).to(dtype)
        text = torch.randn(2, 77, 384, generator=generator).to(dtype)
        return (latent, torch.full((2,), 500.0, dtype=dtype), text), {}
    latent = torch.randn(1, 16, 1, 16, 16, generator=generator).to(dtype)
    text = torch.randn(1, 16, 4096, generator=generator).to(dtype)
    return (latent, torch.full((1,), 500.0, dtype=dtype), text), {"return_dict": False}
