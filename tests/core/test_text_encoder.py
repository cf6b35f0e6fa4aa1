"""The MiniLM text encoder (the real bundled weights, loaded offline) and the encoder registry."""

import socket

import huggingface_hub.constants
import pytest
import torch

from core.text.encoder import TEXT_ENCODERS, MiniLMTextEncoder, build_text_encoder


@pytest.fixture(scope="module")
def encoder():
    return build_text_encoder("minilm-l6-v2")


def pooled(encoder, prompt: str) -> torch.Tensor:
    out = encoder.encode([prompt])
    return (out.embeddings * out.mask[..., None]).sum(1)[0] / out.mask.sum()  # (384,)


def test_shapes_and_mask_for_prompts_of_different_lengths(encoder):
    prompts = ["a red circle moving left across a white background", "a cat"]
    out = encoder.encode(prompts)
    lengths = [encoder.count_tokens(p) for p in prompts]
    assert out.embeddings.shape == (2, max(lengths), 384)  # padded to the longest prompt, not to max_length
    assert out.embeddings.dtype == torch.float32 and out.mask.dtype == torch.bool
    assert out.mask.sum(1).tolist() == lengths
    assert not out.mask[1, lengths[1]:].any()
    assert torch.isfinite(out.embeddings).all()
    assert not out.embeddings[1, lengths[1]:].any()  # padding is zeroed
    assert encoder.dim == 384 and encoder.name == "minilm-l6-v2"


def test_same_prompt_same_embeddings_and_different_prompts_differ(encoder):
    first, again = encoder.encode(["a boat at sunset"]), encoder.encode(["a boat at sunset"])
    assert torch.equal(first.embeddings, again.embeddings)
    other = encoder.encode(["a dog in the snow"])
    assert first.embeddings.shape != other.embeddings.shape or not torch.equal(first.embeddings, other.embeddings)
    assert not torch.allclose(pooled(encoder, "a boat at sunset"), pooled(encoder, "a dog in the snow"))


def test_padding_does_not_change_a_prompts_embeddings(encoder):
    alone = encoder.encode(["a cat"]).embeddings[0]  # (L, 384)
    batched = encoder.encode(["a cat", "a much longer prompt about a cat sleeping on a sofa"]).embeddings[0]
    torch.testing.assert_close(batched[: alone.shape[0]], alone, atol=1e-5, rtol=1e-4)


def test_similar_prompts_are_closer_than_unrelated_ones(encoder):
    anchor = pooled(encoder, "a red circle moving left")
    similar = torch.cosine_similarity(anchor, pooled(encoder, "a red ball moving to the left"), dim=0)
    unrelated = torch.cosine_similarity(anchor, pooled(encoder, "a bowl of coffee on a table"), dim=0)
    # The margin matters: randomly initialised MiniLMs also rank these in order (0.96 vs 0.93), only by less.
    assert similar > unrelated + 0.2  # trained: 0.69 vs 0.16


def test_long_prompts_are_truncated_and_counted(encoder):
    long_prompt = "a very long scene description " * 40
    assert encoder.encode([long_prompt, "short"]).embeddings.shape[1] == encoder.max_length == 77
    assert encoder.count_tokens(long_prompt) == 5 * 40 + 2  # 5 words a repeat, plus [CLS] and [SEP]
    short = MiniLMTextEncoder(max_length=8)
    assert short.encode([long_prompt]).mask.shape == (1, 8)


def test_embeddings_can_feed_a_trainable_layer(encoder):
    layer = torch.nn.Linear(384, 4)
    layer(encoder.encode(["a prompt"]).embeddings).sum().backward()
    assert layer.weight.grad is not None


def test_loads_with_the_hub_offline_and_no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import: set its flag too so the env var is not a no-op here.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    fresh = MiniLMTextEncoder()
    assert fresh._model is None  # the constructor loads nothing
    assert fresh.encode(["offline"]).embeddings.shape[-1] == 384


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="'t5-xxl'") as error:
        build_text_encoder("t5-xxl")
    assert all(name in str(error.value) for name in TEXT_ENCODERS)
    with pytest.raises(ValueError, match="`max_length`.*1000"):
        MiniLMTextEncoder(max_length=1000)
    with pytest.raises(ValueError, match="`prompts`"):
        MiniLMTextEncoder().encode("a bare string, not a list")
