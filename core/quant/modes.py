"""The lookup table from a quantization mode to the backend that serves it on a device, and the device checks."""

from __future__ import annotations

from typing import Callable

import torch

from core.quant.base import QuantBackend
from core.quant.bnb import BnbInt8Backend, BnbNF4Backend
from core.quant.fp8 import Float8Backend
from core.quant.native_int8 import NativeInt8Backend

NONE = "none"
# Per mode, the backends in order of preference: the first that can run on the device serves it.
BACKENDS: dict[str, tuple[Callable[[], QuantBackend], ...]] = {
    "int8": (BnbInt8Backend, NativeInt8Backend),  # LLM.int8 on CUDA, the native path elsewhere
    "nf4": (BnbNF4Backend,),
    "fp8": (Float8Backend,),
}
MODES = (NONE, *BACKENDS)


def describe_device(device: torch.device | str) -> str:
    """'cpu', or 'cuda:0 (NVIDIA H100, compute capability 9.0)': what error messages name."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return f"cuda:{index} ({torch.cuda.get_device_name(index)}, compute capability {major}.{minor})"


def _check_mode_name(mode) -> None:
    if mode not in MODES:
        raise ValueError(f"`quant` must be one of {list(MODES)}, got {mode!r}")


def backend_for(mode: str, device: torch.device | str) -> QuantBackend:
    """The backend that runs `mode` on `device`; ValueError naming both when none can."""
    _check_mode_name(mode)
    if mode == NONE:
        raise ValueError("quantization 'none' has no backend: leave the model as it is")
    device = torch.device(device)
    reasons = []
    for make in BACKENDS[mode]:
        backend = make()
        reason = backend.unavailable_reason(device)
        if reason is None:
            return backend
        reasons.append(reason)
    raise ValueError(f"quantization {mode!r} {reasons[0]}; this device is {describe_device(device)}")


def backend_named(name: str) -> QuantBackend:
    """The backend recorded as `name` in a QuantizationInfo."""
    for makers in BACKENDS.values():
        for make in makers:
            if make.name == name:
                return make()
    raise ValueError(f"unknown quantization backend {name!r}")


def check_mode(mode: str, device: torch.device | str) -> None:
    """Raise ValueError if `mode` is unknown or cannot run on `device`; loads nothing."""
    _check_mode_name(mode)
    if mode != NONE:
        backend_for(mode, device)


def available_modes(device: torch.device | str) -> list[str]:
    """The modes `device` can run, "none" first."""
    modes = []
    for mode in MODES:
        try:
            check_mode(mode, device)
        except ValueError:
            continue
        modes.append(mode)
    return modes
