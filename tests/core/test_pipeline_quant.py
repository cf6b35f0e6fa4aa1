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


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU's refusal")
@pytest.mark.parametrize("overrides, words", [
    (dict(quant="nf4"), ["'nf4'", "CUDA", "this device is cpu"]),
    (dict(quant="fp8"), ["'fp8'", "this device is cpu"]),
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


def test_each_mode_is_its_own_resident_model(engine):
    source = engine.validate(request()).model
    full = engine.model(source)
    int8 = engine.model(source, "int8")
    assert int8 is not full and int8.quantization is not None and full.quantization is None
    assert engine.model(source, "int8") is int8  # cached while it is the one asked for
