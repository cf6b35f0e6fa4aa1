"""LoRA training: only the adapter learns, it is saved alone, and loads onto the base model with a strength."""

import json

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors import safe_open
from safetensors.torch import save_file

from core.lora import load_lora, read_lora_info
from core.model_loader import load_model, resolve_model
from training.config import parse_recipe
from training.dit_trainer import DiTTrainer

BASE = "random:tiny"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output = tmp_path_factory.mktemp("lora") / "run"
    recipe = parse_recipe({
        "name": "squares", "output_dir": str(output), "model": {"preset": "tiny", "init_from": BASE},
        "data": {"batch_size": 2, "options": {"length": 8}}, "optim": {"learning_rate": 1e-2, "warmup_steps": 0,
                                                                     "ema_decay": 0.0},
        "lora": {"rank": 4, "alpha": 8.0, "trigger_words": ["sqr"]}, "checkpoint": {"interval": 100},
        "stages": [{"steps": 3, "width": 32, "height": 32, "frames": 5, "tasks": {"t2v": 1.0, "i2v": 1.0}}],
    })  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    trainer = DiTTrainer(recipe)
    before = {name: p.detach().clone() for name, p in trainer.transformer.named_parameters()}
    trainer.train()
    return trainer, before, output / "lora" / "squares.safetensors"


def inputs():
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(1, 4, 2, 4, 4, generator=generator), torch.tensor([500.0]),
            torch.randn(1, 6, 384, generator=generator))


def test_only_lora_weights_train_and_they_stay_float32(trained):
    trainer, before, _ = trained
    for name, param in trainer.transformer.named_parameters():
        if "lora_" in name:
            assert param.requires_grad and param.dtype == torch.float32
        else:
            assert not param.requires_grad and torch.equal(param, before[name]), name
    assert any(not torch.equal(p, before[n]) for n, p in trainer.transformer.named_parameters() if "lora_B" in n)


def test_the_file_holds_only_lora_weights_and_the_json_describes_them(trained):
    trainer, _, path = trained
    with safe_open(path, framework="pt") as handle:
        keys, header = list(handle.keys()), handle.metadata()
    assert keys and all(k.startswith("transformer.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    lora_modules = {k.rsplit(".lora_", 1)[0] for k in keys}
    assert len(keys) == 2 * len(lora_modules)
    assert {m.rsplit(".", 1)[-1] for m in lora_modules} >= {"to_q", "to_k", "to_v", "to_out", "to_add_out", "proj"}
    assert json.loads(header["lora_adapter_metadata"])["transformer.r"] == 4
    info = read_lora_info(path)
    assert info["base_model"] == BASE and info["rank"] == 4 and info["alpha"] == 8.0
    assert info["base_weights_sha256"] == load_model(resolve_model(BASE)).weights_hash
    assert info["trigger_words"] == ["sqr"] and "ff_context.net.2" in info["targets"]
    assert path.stat().st_size < 200_000  # the adapter alone, not the model


@pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute")  # two adapters, on purpose
def test_strength_0_is_the_base_model_and_strength_1_the_trained_one(trained):
    trainer, _, path = trained
    x, t, text = inputs()
    with torch.no_grad():
        expected_trained = trainer.transformer.eval()(x, t, text).sample
        base = load_model(resolve_model(BASE)).transformer
        expected_base = base(x, t, text).sample
        load_lora(base, path, strength=0.0)
        assert torch.equal(base(x, t, text).sample, expected_base)
        full = load_model(resolve_model(BASE)).transformer
        load_lora(full, path, strength=1.0)
        assert torch.equal(full(x, t, text).sample, expected_trained)
        strong = load_model(resolve_model(BASE)).transformer
        load_lora(strong, path, strength=2.0, adapter_name="strong")
        doubled = strong(x, t, text).sample
        assert not torch.equal(doubled, expected_trained) and strong.active_adapters() == ["strong"]
        load_lora(strong, path, strength=0.0, adapter_name="second")  # keeps the first at its strength
        assert torch.equal(strong(x, t, text).sample, doubled)


def test_load_lora_refuses_other_files(tmp_path, trained):
    _, _, path = trained
    model = load_model(resolve_model(BASE)).transformer
    save_file({"transformer.proj_out.weight": torch.zeros(16, 32)}, tmp_path / "full.safetensors")
    with pytest.raises(ValueError, match="not transformer LoRA weights"):
        load_lora(model, tmp_path / "full.safetensors")
    with pytest.raises(ValueError, match="must be an existing .safetensors file"):
        load_lora(model, tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="`strength` must be a finite number"):
        load_lora(model, path, strength=float("nan"))
