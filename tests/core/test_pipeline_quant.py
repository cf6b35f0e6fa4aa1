"""Quantized weights and offload through a request: validation against the device, the cached model per mode, and
what the result records."""

import numpy as np
import pytest
import torch

from core.request import GenerationRequest, validate_request
from tests.core.engine_helpers import decoded_frames, psnr, tiny_request


def request(**overrides) -> GenerationRequest:
    return tiny_request(**overrides)


def test_unknown_quant_mode_is_refused_by_name():
    with pytest.raises(ValueError, match=r"`quant` must be one of \['none', 'int8', 'nf4', 'fp8'\], got 'int4'"):
        validate_request(request(quant="int4"))
    with pytest.raises(ValueError, match=r"`text_encoder_quant` must be one of \['none', 'int8', 'nf4', 'fp8'\], got 'q4'"):
        validate_request(request(text_encoder_quant="q4"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU's refusal")
@pytest.mark.parametrize("overrides, words", [
    (dict(quant="nf4"), ["'nf4'", "CUDA", "this device is cpu"]),
    (dict(quant="fp8"), ["'fp8'", "this device is cpu"]),
    (dict(text_encoder_quant="nf4"), ["'nf4'", "CUDA", "this device is cpu"]),
    (dict(offload=True), ["`offload`", "this device is cpu"]),
])
def test_modes_this_device_cannot_run_are_refused_before_loading(engine, overrides, words):
    with pytest.raises(ValueError) as err:
        engine.validate(request(**overrides))
    assert all(word in str(err.value) for word in words), str(err.value)


def test_int8_generation_records_its_weights_and_stays_close_to_full_precision(engine, tmp_path):
    full = engine.generate(request(), tmp_path / "full.mp4")
    int8 = engine.generate(request(quant="int8"), tmp_path / "int8.mp4")
    report = int8.metadata["quantization"]
    assert report["mode"] == "int8" and report["backend"] == "native-int8" and report["quantized_layers"] > 0
    assert report["transformer_weight_bytes"] < full.metadata["quantization"]["transformer_weight_bytes"]
    assert full.metadata["quantization"]["mode"] == "none"
    assert int8.metadata["request"]["quant"] == "int8"
    a, b = decoded_frames(engine, request()), decoded_frames(engine, request(quant="int8"))
    assert psnr(a, b) > 30, psnr(a, b)  # close to full precision, yet computed from other weights:
    assert not np.array_equal(a, b)


def test_int8_text_encoder_is_recorded_and_stays_close_to_full_precision(engine, tmp_path):
    full = engine.generate(request(), tmp_path / "full.mp4")
    assert full.metadata["quantization"]["text_encoder"] == {"mode": "none"}
    quantized = engine.generate(request(text_encoder_quant="int8"), tmp_path / "text-int8.mp4")
    report = quantized.metadata["quantization"]
    assert report["text_encoder"] == {"mode": "int8", "backend": "native-int8", "quantized_layers": 36}
    assert report["mode"] == "none"  # the transformer stays full precision
    assert quantized.metadata["request"]["text_encoder_quant"] == "int8"
    encoder = engine.text_encoder("minilm-l6-v2", "int8")
    assert encoder.quantization.mode == "int8"
    assert engine.text_encoder("minilm-l6-v2", "int8") is encoder  # cached while it is the one asked for
    a, b = decoded_frames(engine, request()), decoded_frames(engine, request(text_encoder_quant="int8"))
    assert engine.text_encoder("minilm-l6-v2").quantization is None  # back to full precision when asked
    assert psnr(a, b) > 25, psnr(a, b)  # other prompt embeddings, close to the full-precision ones
    assert not np.array_equal(a, b)


def test_each_mode_is_its_own_resident_model(engine):
    source = engine.validate(request()).model
    full = engine.model(source)
    int8 = engine.model(source, "int8")
    assert int8 is not full and int8.quantization is not None and full.quantization is None
    assert engine.model(source, "int8") is int8  # cached while it is the one asked for
