"""The interface every quantization backend implements (see `core.quant.modes` for the lookup table)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class QuantizationInfo:
    """What `quantize_model` did to a model; kept on it as `model.kelp_quantization`."""

    mode: str  # "int8", "nf4" or "fp8"
    backend: str  # QuantBackend.name that made the layers
    rule: str  # QuantRule.name that chose them
    modules: tuple[str, ...]  # names of the quantized Linear layers


class QuantBackend(ABC):
    """Turns one nn.Linear into a quantized layer with the same inputs and outputs."""

    mode: str  # the user-facing mode this backend serves
    name: str  # this implementation, recorded with the model
    saves_quantized: bool  # True: `to_saved` / `from_saved` give an on-disk layout; False: quantize at load

    @abstractmethod
    def unavailable_reason(self, device: torch.device) -> str | None:
        """Why this backend cannot run on `device` ("needs a CUDA GPU (bitsandbytes)"), or None if it can."""

    @abstractmethod
    def quantize_linear(self, linear: nn.Linear, device: torch.device, compute_dtype: torch.dtype) -> nn.Module:
        """A quantized copy of `linear` on `device` that computes in `compute_dtype`; `linear` is left as it was."""

    @abstractmethod
    def layout_bytes(self, out_features: int, in_features: int, bias: bool, bias_bytes: int = 2) -> int:
        """Bytes one quantized layer of this shape stores (weights, scales, bias), computed without building it."""

    def to_saved(self, layer: nn.Module) -> nn.Module:
        """The layer in its on-disk layout (a module whose state_dict is what the checkpoint holds)."""
        raise ValueError(
            f"quantization {self.mode!r} ({self.name}) layers are not saved quantized; save the full-precision "
            f"model and pass quant={self.mode!r} when loading it"
        )

    def from_saved(self, layer: nn.Module, device: torch.device, compute_dtype: torch.dtype) -> nn.Module:
        """The runtime layer for a layer read back in its on-disk layout."""
        raise ValueError(f"quantization {self.mode!r} ({self.name}) has no saved layout to load")


def is_quantized_layer(module: nn.Module) -> bool:
    return getattr(module, "kelp_quant_backend", None) is not None


def mark_quantized(module: nn.Module, backend: QuantBackend) -> nn.Module:
    module.kelp_quant_backend = backend.name  # plain attribute: survives .to() and deepcopy, never saved
    return module
