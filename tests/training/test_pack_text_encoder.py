"""The MiniLM copy packed for GPU machines: the toy world's captions keep their embeddings, other words lose theirs."""

import tarfile

import pytest

from core.text.encoder import MiniLMTextEncoder
from training.pack_text_encoder import pack, relative_l2, sampled_captions


@pytest.mark.slow
def test_packed_encoder_keeps_toy_captions_and_drops_other_words(tmp_path):
    report = pack(tmp_path / "minilm.tar.xz", check_samples=50)
    assert report["bytes"] < 24e6 and report["kept_tokens"] < 2000  # fits a device call beside the Kelp tree
    with tarfile.open(tmp_path / "minilm.tar.xz") as archive:
        archive.extractall(tmp_path, filter="data")
    packed, full = MiniLMTextEncoder(model_path=tmp_path / "minilm"), MiniLMTextEncoder()
    for caption in sampled_captions(20, seed=777) + ["a small red square moves to the left on a black background"]:
        assert relative_l2(packed.encode([caption]).embeddings, full.encode([caption]).embeddings) < 3e-3, caption
    other = "a giraffe eating leaves"  # "giraffe", "eating" and "leaves" are no toy-world words
    assert relative_l2(packed.encode([other]).embeddings, full.encode([other]).embeddings) > 0.1
