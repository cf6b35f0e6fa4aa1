"""On a CUDA GPU: int8 (LLM.int8), NF4 and, on Ada/Hopper, fp8 transformers stay close to full precision."""

import pytest
import torch

from core.model_loader import load_model, resolve_model
from core.quant.modes import available_modes

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def forward(transformer) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x, text = torch.randn(1, 16, 3, 8, 8, generator=generator), torch.randn(1, 7, 384, generator=generator)
    cast = dict(device="cuda", dtype=transformer.dtype)  # as the engine feeds it
    with torch.no_grad():
        return transformer(x.to(**cast), torch.tensor([500.0]).to(**cast), text.to(**cast)).sample.float()


@pytest.mark.parametrize("mode, bound", [("int8", 0.02), ("nf4", 0.15), ("fp8", 0.06)])
def test_quantized_transformer_on_cuda(mode, bound):
    if mode not in available_modes("cuda"):
        pytest.skip(f"{mode} does not run on this GPU")
    source = resolve_model("random:small")
    reference = forward(load_model(source, "cuda", torch.float32).transformer)
    loaded = load_model(source, "cuda", torch.bfloat16, quant=mode)
    got = forward(loaded.transformer)
    assert loaded.quantization.mode == mode
    assert ((got - reference).norm() / reference.norm()).item() < bound
