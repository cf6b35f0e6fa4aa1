"""FP8 (e4m3) weights with one scale per output channel; on Ada/Hopper GPUs the matmul runs in fp8 (`torch._scaled_mm`
with per-token activation scales), elsewhere the weight is dequantized inside the call."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.quant.base import QuantBackend, mark_quantized

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite e4m3fn value
MIN_CAPABILITY = (8, 9)  # Ada (8.9) and Hopper (9.0) have fp8 tensor cores
SCALED_MM_MULTIPLE = 16  # torch._scaled_mm wants both matrix sides divisible by 16


def quantize_fp8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight (out, in) float -> e4m3 values (out, in) and float32 scales (out,), weight ~= values * scales[:, None]."""
    weight = weight.detach().float()
    scale = (weight.abs().amax(dim=1) / FP8_MAX).clamp(min=torch.finfo(torch.float32).tiny)  # (out,)
    return (weight / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


class Float8WeightLinear(nn.Linear):
    """nn.Linear whose `weight` (out, in) holds e4m3 values, with a float32 `weight_scale` (out,).

    The weight is stored as uint8 (the e4m3 bits): a float8 dtype counts as floating point, so `model.to(bf16)`
    would upcast it and peft would create LoRA adapters in float8.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None):
        nn.Module.__init__(self)  # not nn.Linear.__init__: no float weight
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.zeros(out_features, in_features, dtype=torch.uint8, device=device),
                                   requires_grad=False)
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None
        self.use_scaled_mm = False  # set by Float8Backend where the device has fp8 matmuls

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Float8WeightLinear":
        values, scale = quantize_fp8_per_channel(linear.weight)
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        layer.weight = nn.Parameter(values.view(torch.uint8), requires_grad=False)
        layer.weight_scale = scale
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sides_fit = self.in_features % SCALED_MM_MULTIPLE == 0 and self.out_features % SCALED_MM_MULTIPLE == 0
        if self.use_scaled_mm and sides_fit and x.numel() and not torch.is_grad_enabled():
            out = self._scaled_mm(x)
        else:
            out = F.linear(x, self.weight.view(FP8).to(x.dtype)) * self.weight_scale.to(x.dtype)
        return out if self.bias is None else out + self.bias.to(x.dtype)

    def _scaled_mm(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()  # (M, in)
        row_scale = (rows.abs().amax(dim=1, keepdim=True) / FP8_MAX).clamp(min=1e-12)  # (M, 1): per token
        codes = (rows / row_scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
        out = torch._scaled_mm(codes, self.weight.view(FP8).t(), scale_a=row_scale, scale_b=self.weight_scale.float()[None],
                               out_dtype=torch.bfloat16)  # (M, out); weight.t() is the column-major side it wants
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)


class Float8Backend(QuantBackend):
    mode = "fp8"
    name = "fp8-e4m3"
    saves_quantized = True

    def unavailable_reason(self, device: torch.device) -> str | None:
        if device.type != "cuda":
            return "needs an NVIDIA GPU with fp8 support (compute capability 8.9+: Ada or Hopper)"
        if torch.cuda.get_device_capability(device) < MIN_CAPABILITY:
            return "needs compute capability 8.9+ (Ada or Hopper) for fp8 matmuls"
        return None

    def quantize_linear(self, linear: nn.Linear, device: torch.device, compute_dtype: torch.dtype) -> nn.Module:
        return self.from_saved(Float8WeightLinear.from_linear(linear), device, compute_dtype)

    def layout_bytes(self, out_features: int, in_features: int, bias: bool, bias_bytes: int = 2) -> int:
        return out_features * in_features + 4 * out_features + (bias_bytes * out_features if bias else 0)

    def to_saved(self, layer: nn.Module) -> nn.Module:
        return layer

    def from_saved(self, layer: nn.Module, device: torch.device, compute_dtype: torch.dtype) -> nn.Module:
        layer = layer.to(device)
        layer.use_scaled_mm = self.unavailable_reason(torch.device(device)) is None
        return mark_quantized(layer, self)
