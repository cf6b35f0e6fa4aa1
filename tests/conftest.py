"""Shared pytest setup: GPU tests skip cleanly on machines without CUDA, and every test keeps its history
(KELP_DATA_DIR) in its own temporary folder, never in the user's."""

import core  # noqa: F401  (first: keeps the libraries tests import off the Hub, core/offline.py)
import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("kelp-data")
    monkeypatch.setenv("KELP_DATA_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    """A LoRA file for random:tiny whose B matrices are non-zero (peft starts them at zero), as if trained."""
    from core.model_loader import load_model, resolve_model
    from training.config import LoraSettings
    from training.lora import add_lora, save_lora

    base = load_model(resolve_model("random:tiny"))
    add_lora(base.transformer, LoraSettings(rank=4, alpha=4.0))
    for name, param in base.transformer.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    path = tmp_path_factory.mktemp("loras") / "subject.safetensors"
    return save_lora(path, base.transformer, base_model="random:tiny", base_weights_sha256=base.weights_hash)
