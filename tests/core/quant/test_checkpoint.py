"""Quantized checkpoints: safetensors + JSON, bit-identical codes after a round trip, loaded without re-quantizing."""

import hashlib
import json

import pytest
import torch

import core.quant.native_int8 as native_int8
from core.model_loader import load_model, resolve_model, save_model
from core.models.video_dit import KelpVideoTransformer
from core.quant.apply import quantize_model, quantized_layers
from core.quant.base import QuantizationInfo
from core.quant.checkpoint import QUANT_INDEX, WEIGHTS_FILE, load_quantized, save_quantized
from core.quant.fp8 import Float8Backend
from core.quant.rules import TRANSFORMER_PROJECTIONS


def forward(transformer) -> torch.Tensor:
    torch.manual_seed(0)
    x, text = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 5, 384)
    with torch.no_grad():
        return transformer(x, torch.tensor([500.0]), text).sample


@pytest.fixture(scope="module")
def quantized():
    model = load_model(resolve_model("random:tiny:3"))
    quantize_model(model.transformer, "int8")
    return model


def test_round_trip_is_bit_identical(quantized, tmp_path):
    folder = save_quantized(quantized.transformer, tmp_path / "transformer")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", QUANT_INDEX, WEIGHTS_FILE]  # no pickles
    index = json.loads((folder / QUANT_INDEX).read_text())
    assert index["mode"] == "int8" and index["modules"] == list(quantized.transformer.kelp_quantization.modules)
    loaded = load_quantized(folder, KelpVideoTransformer)
    before, after = quantized_layers(quantized.transformer), quantized_layers(loaded)
    assert list(before) == list(after)
    for name, layer in before.items():
        assert after[name].weight.dtype == torch.int8
        assert torch.equal(after[name].weight, layer.weight)
        assert torch.equal(after[name].weight_scale, layer.weight_scale)
    assert torch.equal(forward(loaded), forward(quantized.transformer))


def test_model_folder_loads_quantized_without_requantizing(quantized, tmp_path, monkeypatch):
    save_model(tmp_path / "q", quantized.transformer, quantized.vae, "tiny")
    source = resolve_model(str(tmp_path / "q"))

    def refuse(*_):
        raise AssertionError("a saved int8 model must not be quantized again")

    monkeypatch.setattr(native_int8, "quantize_int8_per_channel", refuse)
    loaded = load_model(source)
    assert loaded.quantization.mode == "int8" and loaded.quantization.backend == "native-int8"
    assert torch.equal(forward(loaded.transformer), forward(quantized.transformer))
    files = sorted((tmp_path / "q").rglob("*.safetensors"))
    assert loaded.weights_hash == hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    assert load_model(source, quant="int8").quantization.mode == "int8"
    monkeypatch.setattr("core.model_loader.check_mode", lambda *_: None)  # as on a GPU that could run nf4
    with pytest.raises(ValueError, match=r"`quant` 'nf4' was asked for, but model .* is saved quantized as 'int8'"):
        load_model(source, quant="nf4")


def test_quantize_at_load_keeps_the_hash_and_the_unquantized_path(tmp_path):
    source = resolve_model("random:tiny:3")
    plain, int8 = load_model(source), load_model(source, quant="int8")
    assert plain.quantization is None and int8.quantization.mode == "int8"
    assert plain.weights_hash == int8.weights_hash  # the hash names the weights, not their runtime form
    reference, approx = forward(plain.transformer), forward(int8.transformer)
    assert not torch.equal(reference, approx)
    assert ((approx - reference).norm() / reference.norm()).item() < 0.01
    with pytest.raises(ValueError, match=r"quantization 'nf4' needs a CUDA GPU \(bitsandbytes\); this device is cpu"):
        load_model(source, quant="nf4")


def test_fp8_checkpoint_saves_and_refuses_to_load_on_a_cpu(tmp_path):
    transformer = load_model(resolve_model("random:tiny:3")).transformer
    quantize_model(transformer, "fp8", backend=Float8Backend())  # by hand: the mode is not offered on a CPU
    folder = save_quantized(transformer, tmp_path / "fp8")
    with pytest.raises(ValueError, match=r"quantization 'fp8' needs an NVIDIA GPU .*; this device is cpu"):
        load_quantized(folder, KelpVideoTransformer)


def test_nf4_and_plain_models_are_not_saved_quantized(tmp_path):
    transformer = load_model(resolve_model("random:tiny")).transformer
    with pytest.raises(ValueError, match="not quantized"):
        save_quantized(transformer, tmp_path / "plain")
    transformer.kelp_quantization = QuantizationInfo("nf4", "bnb-nf4", TRANSFORMER_PROJECTIONS.name, ())
    with pytest.raises(ValueError, match=r"quantization 'nf4' layers are not saved quantized; save the full-precision"):
        save_quantized(transformer, tmp_path / "nf4")
