"""Which modes a device can run, and the errors that name the mode and the device when it cannot."""

import pytest
import torch

from core.quant.modes import MODES, available_modes, backend_for, check_mode

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA; none on this machine")


def test_cpu_runs_int8_natively_and_nothing_else():
    assert MODES == ("none", "int8", "nf4", "fp8")
    assert available_modes("cpu") == ["none", "int8"]
    assert backend_for("int8", "cpu").name == "native-int8"
    check_mode("none", "cpu")
    check_mode("int8", torch.device("cpu"))


def test_modes_a_cpu_cannot_run_say_so():
    with pytest.raises(ValueError, match=r"^quantization 'nf4' needs a CUDA GPU \(bitsandbytes\); this device is cpu$"):
        check_mode("nf4", "cpu")
    with pytest.raises(ValueError, match=r"^quantization 'fp8' needs an NVIDIA GPU .*compute capability 8\.9.*; "
                                         r"this device is cpu$"):
        check_mode("fp8", "cpu")
    with pytest.raises(ValueError, match=r"`quant` must be one of \['none', 'int8', 'nf4', 'fp8'\], got 'int4'"):
        check_mode("int4", "cpu")


@pytest.mark.gpu
@needs_cuda
def test_cuda_uses_bitsandbytes_for_int8_and_nf4():
    assert backend_for("int8", "cuda").name == "bnb-llm-int8"
    assert backend_for("nf4", "cuda").name == "bnb-nf4"
    fp8_ok = torch.cuda.get_device_capability() >= (8, 9)
    assert ("fp8" in available_modes("cuda")) == fp8_ok
