"""Int8 weight-only Linear layers in plain torch: symmetric, one scale per output channel; runs on any device.

The weight is dequantized inside each call (int8 -> compute dtype, exact for |q| <= 127), multiplied, and the
per-channel scale applied to the output. On the CPU this was measured faster than torch's own int8 kernel
(`torch._weight_int8pack_mm`: 30-60x slower in fp32, 2x slower in bf16 on a 2-core x86 box; see bench/memory.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.quant.base import QuantBackend, mark_quantized

INT8_MAX = 127  # symmetric: -128 is never used, so negating a weight never overflows


def quantize_int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight (out, in) float -> int8 codes (out, in) and float32 scales (out,), weight ~= codes * scales[:, None]."""
    if weight.ndim != 2 or not weight.is_floating_point():
        raise ValueError(f"`weight` must be a 2-D float tensor, got {weight.dtype} of shape {tuple(weight.shape)}")
    weight = weight.detach().float()
    absmax = weight.abs().amax(dim=1)  # (out,)
    scale = (absmax / INT8_MAX).clamp(min=torch.finfo(torch.float32).tiny)  # an all-zero row keeps codes 0
    codes = torch.round(weight / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)  # (out, in)
    return codes, scale


class Int8WeightOnlyLinear(nn.Linear):
    """nn.Linear with an int8 `weight` (out, in) and a float `weight_scale` (out,); activations stay in float.

    A subclass of nn.Linear so that peft wraps it like any Linear (LoRA adapters stay in float beside it) and
    state_dict keys keep their names (`<layer>.weight` now int8, plus `<layer>.weight_scale`).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None):
        nn.Module.__init__(self)  # not nn.Linear.__init__: it would allocate (and initialise) a float weight
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.zeros(out_features, in_features, dtype=torch.int8, device=device),
                                   requires_grad=False)
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8WeightOnlyLinear":
        codes, scale = quantize_int8_per_channel(linear.weight)
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        layer.weight = nn.Parameter(codes, requires_grad=False)
        layer.weight_scale = scale
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        return layer

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.weight.to(dtype) * self.weight_scale.to(dtype)[:, None]  # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight.to(x.dtype))  # (..., out); this layer's float weight lives only for the call
        out = out * self.weight_scale.to(x.dtype)
        return out if self.bias is None else out + self.bias.to(x.dtype)


class NativeInt8Backend(QuantBackend):
    mode = "int8"
    name = "native-int8"
    saves_quantized = True

    def unavailable_reason(self, device: torch.device) -> str | None:
        return None  # plain torch ops: every device

    def quantize_linear(self, linear: nn.Linear, device: torch.device, compute_dtype: torch.dtype) -> nn.Module:
        layer = Int8WeightOnlyLinear.from_linear(linear).to(device)
        if layer.bias is not None:
            layer.bias.data = layer.bias.data.to(compute_dtype)
        return mark_quantized(layer, self)

    def layout_bytes(self, out_features: int, in_features: int, bias: bool, bias_bytes: int = 2) -> int:
        return out_features * in_features + 4 * out_features + (bias_bytes * out_features if bias else 0)

    def to_saved(self, layer: nn.Module) -> nn.Module:
        return layer

    def from_saved(self, layer: nn.Module, device: torch.device, compute_dtype: torch.dtype) -> nn.Module:
        return mark_quantized(layer.to(device), self)
