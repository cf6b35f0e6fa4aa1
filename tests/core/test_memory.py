"""Device memory helpers: offload needs a GPU, release_memory is safe anywhere, the VAE dtype follows the device."""

import pytest
import torch
from torch import nn

from core.memory import enable_model_cpu_offload, release_memory, vae_dtype_for


def test_offload_needs_a_gpu():
    with pytest.raises(ValueError, match=r"^model CPU offload needs a CUDA GPU to offload from; this device is cpu$"):
        enable_model_cpu_offload([nn.Linear(2, 2)], "cpu")


def test_release_memory_and_vae_dtype_on_cpu():
    release_memory()
    release_memory("cpu")
    assert vae_dtype_for("cpu") == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_offload_moves_modules_in_turn():
    first, second = nn.Linear(8, 8), nn.Linear(8, 8)
    offload = enable_model_cpu_offload([first, second], "cuda")
    assert first.weight.device.type == "cpu"
    out = first(torch.randn(2, 8))
    assert out.device.type == "cuda" and first.weight.device.type == "cuda"
    second(out)
    assert first.weight.device.type == "cpu" and second.weight.device.type == "cuda"
    offload.offload_all()
    assert second.weight.device.type == "cpu"
    assert vae_dtype_for("cuda") == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)
    release_memory("cuda")
