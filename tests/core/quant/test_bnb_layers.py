"""bitsandbytes layers, built on the CPU (bitsandbytes >= 0.45 has CPU kernels) although Kelp offers them on CUDA
only: LLM.int8 shares the native int8 layout bit for bit, NF4 stays close and its computed size is right."""

import pytest
import torch
from torch import nn

from core.quant.apply import weight_bytes
from core.quant.bnb import BnbInt8Backend, BnbNF4Backend
from core.quant.native_int8 import Int8WeightOnlyLinear

pytest.importorskip("bitsandbytes")
CPU = torch.device("cpu")


def layer_and_input(out_features: int = 96, in_features: int = 128):
    torch.manual_seed(0)
    return nn.Linear(in_features, out_features), torch.randn(6, in_features)


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).norm() / expected.norm()).item()


def test_llm_int8_uses_the_native_layout_bit_for_bit():
    linear, x = layer_and_input()
    native = Int8WeightOnlyLinear.from_linear(linear)
    backend = BnbInt8Backend()
    layer = backend.from_saved(native, CPU, torch.float32)
    with torch.no_grad():
        assert relative_error(layer(x), native(x)) < 0.01
    saved = backend.to_saved(layer)  # after a call: the scales have moved into layer.state
    assert torch.equal(saved.weight, native.weight) and torch.equal(saved.weight_scale, native.weight_scale)


def test_nf4_is_close_and_its_size_is_computed_right():
    linear, x = layer_and_input()
    backend = BnbNF4Backend()
    layer = backend.quantize_linear(linear, CPU, torch.float32)
    with torch.no_grad():
        assert relative_error(layer(x), linear(x)) < 0.15  # 4 bits: ~9% on Gaussian weights
    computed = backend.layout_bytes(96, 128, bias=True, bias_bytes=4)
    assert abs(computed - weight_bytes(layer)) <= 0.02 * computed
    assert weight_bytes(layer) < weight_bytes(linear) / 6  # float32 -> ~4.1 bits a weight at this size


def test_llm_int8_layer_survives_a_dtype_cast():
    linear, x = layer_and_input()
    layer = BnbInt8Backend().quantize_linear(linear, CPU, torch.float32)
    layer = layer.to(dtype=torch.bfloat16)  # what load_model does after quantizing on a GPU
    assert layer.weight.dtype == torch.int8 and layer.weight.SCB is not None
    with torch.no_grad():
        assert relative_error(layer(x.bfloat16()).float(), linear(x)) < 0.02
