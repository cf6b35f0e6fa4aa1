"""A widened decoder decodes as the one it came from, trains its new channels apart, and keeps the encoder."""

import pytest
import torch
from accelerate.state import AcceleratorState

from core.models.vae import build_vae, encode_video, load_vae_folder
from training.config import parse_recipe
from training.datasets import build_dataset
from training.export import load_vae
from training.ship import check_same_latent_space
from training.vae_trainer import VAETrainer, decode_for_training
from training.vae_widen import channel_map, widen_decoder


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


def _perturbed(preset: str) -> torch.nn.Module:
    """A VAE whose norms have non-trivial gains and offsets, as a trained one has (fresh ones are 1 and 0)."""
    vae = build_vae(preset)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith((".gamma", ".bias")):
                p.add_(0.3 * torch.randn(p.shape, generator=generator))
    return vae


@pytest.mark.parametrize(("preset", "width"), [("small", 64), ("small", 48), ("tiny", 16)])
def test_widened_decoder_decodes_as_before(preset, width):
    vae = _perturbed(preset)
    wide = widen_decoder(vae, width)
    assert wide.config.decoder_base_dim == width
    assert sum(p.numel() for p in wide.decoder.parameters()) > 1.5 * sum(p.numel() for p in vae.decoder.parameters())
    latents = torch.randn(1, vae.config.z_dim, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, after = decode_for_training(vae, latents), decode_for_training(wide, latents)
    assert before.abs().max() > 0.1  # a decoder that says something
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    for name, p in vae.named_parameters():  # everything but the decoder is copied as is
        if not name.startswith("decoder."):
            assert torch.equal(p, dict(wide.named_parameters())[name]), name


def test_new_channels_learn_apart_from_the_ones_they_copy():
    vae = _perturbed("small")
    wide = widen_decoder(vae, 64).train()
    optimizer = torch.optim.SGD(wide.decoder.parameters(), lr=1e-2)
    latents = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    target = torch.rand(1, 3, 5, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    for _ in range(2):
        optimizer.zero_grad()
        (decode_for_training(wide, latents) - target).pow(2).mean().backward()
        optimizer.step()
    conv = wide.decoder.mid_block.resnets[0].conv1.weight  # 128 output channels, 64 of them copies
    copies = channel_map(64, 128)
    assert not torch.allclose(conv[64:], conv[copies[64:]])


def test_channel_map_copies_whole_groups_and_refuses_narrowing():
    assert channel_map(8, 16).tolist() == list(range(8)) + list(range(8))
    assert channel_map(8, 12).tolist() == list(range(8)) + [0, 1, 2, 3]
    with pytest.raises(ValueError, match="multiples of 4"):
        channel_map(8, 6)
    with pytest.raises(ValueError, match="decoder_base_dim"):
        widen_decoder(build_vae("tiny"), 4)  # narrower than its 8
    with pytest.raises(ValueError, match="decoder_base_dim"):
        widen_decoder(build_vae("tiny"), 10)


def test_recipe_widens_the_decoder_and_the_result_ships_with_the_same_encoder(tmp_path):
    base = tmp_path / "base"
    _perturbed("small").save_pretrained(base, safe_serialization=True)
    recipe = parse_recipe({
        "kind": "vae", "name": "vae-wide", "output_dir": str(tmp_path / "run"),
        "model": {"preset": "small", "init_from": str(base), "decoder_only": True, "decoder_base_dim": 48},
        "data": {"batch_size": 1, "options": {"length": 2}}, "optim": {"learning_rate": 1e-3, "warmup_steps": 0},
        "checkpoint": {"interval": 100}, "stages": [{"steps": 1, "width": 32, "height": 32, "frames": 5}],
    })  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    VAETrainer(recipe).train()
    tuned = load_vae(str(tmp_path / "run" / "vae"))
    assert tuned.config.decoder_base_dim == 48
    assert tuned.decoder.conv_in.weight.shape[0] == 96
    check_same_latent_space(base, tmp_path / "run" / "vae")  # what training.ship requires of a refined VAE
    video = build_dataset("synthetic", width=32, height=32, num_frames=5, seed=1, options={"length": 1})[0]["video"]
    assert torch.equal(encode_video(tuned, video[None]), encode_video(load_vae_folder(base), video[None]))


def test_decoder_base_dim_needs_decoder_only():
    stages = [{"steps": 1, "width": 32, "height": 32, "frames": 1}]
    with pytest.raises(ValueError, match="model.decoder_base_dim"):
        parse_recipe({"kind": "vae", "name": "x", "output_dir": "x", "stages": stages,
                      "model": {"preset": "small", "init_from": "kelp-small", "decoder_base_dim": 64}})
    with pytest.raises(ValueError, match="decoder_base_dim"):
        parse_recipe({"kind": "vae", "name": "x", "output_dir": "x", "stages": stages,
                      "model": {"preset": "small", "init_from": "kelp-small", "decoder_only": True,
                                "decoder_base_dim": "wide"}})
