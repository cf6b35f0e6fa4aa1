"""Recorded text embeddings stand in for MiniLM exactly: same batches, same generated video."""

import pytest
import torch

from bench.recorded_text import RecordedTextEncoder, record
from core.pipeline import Engine
from core.text.encoder import MiniLMTextEncoder
from tests.core.engine_helpers import decoded_frames, tiny_request

PROMPTS = ("", "a red circle moving left", "a much longer prompt about a blue square bouncing on a white background")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return record(PROMPTS, tmp_path_factory.mktemp("text") / "embeddings.safetensors")


def test_a_padded_batch_matches_minilm(recorded):
    live, replay = MiniLMTextEncoder(), RecordedTextEncoder(recorded)
    batch = [PROMPTS[2], PROMPTS[1], PROMPTS[0]]
    expected, got = live.encode(batch), replay.encode(batch)
    assert torch.equal(got.mask, expected.mask)
    torch.testing.assert_close(got.embeddings, expected.embeddings, atol=1e-5, rtol=1e-4)
    assert replay.name == live.name and replay.max_length == live.max_length
    assert replay.count_tokens(PROMPTS[1]) == live.count_tokens(PROMPTS[1])


def test_an_unrecorded_prompt_is_named(recorded):
    with pytest.raises(ValueError, match="prompts not recorded: \\['a green star'\\]"):
        RecordedTextEncoder(recorded).encode(["a green star", PROMPTS[1]])


def test_the_engine_generates_the_same_video_with_recorded_embeddings(recorded, tmp_path):
    request = tiny_request(prompt=PROMPTS[1], guidance_scale=3.0)  # guided: the empty negative prompt is encoded too
    live = decoded_frames(Engine(device="cpu", output_dir=tmp_path), request)
    engine = Engine(device="cpu", output_dir=tmp_path)
    replay = RecordedTextEncoder(recorded)
    engine.use_text_encoder(replay)
    replayed = decoded_frames(engine, request)
    assert engine.text_encoder(replay.name) is replay  # served by the recording, not a freshly loaded MiniLM
    assert abs(replayed.astype(int) - live.astype(int)).max() <= 1
