"""Foreground-weighted flow matching: the toy world marks its objects, the batch puts the marks on the latent grid,
and the loss counts those positions more by the recipe's `flow.foreground_weight`."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState

from core.models.presets import MODEL_PRESETS
from core.models.vae import build_vae
from core.text.encoder import build_text_encoder
from training.config import load_recipe, parse_recipe
from training.data.toy_world.clips import toy_clip
from training.data.toy_world.dataset import ToyShotsDataset, ToyWorldDataset
from training.data.toy_world.render import object_coverage
from training.data.toy_world.vocabulary import COLOURS
from training.dit_trainer import DiTTrainer
from training.flow_matching import foreground_strengths, foreground_weights, masked_mse
from training.tasks import BatchBuilder, latent_grid_coverage


def test_coverage_marks_exactly_the_pixels_the_objects_are_drawn_on():
    clip = next(c for c in map(toy_clip, range(50)) if c.truth.kind == "shape" and c.truth.background == "black")
    coverage = object_coverage(clip.truth)
    assert coverage.shape == clip.frames.shape[:3] and coverage.dtype == np.float32
    assert 0.0 <= coverage.min() and coverage.max() == pytest.approx(1.0)
    colour = np.asarray(COLOURS[clip.truth.objects[0].colour])
    full, empty = coverage >= 0.999, coverage == 0
    assert full.sum() > 20 and np.abs(clip.frames[full].astype(int) - colour).max() <= 1
    assert np.abs(clip.frames[empty].astype(int) - colour).sum(axis=1).min() > 30  # the black background


def test_toy_items_carry_their_coverage_and_photo_clips_none():
    shape = ToyWorldDataset(seed=3, length=1, width=64, height=64, num_frames=9, kind="shape")[0]
    photo = ToyWorldDataset(seed=3, length=1, width=64, height=64, num_frames=9, kind="photo")[0]
    assert shape["foreground"].shape == (9, 64, 64) and shape["foreground"].max() > 0.99
    assert torch.equal(photo["foreground"], torch.zeros(9, 64, 64))
    shots = ToyShotsDataset(seed=1, length=1, width=64, height=64, kind="shape")[0]["shots"]
    assert all(s["foreground"].shape == (s["video"].shape[1], 64, 64) and s["foreground"].max() > 0.99 for s in shots)


def test_coverage_goes_onto_the_latent_grid_as_the_vae_groups_frames():
    coverage = torch.zeros(9, 32, 32)
    coverage[0, 3, 3] = 0.5  # frame 0 is latent frame 0 alone
    coverage[5, 20, 9] = 1.0  # frames 5-8 are latent frame 2
    grid = latent_grid_coverage(coverage, "item", (9, 32, 32))
    assert grid.shape == (1, 3, 4, 4)
    assert grid[0, 0, 0, 0] == 0.5 and grid[0, 2, 2, 1] == 1.0 and grid.sum() == 1.5
    with pytest.raises(ValueError, match=r"item: `foreground` must be \(9, 32, 32\).*\(9, 32, 16\)"):
        latent_grid_coverage(torch.zeros(9, 32, 16), "item", (9, 32, 32))


def test_weights_favour_the_subject_by_the_strength_and_average_one_per_clip():
    foreground = torch.zeros(2, 1, 2, 4, 4)
    foreground[0, :, :, :2, :2] = 1.0  # clip 0 has a subject, clip 1 none
    weights = foreground_weights(foreground, 4.0)
    assert weights.mean(dim=(1, 2, 3, 4)).tolist() == pytest.approx([1.0, 1.0])
    assert weights[0, 0, 0, 0, 0] / weights[0, 0, 0, 3, 3] == pytest.approx(5.0)
    assert torch.equal(weights[1], torch.ones_like(weights[1]))
    assert torch.equal(foreground_weights(foreground, 0.0), torch.ones_like(foreground))


def test_weighted_loss_counts_errors_on_the_subject_more():
    target = torch.zeros(1, 4, 2, 4, 4)
    given = torch.zeros(1, 1, 2, 4, 4)
    foreground = torch.zeros(1, 1, 2, 4, 4)
    foreground[..., 0, 0] = 1.0
    on_subject, on_background = target.clone(), target.clone()
    on_subject[..., 0, 0] = 1.0
    on_background[..., 3, 3] = 1.0
    weights = foreground_weights(foreground, 4.0)
    plain = masked_mse(on_subject, target, given)
    assert masked_mse(on_subject, target, given, torch.ones_like(weights)) == pytest.approx(plain.item())
    weighted = masked_mse(on_subject, target, given, weights)
    assert masked_mse(on_subject, target, given, weights * 3) == pytest.approx(weighted.item())
    assert weighted > plain > masked_mse(on_background, target, given, weights)


@pytest.fixture(scope="module")
def builder():
    preset = MODEL_PRESETS["tiny"]
    torch.manual_seed(0)
    return BatchBuilder(vae=build_vae(preset.vae).eval(), text_encoder=build_text_encoder(preset.text_encoder),
                        caption_dropout=0.0, cache_latents=True)


def test_batches_carry_the_foreground_for_single_and_multi_shot_samples(builder):
    size = (9, 64, 64)
    clips = ToyWorldDataset(seed=3, length=2, width=64, height=64, num_frames=9, kind="shape")
    photo = ToyWorldDataset(seed=3, length=1, width=64, height=64, num_frames=9, kind="photo")
    items = [clips[0], photo[0], {"video": clips[1]["video"], "caption": "no foreground given"}]
    batch = builder.single(items, [("a", 0), ("b", 0), ("c", 0)], ["t2v"] * 3, size, torch.Generator())
    assert batch.foreground.shape == batch.latents[:, :1].shape
    expected = latent_grid_coverage(clips[0]["foreground"], "item", size)
    assert torch.equal(batch.foreground[0], expected) and expected.max() == 1.0
    assert batch.foreground[1:].abs().sum() == 0
    again = builder.single([], [("a", 0)], ["t2v"], size, torch.Generator())  # from the cache, no item read
    assert torch.equal(again.foreground[0], expected)
    multi = ToyShotsDataset(seed=1, length=1, width=64, height=64, kind="shape", shot_frames=(5, 5))[0]
    shots = builder.multishot([multi], [("m", 0)], size, torch.Generator())
    assert shots.foreground.shape == shots.latents[:, :1].shape == (1, 1, 4, 8, 8)
    first = latent_grid_coverage(multi["shots"][0]["foreground"], "item", (5, 64, 64))
    assert torch.equal(shots.foreground[0, :, :2], first)


def test_the_weight_applies_only_up_to_the_noise_cutoff():
    sigmas = torch.tensor([0.1, 0.5, 0.51, 0.9])
    strengths = foreground_strengths(sigmas, 4.0, 0.5)
    assert strengths.tolist() == [4.0, 4.0, 0.0, 0.0]
    foreground = torch.zeros(4, 1, 2, 4, 4)
    foreground[:, :, :, :2, :2] = 1.0
    weights = foreground_weights(foreground, strengths)
    assert torch.equal(weights[2:], torch.ones_like(weights[2:]))  # above the cutoff: the plain loss
    assert torch.equal(weights[0], foreground_weights(foreground[:1], 4.0)[0])
    assert weights[0, 0, 0, 0, 0] == pytest.approx(5 * weights[0, 0, 0, 3, 3].item())


def test_recipe_checks_the_weight():
    table = {"name": "x", "output_dir": "out", "stages": [{"steps": 1, "width": 64, "height": 64, "frames": 1}]}
    assert parse_recipe({**table, "flow": {"foreground_weight": 4.0}}).flow.foreground_weight == 4.0
    with pytest.raises(ValueError, match="foreground_weight.*-1"):
        parse_recipe({**table, "flow": {"foreground_weight": -1}})
    assert parse_recipe({**table, "flow": {"foreground_max_sigma": 0.7}}).flow.foreground_max_sigma == 0.7
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match=f"foreground_max_sigma.*{bad}"):
            parse_recipe({**table, "flow": {"foreground_max_sigma": bad}})


def test_trainer_loss_uses_the_weight_only_where_items_mark_a_subject(tmp_path):
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "training" / "recipes" / "tiny-smoke.toml",
                         output_dir=str(tmp_path / "run"))

    def losses(source: str, options: dict, max_sigma: float = 1.0) -> list[float]:
        """The same batch's loss, from the same weights and noise, with foreground_weight 0 and 4."""
        values = []
        for strength in (0.0, 4.0):
            AcceleratorState._reset_state(reset_partial_state=True)
            trainer = DiTTrainer(dataclasses.replace(
                recipe, data=dataclasses.replace(recipe.data, source=source, options=options),
                flow=dataclasses.replace(recipe.flow, foreground_weight=strength, foreground_max_sigma=max_sigma)))
            trainer._enter_stage(1)
            trainer.ratios = {name: float(name == "t2v") for name in trainer.ratios}
            batch = trainer.next_batch(recipe.stages[1])
            with torch.no_grad():
                values.append(trainer.loss(batch).item())
        return values

    plain, weighted = losses("toy_world", {"length": 4, "kind": "shape"})
    assert weighted != pytest.approx(plain, rel=1e-3)
    plain, weighted = losses("synthetic", {"length": 4})  # its items give no foreground
    assert weighted == pytest.approx(plain, rel=1e-6)
    plain, weighted = losses("toy_world", {"length": 4, "kind": "shape"}, max_sigma=1e-6)  # every sample above it
    assert weighted == pytest.approx(plain, rel=1e-6)


def test_without_the_cache_the_maps_are_used_once_and_not_kept(builder):
    uncached = BatchBuilder(vae=builder.vae, text_encoder=builder.captions.encoder, caption_dropout=0.0,
                            cache_latents=False)
    item = ToyWorldDataset(seed=3, length=1, width=64, height=64, num_frames=9, kind="shape")[0]
    batch = uncached.single([item, item], [("a", 0), ("a", 0)], ["t2v"] * 2, (9, 64, 64), torch.Generator())
    assert batch.foreground[0].max() == 1.0 and torch.equal(batch.foreground[0], batch.foreground[1])
    assert uncached._foregrounds == {}
