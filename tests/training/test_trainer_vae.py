"""VAE training in the bundled model's VAE layout (residual, patch-folded) on 32x32 frames: images then clips, the
GAN term from its start step, and latent statistics that make the engine's normalized latents about unit variance."""

import csv
import math

import pytest
import torch
from accelerate.state import AcceleratorState

from core.models.vae import encode_video
from training.config import parse_recipe
from training.datasets import build_dataset
from training.export import load_vae
from training.vae_losses import PatchDiscriminator3D, edge_loss, ssim, structural_loss
from training.vae_trainer import VAETrainer


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output = tmp_path_factory.mktemp("vae") / "run"
    recipe = parse_recipe({
        "kind": "vae", "name": "vae-small", "output_dir": str(output), "model": {"preset": "small"},
        "data": {"batch_size": 2, "options": {"length": 6}}, "optim": {"learning_rate": 1e-3, "warmup_steps": 1,
                                                                     "ema_decay": 0.5},
        "vae_loss": {"adversarial": 0.1, "adversarial_start": 2, "latent_stats_samples": 6},
        "checkpoint": {"interval": 100},
        "stages": [{"steps": 2, "width": 32, "height": 32, "frames": 1},
                   {"steps": 2, "width": 32, "height": 32, "frames": 5}],
    })  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    trainer = VAETrainer(recipe)
    before = {name: p.detach().clone() for name, p in trainer.vae.named_parameters()}
    trainer.train()
    return trainer, before, output


def test_training_logs_every_loss_and_starts_the_gan_on_time(trained):
    trainer, before, output = trained
    rows = list(csv.DictReader(open(output / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert all(math.isfinite(float(row[k])) for k in ("loss", "l1", "kl", "ssim", "edge", "psnr"))
    assert [bool(r["disc"]) for r in rows] == [False, False, True, True]
    changed = sum(not torch.equal(p, before[n]) for n, p in trainer.vae.named_parameters())
    assert changed == len(before)
    assert (output / "checkpoints" / "step-000004" / "state.json").is_file()


def test_exported_vae_normalizes_training_latents_to_unit_variance(trained):
    _, _, output = trained
    vae = load_vae(str(output / "vae"))
    assert len(vae.config.latents_mean) == len(vae.config.latents_std) == 16
    data = build_dataset("synthetic", width=32, height=32, num_frames=5, seed=0, options={"length": 6})
    latents = encode_video(vae, torch.stack([data[i]["video"] for i in range(6)]))  # (6, 16, 2, 4, 4)
    assert torch.allclose(latents.mean(dim=(0, 2, 3, 4)), torch.zeros(16), atol=1e-3)
    assert torch.allclose(latents.std(dim=(0, 2, 3, 4), unbiased=False), torch.ones(16), atol=1e-3)


def test_structural_losses():
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    assert ssim(video[:, :, 0], video[:, :, 0]).item() == pytest.approx(1.0, abs=1e-5)
    assert structural_loss(video, video).item() == pytest.approx(0.0, abs=1e-5)
    blurred = torch.nn.functional.avg_pool3d(video, (1, 3, 3), 1, (0, 1, 1))
    assert structural_loss(blurred, video) > 0.1 and edge_loss(blurred, video) > edge_loss(video, video) == 0


def test_patch_discriminator_scores_images_and_clips():
    disc = PatchDiscriminator3D(channels=8)
    assert disc(torch.zeros(2, 3, 1, 32, 32)).shape == (2, 1, 1, 4, 4)
    assert disc(torch.zeros(1, 3, 5, 32, 32)).shape == (1, 1, 5, 4, 4)


def _half_refined(init_from, output_dir, **model_flags):
    """`init_from`'s VAE and the VAE that 2 steps of a recipe with `model_flags` (decoder_only or encoder_only) export."""
    recipe = parse_recipe({
        "kind": "vae", "name": "vae-half", "output_dir": str(output_dir),
        "model": {"preset": "small", "init_from": str(init_from), **model_flags},
        "data": {"batch_size": 2, "options": {"length": 6}}, "optim": {"learning_rate": 1e-3, "warmup_steps": 0},
        "vae_loss": {"kl": 0.0, "latent_stats_samples": 6},
        "checkpoint": {"interval": 100}, "stages": [{"steps": 2, "width": 32, "height": 32, "frames": 5}],
    })  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    VAETrainer(recipe).train()
    return load_vae(str(init_from)), load_vae(str(output_dir / "vae"))


def test_decoder_only_training_keeps_the_latents_and_changes_the_decoder(trained, tmp_path):
    _, _, output = trained
    base, tuned = _half_refined(output / "vae", tmp_path / "run", decoder_only=True)
    assert tuned.config.latents_mean == base.config.latents_mean  # not re-measured: the same encoder
    assert tuned.config.latents_std == base.config.latents_std
    video = build_dataset("synthetic", width=32, height=32, num_frames=5, seed=1, options={"length": 1})[0]["video"]
    assert torch.equal(encode_video(tuned, video[None]), encode_video(base, video[None]))  # the DiT's inputs
    changed = {n for n, p in tuned.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])}
    assert changed and all(n.startswith(("decoder.", "post_quant_conv.")) for n in changed)
    assert any(n.startswith("decoder.") for n in changed)


def test_decoder_only_needs_a_vae_to_start_from():
    with pytest.raises(ValueError, match="model.init_from"):
        parse_recipe({"kind": "vae", "name": "x", "output_dir": "x", "model": {"preset": "small", "decoder_only": True},
                      "stages": [{"steps": 1, "width": 32, "height": 32, "frames": 1}]})
    with pytest.raises(ValueError, match="model.decoder_only"):
        parse_recipe({"kind": "dit", "name": "x", "output_dir": "x", "model": {"preset": "tiny", "decoder_only": True},
                      "stages": [{"steps": 1, "width": 32, "height": 32, "frames": 1}]})


def test_encoder_only_training_keeps_the_decoder_and_the_latent_statistics(trained, tmp_path):
    _, _, output = trained
    base, tuned = _half_refined(output / "vae", tmp_path / "run", encoder_only=True)
    # the space the fixed decoder reads: init_from's statistics, not measured again on the new encoder
    assert tuned.config.latents_mean == base.config.latents_mean and tuned.config.latents_std == base.config.latents_std
    changed = {n for n, p in tuned.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])}
    assert changed and all(n.startswith(("encoder.", "quant_conv.")) for n in changed)  # a DiT's latents decode as before
    video = build_dataset("synthetic", width=32, height=32, num_frames=5, seed=1, options={"length": 1})[0]["video"]
    assert not torch.equal(encode_video(tuned, video[None]), encode_video(base, video[None]))


def test_encoder_only_needs_a_vae_to_start_from_and_trains_something():
    stages = [{"steps": 1, "width": 32, "height": 32, "frames": 1}]
    with pytest.raises(ValueError, match="model.init_from"):
        parse_recipe({"kind": "vae", "name": "x", "output_dir": "x", "model": {"preset": "small", "encoder_only": True},
                      "stages": stages})
    with pytest.raises(ValueError, match="model.encoder_only.*would train nothing"):
        parse_recipe({"kind": "vae", "name": "x", "output_dir": "x", "stages": stages,
                      "model": {"preset": "small", "init_from": "kelp-small", "encoder_only": True, "decoder_only": True}})
    with pytest.raises(ValueError, match="model.encoder_only"):
        parse_recipe({"kind": "dit", "name": "x", "output_dir": "x", "model": {"preset": "tiny", "encoder_only": True},
                      "stages": stages})


def _drift(vae, base, video) -> float:
    """RMS distance between the two VAEs' latent means for `video`, in units of `base`'s latent std."""
    std = torch.tensor(base.config.latents_std).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        means = [v.encode(video).latent_dist.mode() for v in (vae, base)]
    return ((means[0] - means[1]) / std).pow(2).mean().sqrt().item()


def _encoder_run(init_from, output_dir, latent_anchor: float) -> VAETrainer:
    recipe = parse_recipe({
        "kind": "vae", "name": "vae-encoder", "output_dir": str(output_dir), "seed": 3,
        "model": {"preset": "small", "init_from": str(init_from)},
        "data": {"batch_size": 2, "options": {"length": 6}},
        "optim": {"learning_rate": 3e-3, "warmup_steps": 0, "ema_decay": 0.0},
        "vae_loss": {"kl": 0.0, "latent_anchor": latent_anchor, "latent_stats_samples": 6},
        "checkpoint": {"interval": 100}, "stages": [{"steps": 6, "width": 32, "height": 32, "frames": 5}],
    })  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    trainer = VAETrainer(recipe)
    trainer.train()
    return trainer


def test_latent_anchor_trains_the_encoder_near_its_old_latents(trained, tmp_path):
    _, _, output = trained
    base = load_vae(str(output / "vae"))
    data = build_dataset("synthetic", width=32, height=32, num_frames=5, seed=1, options={"length": 2})
    video = torch.stack([data[i]["video"] for i in range(2)])  # (2, 3, 5, 32, 32)
    free = _encoder_run(output / "vae", tmp_path / "free", latent_anchor=0.0)
    anchored = _encoder_run(output / "vae", tmp_path / "anchored", latent_anchor=100.0)
    rows = list(csv.DictReader(open(tmp_path / "anchored" / "metrics.csv")))
    # the logged anchor term is the squared drift of the batch's latents, 0 before the encoder first moves
    assert float(rows[0]["anchor"]) == 0.0 and all(float(r["anchor"]) > 0 for r in rows[1:])
    tuned = load_vae(str(tmp_path / "anchored" / "vae"))
    assert any(not torch.equal(p, dict(base.named_parameters())[n])
               for n, p in tuned.named_parameters() if n.startswith("encoder."))  # the encoder learned
    # the latent space the transformer was trained on: init_from's statistics, not re-measured
    assert tuned.config.latents_mean == base.config.latents_mean and tuned.config.latents_std == base.config.latents_std
    free_vae = load_vae(str(tmp_path / "free" / "vae"))
    assert free_vae.config.latents_std != base.config.latents_std  # without the anchor: measured again
    assert _drift(tuned, base, video) < 0.5 * _drift(free_vae, base, video)


def test_latent_anchor_needs_an_encoder_to_anchor_to_and_to_train():
    stages = [{"steps": 1, "width": 32, "height": 32, "frames": 1}]
    with pytest.raises(ValueError, match="vae_loss.latent_anchor"):
        parse_recipe({"kind": "vae", "name": "x", "output_dir": "x", "model": {"preset": "small"},
                      "vae_loss": {"latent_anchor": 0.1}, "stages": stages})
    with pytest.raises(ValueError, match="vae_loss.latent_anchor"):
        parse_recipe({"kind": "vae", "name": "x", "output_dir": "x",
                      "model": {"preset": "small", "init_from": "kelp-small", "decoder_only": True},
                      "vae_loss": {"latent_anchor": 0.1}, "stages": stages})
    with pytest.raises(ValueError, match="latent_anchor"):
        parse_recipe({"kind": "vae", "name": "x", "output_dir": "x", "model": {"preset": "small", "init_from": "x"},
                      "vae_loss": {"latent_anchor": -1.0}, "stages": stages})
