"""FP8 layers on the CPU: the dequantizing path and the torch._scaled_mm path agree and stay near the float layer."""

import torch
from torch import nn

from core.quant.fp8 import FP8, Float8WeightLinear


def test_fp8_layer_paths_agree_and_follow_the_float_layer():
    torch.manual_seed(0)
    linear, x = nn.Linear(64, 32), torch.randn(5, 64)
    layer = Float8WeightLinear.from_linear(linear)
    assert layer.weight.dtype == torch.uint8 and layer.weight.view(FP8).dtype == FP8  # e4m3 bits
    assert layer.weight_scale.shape == (32,)
    with torch.inference_mode():
        expected, dequantized = linear(x), layer(x)
        layer.use_scaled_mm = True  # what Float8Backend sets on Ada/Hopper; torch also runs it on the CPU
        scaled = layer(x)
    error = lambda got: ((got - expected).norm() / expected.norm()).item()  # noqa: E731
    assert error(dequantized) < 0.05 and error(scaled) < 0.06
    assert scaled.dtype == x.dtype and scaled.shape == (5, 32)


def test_fp8_weights_survive_a_dtype_cast():
    layer = Float8WeightLinear.from_linear(nn.Linear(16, 16)).to(torch.bfloat16)
    assert layer.weight.dtype == torch.uint8
    assert layer(torch.randn(2, 16, dtype=torch.bfloat16)).dtype == torch.bfloat16
