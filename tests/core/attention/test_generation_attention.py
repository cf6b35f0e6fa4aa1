"""Sparse attention wired through a generation: request validation, the engine's per-generation controller,
the recorded report, and the transformer left as it was."""

import dataclasses

import numpy as np
import pytest

from core.attention.adaptive_sparsity import SparsitySettings
from core.cancellation import GenerationCancelled
from core.request import GenerationRequest, validate_request
from tests.core.engine_helpers import decoded_frames as frames, psnr, tiny_request

# Tiny clips have ~50 video tokens: search from the first token and in 16-token blocks.
SMALL_CLIP = dict(min_tokens=0, block_size=16, min_sparsity=0.0)


def request(**overrides) -> GenerationRequest:
    return tiny_request(**{"steps": 6, **overrides})


def test_unknown_attention_mode_is_refused_by_name():
    with pytest.raises(ValueError, match=r"`attention` must be one of \['dense', 'sparse'\], got 'fast'"):
        validate_request(request(attention="fast"))


def test_sparse_settings_without_sparse_mode_are_refused():
    with pytest.raises(ValueError, match="`sparse_attention` settings need `attention='sparse'`"):
        validate_request(request(sparse_attention=SparsitySettings()))


def test_sparse_defaults_are_filled_in_and_search_steps_fit_the_run():
    filled = validate_request(request(attention="sparse")).request.sparse_attention
    assert filled == SparsitySettings(search_steps=(2,))  # the default (2, 10) within 6 steps
    short = validate_request(request(attention="sparse", steps=2)).request.sparse_attention
    assert short.search_steps == (1,) and short.warmup_steps == 1  # a 2-step run still searches once


def test_request_with_sparse_settings_survives_json():
    req = request(attention="sparse", sparse_attention=SparsitySettings(sparsity=0.7, search_steps=(3, 4)))
    import json

    again = GenerationRequest.from_dict(json.loads(json.dumps(req.to_dict())))
    assert again == req
    with pytest.raises(ValueError, match=r"unknown `sparse_attention` fields \['speed'\]"):
        GenerationRequest.from_dict({**req.to_dict(), "sparse_attention": {"speed": 2}})


def test_sparse_generation_searches_at_search_steps_only_and_reports_it(engine, tmp_path):
    settings = SparsitySettings(sparsity=0.5, search_steps=(2, 4), **SMALL_CLIP)
    result = engine.generate(request(attention="sparse", sparse_attention=settings), tmp_path / "sparse.mp4")
    report = result.metadata["attention"]
    layers = len(report["layers"])
    transformer = engine.model(engine.validate(request()).model).transformer
    assert layers == len(transformer.dual_blocks) + len(transformer.shared_blocks)
    assert report["searches"] == 2 * layers  # steps 3 and 5 reused the pattern of steps 2 and 4
    assert all(layer["searched_at"] == 4 for layer in report["layers"])
    assert 0.3 < report["mean_sparsity"] < 0.7  # half of the key blocks dropped, less the forced ones
    assert 0 < report["search_share"] < 1
    assert result.metadata["request"]["sparse_attention"]["sparsity"] == 0.5
    # The transformer attends densely again after the run.
    assert transformer.attention_backend == "dense" and transformer.attention_state is None


def test_sparse_at_full_recall_matches_dense(engine):
    dense = frames(engine, request())
    full = frames(engine, request(attention="sparse", sparse_attention=SparsitySettings(target_recall=1.0,
                                                                                        **SMALL_CLIP)))
    assert psnr(dense, full) > 45


def test_dropping_blocks_changes_the_video(engine):
    """The sparse path really runs: dropping 70% of the blocks moves the result (a no-op would not). An untrained
    model's attention barely shapes its output, so the change is small."""
    dense = frames(engine, request())
    sparse = frames(engine, request(attention="sparse", sparse_attention=SparsitySettings(sparsity=0.7, **SMALL_CLIP)))
    assert not np.array_equal(dense, sparse)
    assert psnr(dense, sparse) > 30


def test_short_clip_runs_dense_and_says_so(engine):
    result = engine.sample(request(attention="sparse"))  # ~50 tokens, below the default 4096
    assert result.attention["searches"] == 0
    assert "shorter than min_tokens=4096" in result.attention["ran_dense"]
    assert result.attention["thresholds"] == {"device": "cpu", "min_tokens": 4096, "min_sparsity": 0.5}
    assert result.attention["settings"]["min_tokens"] is None  # left to the device, as stored in the history
    assert np.array_equal(frames(engine, request()), np.concatenate(list(engine.iter_frames(result))))


def test_cancel_mid_run_restores_dense_attention(engine):
    class CancelAtStep4:
        calls = 0

        def is_set(self):
            self.calls += 1
            return self.calls > 4

    req = request(attention="sparse", sparse_attention=SparsitySettings(sparsity=0.5, **SMALL_CLIP))
    with pytest.raises(GenerationCancelled):
        engine.sample(req, cancel=CancelAtStep4())
    transformer = engine.model(engine.validate(req).model).transformer
    assert transformer.attention_backend == "dense" and transformer.attention_state is None


def test_settings_are_frozen_so_a_request_cannot_be_changed_under_a_job():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SparsitySettings().sparsity = 0.5
