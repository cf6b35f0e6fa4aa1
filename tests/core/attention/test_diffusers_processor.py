"""Kelp's attention backends inside a diffusers Wan transformer (tiny, random weights built from a config)."""

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from core.attention.adaptive_sparsity import SparsityController, SparsitySettings
from core.attention.diffusers_processor import KelpWanAttnProcessor, wan_attention


@pytest.fixture(scope="module")
def wan():
    torch.manual_seed(0)
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
                                  out_channels=4, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2,
                                  rope_max_seq_len=64).eval()
    return model


def inputs():
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 4, 3, 16, 16, generator=generator)  # 3 x 8 x 8 = 192 video tokens
    text = torch.randn(1, 7, 32, generator=generator)
    return dict(hidden_states=latents, timestep=torch.tensor([500.0]), encoder_hidden_states=text, return_dict=False)


def run(model):
    with torch.no_grad():
        return model(**inputs())[0]


def test_dense_through_kelp_matches_diffusers_own_processor(wan):
    reference = run(wan)
    with wan_attention(wan, "dense"):
        assert all(isinstance(block.attn1.processor, KelpWanAttnProcessor) for block in wan.blocks)
        ours = run(wan)
    assert torch.allclose(ours, reference, atol=1e-5), (ours - reference).abs().max()
    assert all(type(block.attn1.processor) is WanAttnProcessor for block in wan.blocks)  # given back


def test_sparse_searches_per_layer_and_matches_dense_at_full_recall(wan):
    reference = run(wan)
    controller = SparsityController(SparsitySettings(target_recall=1.0, min_tokens=0, block_size=16, min_sparsity=0.0,
                                                     warmup_steps=0, search_steps=(0,)))
    with wan_attention(wan, "sparse", controller):
        for step in range(3):
            controller.set_step(step)
            out = run(wan)
            assert torch.allclose(out, reference, atol=1e-4)
    assert controller.searches == len(wan.blocks)  # searched at step 0, reused at steps 1 and 2


def test_dropping_blocks_in_a_wan_model_changes_its_output(wan):
    reference = run(wan)
    controller = SparsityController(SparsitySettings(sparsity=0.75, min_tokens=0, block_size=16, min_sparsity=0.0,
                                                     warmup_steps=0, search_steps=(0,)))
    with wan_attention(wan, "sparse", controller):
        controller.set_step(0)
        run(wan)  # the search step attends densely
        controller.set_step(1)
        sparse = run(wan)
    assert not torch.allclose(sparse, reference, atol=1e-4)
    assert all(float(stats.sparsity.mean()) > 0.4 for stats in controller.stats.values())


def test_bad_backend_and_missing_state_are_refused(wan):
    with pytest.raises(ValueError, match="`backend` must be one of"):
        KelpWanAttnProcessor(0, "fastest")
    with pytest.raises(ValueError, match="needs `state`"):
        KelpWanAttnProcessor(0, "sparse")
    with pytest.raises(ValueError, match="must be a diffusers WanTransformer3DModel"):
        with wan_attention(torch.nn.Linear(2, 2)):
            pass
