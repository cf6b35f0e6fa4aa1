"""The native int8 path: per-channel symmetric codes, and a layer whose outputs follow the float layer."""

import torch
from torch import nn

from core.quant.native_int8 import INT8_MAX, Int8WeightOnlyLinear, quantize_int8_per_channel


def rows_of_many_sizes(out_features: int = 48, in_features: int = 64) -> torch.Tensor:
    """Rows whose magnitudes span four orders: one scale for all of them would flatten the small ones to zero."""
    weight = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(0))
    return weight * torch.logspace(-3, 1, out_features)[:, None]


def test_codes_use_the_full_symmetric_range_of_each_row():
    weight = rows_of_many_sizes()
    codes, scale = quantize_int8_per_channel(weight)
    assert codes.dtype == torch.int8 and scale.shape == (48,)
    assert codes.abs().amax(dim=1).eq(INT8_MAX).all() and codes.min() >= -INT8_MAX
    assert ((codes.float() * scale[:, None] - weight).abs() <= scale[:, None] / 2 + 1e-7).all()
    zero_codes, _ = quantize_int8_per_channel(torch.zeros(3, 5))
    assert not zero_codes.any()


def test_layer_output_is_close_to_the_float_layer_row_by_row():
    linear = nn.Linear(64, 48)
    linear.weight.data = rows_of_many_sizes()
    layer = Int8WeightOnlyLinear.from_linear(linear)
    x = torch.randn(10, 64, generator=torch.Generator().manual_seed(1))
    expected, got = linear(x).detach(), layer(x)
    no_bias = lambda out, module: out - module.bias.detach()  # noqa: E731
    error = (no_bias(got, layer) - no_bias(expected, linear)).norm(dim=0) / no_bias(expected, linear).norm(dim=0)
    assert error.max() < 0.02  # each output channel to 2%: a shared or transposed scale misses by far more
    tolerance = linear.weight.abs().max().item() / 200
    assert torch.allclose(layer.dequantized_weight(), linear.weight, rtol=0, atol=tolerance)
    assert layer.weight.dtype == torch.int8 and not layer.weight.requires_grad
    assert set(layer.state_dict()) == {"weight", "weight_scale", "bias"}


def test_layer_computes_in_the_input_dtype():
    layer = Int8WeightOnlyLinear.from_linear(nn.Linear(16, 8))
    assert layer(torch.randn(2, 16, dtype=torch.bfloat16)).dtype == torch.bfloat16
