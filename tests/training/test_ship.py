"""Shipping a trained model folder into assets/: float16 storage, the same model after loading, a size budget, and
an atomic replace that keeps the old folder when anything is wrong."""

import json

import pytest
import torch
from safetensors.torch import load_file

from core.model_loader import load_model, resolve_model, save_model
from core.models.presets import GenerationDefaults
from training.ship import main, ship_model


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory):
    model = load_model(resolve_model("random:tiny:3"))
    folder = tmp_path_factory.mktemp("runs") / "model"
    defaults = GenerationDefaults(width=32, height=32, num_frames=5, steps=2, shift_base_tokens=12, max_frames=33)
    save_model(folder, model.transformer, model.vae, "tiny", defaults)
    return folder, model


def forward(model):
    torch.manual_seed(0)
    x, text = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 5, 384)  # (B, C, T, h, w), (B, L, D)
    with torch.no_grad():
        return model.transformer(x, torch.tensor([500.0]), text).sample


def folder_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors"))


def test_shipped_weights_are_float16_and_load_as_the_same_model(trained_folder, tmp_path):
    folder, original = trained_folder
    shipped = ship_model(str(folder), name="kelp-test", assets_dir=tmp_path)
    assert shipped == tmp_path / "kelp-test"
    for path in shipped.rglob("*.safetensors"):
        assert {t.dtype for t in load_file(path).values() if t.is_floating_point()} == {torch.float16}
    assert folder_bytes(shipped) < 0.55 * folder_bytes(folder)
    assert json.loads((shipped / "kelp_model.json").read_text()) == json.loads((folder / "kelp_model.json").read_text())
    loaded = load_model(resolve_model("kelp-test", [tmp_path]))
    assert loaded.transformer.dtype == torch.float32  # stored in float16, run in the engine's dtype
    a, b = forward(loaded), forward(original)
    assert not torch.equal(a, b)  # the weights really were rounded...
    assert (a - b).abs().max() < 1e-2 * b.abs().max()  # ...to float16 precision only
    latents = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded.vae.decode(latents).sample, original.vae.decode(latents).sample, atol=1e-2)


def test_over_budget_or_bad_input_keeps_the_old_folder(trained_folder, tmp_path):
    folder, _ = trained_folder
    ship_model(str(folder), name="kelp-test", assets_dir=tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "kelp-test").rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"over `max_mb` 0.001"):
        ship_model(str(folder), name="kelp-test", assets_dir=tmp_path, max_mb=0.001)
    with pytest.raises(ValueError, match=r"`name` must be a plain folder name, got '../x'"):
        ship_model(str(folder), name="../x", assets_dir=tmp_path)
    with pytest.raises(ValueError, match="random weights"):
        ship_model("random:tiny", name="kelp-test", assets_dir=tmp_path)
    after = {p.name: p.read_bytes() for p in (tmp_path / "kelp-test").rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kelp-test"]  # no temporary folders left behind


def test_cli_reports_errors_with_exit_status_2(trained_folder, tmp_path, capsys):
    folder, _ = trained_folder
    assert main(["--model", str(folder), "--name", "kelp-test", "--assets-dir", str(tmp_path)]) == 0
    assert "kelp-test" in capsys.readouterr().out
    assert main(["--model", str(tmp_path / "nope"), "--assets-dir", str(tmp_path)]) == 2
    assert "is not a model folder" in capsys.readouterr().err


def perturbed_vae(source, folder, prefix: str | tuple[str, ...]):
    """A copy of `source`'s VAE folder with the weights under `prefix` (one or several) changed."""
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "config.json").write_bytes((source / "vae" / "config.json").read_bytes())
    weights = load_file(next((source / "vae").glob("*.safetensors")))
    weights = {k: v + 0.01 if k.startswith(prefix) else v for k, v in weights.items()}
    save_file(weights, folder / "diffusion_pytorch_model.safetensors")
    return folder, weights


def test_a_refined_decoder_ships_in_place_of_the_models_vae(trained_folder, tmp_path):
    folder, _ = trained_folder
    refined, weights = perturbed_vae(folder, tmp_path / "refined", "decoder.")
    shipped = ship_model(str(folder), name="kelp-test", assets_dir=tmp_path / "assets", vae=refined)
    shipped_vae = load_file(next((shipped / "vae").glob("*.safetensors")))
    assert set(shipped_vae) == set(weights)
    for key, value in weights.items():  # the refined weights, rounded to float16
        assert torch.allclose(shipped_vae[key].float(), value, atol=1e-3), key
    original = load_file(next((folder / "vae").glob("*.safetensors")))
    assert not torch.allclose(shipped_vae["decoder.conv_out.weight"].float(), original["decoder.conv_out.weight"],
                              atol=1e-3)


def test_a_refined_encoder_ships_and_a_vae_with_both_halves_changed_is_refused(trained_folder, tmp_path):
    folder, _ = trained_folder
    encoder, weights = perturbed_vae(folder, tmp_path / "encoder", "encoder.")
    shipped = ship_model(str(folder), name="kelp-encoder", assets_dir=tmp_path / "shipped", vae=encoder)
    shipped_vae = load_file(next((shipped / "vae").glob("*.safetensors")))
    assert torch.allclose(shipped_vae["encoder.conv_in.weight"].float(), weights["encoder.conv_in.weight"], atol=1e-3)
    both, _ = perturbed_vae(folder, tmp_path / "both", ("encoder.", "decoder."))
    with pytest.raises(ValueError, match=r"both encodes and decodes differently .*\(encoder\..* and decoder\..*\)"):
        ship_model(str(folder), name="kelp-test", assets_dir=tmp_path / "assets", vae=both)
    assert not (tmp_path / "assets").exists() or not any((tmp_path / "assets").iterdir())
