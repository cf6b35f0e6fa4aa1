"""bitsandbytes backends: LLM.int8 (int8 weights, outlier columns in 16-bit) and NF4 (4-bit, blocks of 64).

Kelp offers them on CUDA only. bitsandbytes is imported when a layer is made, never at import. LLM.int8 stores
exactly Kelp's native int8 layout (codes per output row, SCB = absmax = 127 * scale), so int8 checkpoints are
shared with the native backend. NF4 layers are not saved quantized: a checkpoint keeps full precision and NF4
is applied at load (bitsandbytes packs its 4-bit state per device; re-quantizing takes seconds).
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from core.quant.base import QuantBackend, mark_quantized
from core.quant.native_int8 import INT8_MAX, Int8WeightOnlyLinear

NF4_BLOCK = 64  # weights per absmax (bitsandbytes' default for Linear4bit)
NESTED_BLOCK = 256  # absmax values per second-level scale when statistics are compressed (double quantization)
NF4_STATE_JSON_BYTES = 170  # about: the quant state's description, packed into a uint8 tensor of the state_dict
LLM_INT8_THRESHOLD = 6.0  # activation magnitude above which a column runs in 16-bit (the LLM.int8 paper's value)


def _cuda_reason(device: torch.device) -> str | None:
    if device.type != "cuda":
        return "needs a CUDA GPU (bitsandbytes)"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "needs bitsandbytes (`pip install bitsandbytes`)"
    return None


class BnbInt8Backend(QuantBackend):
    mode = "int8"
    name = "bnb-llm-int8"
    saves_quantized = True

    def unavailable_reason(self, device: torch.device) -> str | None:
        return _cuda_reason(device)

    def quantize_linear(self, linear: nn.Linear, device: torch.device, compute_dtype: torch.dtype) -> nn.Module:
        return self.from_saved(Int8WeightOnlyLinear.from_linear(linear), device, compute_dtype)

    def layout_bytes(self, out_features: int, in_features: int, bias: bool, bias_bytes: int = 2) -> int:
        return out_features * in_features + 4 * out_features + (bias_bytes * out_features if bias else 0)

    def from_saved(self, layer: nn.Module, device: torch.device, compute_dtype: torch.dtype) -> nn.Module:
        import bitsandbytes as bnb

        # Made on the device: Int8Params.to() from the CPU re-quantizes its data and leaves the given CB behind.
        codes = layer.weight.detach().to(device)
        absmax = (layer.weight_scale.detach().float() * INT8_MAX).to(device)  # bitsandbytes' SCB
        out = bnb.nn.Linear8bitLt(layer.in_features, layer.out_features, bias=layer.bias is not None,
                                  has_fp16_weights=False, threshold=LLM_INT8_THRESHOLD, device="meta")
        out.weight = bnb.nn.Int8Params(codes, requires_grad=False, has_fp16_weights=False, CB=codes, SCB=absmax)
        if layer.bias is not None:
            out.bias = nn.Parameter(layer.bias.detach().to(device, compute_dtype), requires_grad=False)
        return mark_quantized(out.to(device), self)

    def to_saved(self, layer: nn.Module) -> nn.Module:
        # Before the first call the row scales sit on the weight; the first call moves them into layer.state.
        absmax = layer.weight.SCB if getattr(layer.weight, "SCB", None) is not None else layer.state.SCB
        saved = Int8WeightOnlyLinear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
        saved.weight = nn.Parameter(layer.weight.data.detach().clone(), requires_grad=False)
        saved.weight_scale = absmax.detach().float() / INT8_MAX
        if layer.bias is not None:
            saved.bias = nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        return saved


class BnbNF4Backend(QuantBackend):
    mode = "nf4"
    name = "bnb-nf4"
    saves_quantized = False

    def unavailable_reason(self, device: torch.device) -> str | None:
        return _cuda_reason(device)

    def quantize_linear(self, linear: nn.Linear, device: torch.device, compute_dtype: torch.dtype) -> nn.Module:
        import bitsandbytes as bnb

        out = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                compute_dtype=compute_dtype, quant_type="nf4", device="meta")
        # Params4bit quantizes when moved to a device, from a copy that starts on the CPU.
        out.weight = bnb.nn.Params4bit(linear.weight.detach().to("cpu").clone(), requires_grad=False,
                                       quant_type="nf4", blocksize=NF4_BLOCK, compress_statistics=True)
        if linear.bias is not None:
            out.bias = nn.Parameter(linear.bias.detach().to("cpu", compute_dtype).clone(), requires_grad=False)
        return mark_quantized(out.to(device), self)

    def layout_bytes(self, out_features: int, in_features: int, bias: bool, bias_bytes: int = 2) -> int:
        weights = out_features * in_features
        blocks = -(-weights // NF4_BLOCK)
        nested = -(-blocks // NESTED_BLOCK)
        # 4-bit codes; one uint8 absmax per block plus one float32 scale per 256 blocks; the code tables (16 and
        # 256 float32) and the packed description.
        packed = -(-weights // 2) + blocks + 4 * nested + 4 * 16 + 4 * 256 + NF4_STATE_JSON_BYTES
        return packed + (bias_bytes * out_features if bias else 0)
