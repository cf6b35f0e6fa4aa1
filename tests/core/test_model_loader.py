"""Model folders: save, find, load from safetensors only, and a weights hash that names them."""

import hashlib
import json
import pickle
import tempfile
from pathlib import Path

import pytest
import torch

from core.model_loader import list_models, load_model, resolve_model, save_model
from core.models.presets import GenerationDefaults


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    random_tiny = load_model(resolve_model("random:tiny:5"))
    root = tmp_path_factory.mktemp("models")
    defaults = GenerationDefaults(width=32, height=32, num_frames=5, steps=2, shift_base_tokens=12, max_frames=33)
    save_model(root / "my-model", random_tiny.transformer, random_tiny.vae, "tiny", defaults)
    return root, random_tiny


def forward(model):
    torch.manual_seed(0)
    x, text = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 5, 384)
    with torch.no_grad():
        return model.transformer(x, torch.tensor([500.0]), text).sample


def test_saved_folder_loads_to_the_same_model(saved):
    root, original = saved
    source = resolve_model("my-model", [root])
    assert source.folder == (root / "my-model").resolve() and source.preset == "tiny"
    assert (source.defaults.width, source.defaults.steps) == (32, 2)
    loaded = load_model(source)
    assert torch.equal(forward(loaded), forward(original))
    files = sorted((root / "my-model").rglob("*.safetensors"))
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    assert loaded.weights_hash == digest
    assert resolve_model(str(root / "my-model")).folder == source.folder  # by path too
    assert "my-model" in list_models([root])


def test_random_models_are_seeded(saved):
    _, tiny5 = saved
    assert load_model(resolve_model("random:tiny:5")).weights_hash == tiny5.weights_hash
    assert load_model(resolve_model("random:tiny:6")).weights_hash != tiny5.weights_hash


PICKLE_RAN = Path(tempfile.gettempdir()) / "kelp-pickle-was-run"


class _Exploit:
    def __reduce__(self):
        return (open, (str(PICKLE_RAN), "w"))


def test_pickled_weights_are_never_loaded(tmp_path):
    PICKLE_RAN.unlink(missing_ok=True)
    folder = tmp_path / "evil"
    (folder / "transformer").mkdir(parents=True)
    (folder / "kelp_model.json").write_text(json.dumps({"preset": "tiny"}))
    config = load_model(resolve_model("random:tiny")).transformer.config
    (folder / "transformer" / "config.json").write_text(json.dumps(dict(config)))
    (folder / "transformer" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(Exception):
        load_model(resolve_model(str(folder)))
    assert not PICKLE_RAN.exists()


def test_broken_index_is_a_clear_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "kelp_model.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a valid Kelp model index"):
        resolve_model(str(tmp_path / "bad"))
    (tmp_path / "bad" / "kelp_model.json").write_text(json.dumps({"preset": "enormous"}))
    with pytest.raises(ValueError, match="is not a valid Kelp model index"):
        resolve_model(str(tmp_path / "bad"))


def test_a_model_loaded_from_a_folder_saves_without_this_machines_path(saved, tmp_path):
    root, _ = saved
    loaded = load_model(resolve_model("my-model", [root]))  # from_pretrained records the folder it read
    assert loaded.transformer.config.get("_name_or_path")
    again = save_model(tmp_path / "again", loaded.transformer, loaded.vae, "tiny")
    for part in ("transformer", "vae"):
        config = json.loads((again / part / "config.json").read_text())
        assert "_name_or_path" not in config and str(root) not in json.dumps(config)
    assert torch.equal(forward(load_model(resolve_model("again", [tmp_path]))), forward(loaded))
