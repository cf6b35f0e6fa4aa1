"""Recipes: the shipped TOML files parse, and bad values are refused with the field and its value named."""

import dataclasses
from pathlib import Path

import pytest

from training.config import Recipe, Stage, TaskRatios, load_recipe, parse_recipe

RECIPES = Path(__file__).resolve().parents[2] / "training" / "recipes"


def minimal(**changes) -> dict:
    table = {"name": "t", "output_dir": "out", "stages": [{"steps": 2, "width": 32, "height": 32, "frames": 5}]}
    table.update(changes)
    return table


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPES.glob("*.toml")))
def test_shipped_recipes_parse(name):
    recipe = load_recipe(RECIPES / f"{name}.toml")
    assert isinstance(recipe, Recipe) and recipe.total_steps > 0
    assert all(isinstance(stage, Stage) for stage in recipe.stages)


def test_every_recipe_is_parsed_by_the_test_above():
    assert {p.stem for p in RECIPES.glob("*.toml")} >= {"tiny-smoke", "small-cpu", "small-gpu", "vae-small",
                                                        "vae-small-decoder"}


def test_decoder_recipe_refines_the_vae_that_the_dit_recipes_encode_with():
    decoder = load_recipe(RECIPES / "vae-small-decoder.toml")
    assert decoder.model.decoder_only and decoder.model.init_from == "runs/vae-small/vae"
    assert load_recipe(RECIPES / "small-cpu.toml").model.vae_from == decoder.model.init_from


def test_small_recipes_go_from_images_to_17_frame_128px_video():
    for name in ("small-cpu", "small-gpu"):
        stages = load_recipe(RECIPES / f"{name}.toml").stages
        assert stages[0].frames == 1 and stages[-1].frames == 17
        assert (stages[-1].width, stages[-1].height) == (128, 128)
        assert [s.frames for s in stages] == sorted(s.frames for s in stages)


def test_defaults_and_overrides():
    recipe = load_recipe(RECIPES / "tiny-smoke.toml", output_dir="/tmp/elsewhere")
    assert recipe.output_dir == "/tmp/elsewhere"
    assert recipe.stages[1].tasks.as_dict() == dict.fromkeys(recipe.stages[1].tasks.as_dict(), 1.0)
    plain = parse_recipe(minimal())
    assert plain.stages[0].tasks == TaskRatios() and plain.lora is None and plain.flow.shift is None
    assert plain.batch_size(plain.stages[0]) == plain.data.batch_size
    assert plain.stage_at(1) == (0, plain.stages[0], 0)


def test_settings_are_frozen_and_keyword_only():
    recipe = parse_recipe(minimal())
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.seed = 3
    with pytest.raises(TypeError):
        Stage(2, 32, 32, 5)


@pytest.mark.parametrize(
    "changes, field, value",
    [
        ({"stages": [{"steps": 2, "width": 32, "height": 32, "frames": 10}]}, "stages[0].frames", "10"),
        ({"stages": [{"steps": 2, "width": 30, "height": 32, "frames": 5}]}, "stages[0].width", "30"),
        ({"stages": [{"steps": 2, "width": 32, "height": 32, "frames": 1, "tasks": {"i2v": 0.5}}]},
         "stages[0].tasks.i2v", "0.5"),
        ({"stages": [{"steps": 2, "width": 32, "height": 32, "frames": 5, "tasks": {"first_last": 1.0}}]},
         "stages[0].tasks.first_last", "1.0"),
        ({"stages": []}, "stages", "()"),
        ({"data": {"bath_size": 4}}, "data.bath_size", "4"),
        ({"data": {"batch_size": 0}}, "data.batch_size", "0"),
        ({"data": {"prefetch_workers": -1, "cache_latents": True}}, "data.prefetch_workers", "-1"),
        ({"data": {"prefetch_workers": 4}}, "data.prefetch_workers", "4"),  # without cache_latents
        ({"model": {"text_encoder_path": ""}}, "model.text_encoder_path", "''"),
        ({"optim": {"learning_rate": "fast"}}, "optim.learning_rate", "'fast'"),
        ({"optim": {"lr_schedule": "linear"}}, "optim.lr_schedule", "'linear'"),
        ({"optim": {"ema_decay": 1.0}}, "optim.ema_decay", "1.0"),
        ({"model": {"mixed_precision": "fp8"}}, "model.mixed_precision", "'fp8'"),
        ({"model": {"preset": "huge"}}, "model.preset", "'huge'"),
        ({"lora": {"rank": 4}}, "model.init_from", "None"),
        ({"kind": "vae", "model": {"preset": "small"}, "lora": {}}, "lora", "'[lora]'"),
        ({"kind": "gan"}, "kind", "'gan'"),
        ({"validation": {"interval": 10}}, "validation.prompts", "()"),
    ],
)
def test_bad_values_name_the_field_and_value(changes, field, value):
    with pytest.raises(ValueError) as raised:
        parse_recipe(minimal(**changes))
    assert f"`{field}`" in str(raised.value) and value in str(raised.value)


def test_load_recipe_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\noutput_dir = "o"\nseed = -1\n'
                    '[[stages]]\nsteps = 1\nwidth = 32\nheight = 32\nframes = 1\n')
    with pytest.raises(ValueError, match=r"bad\.toml: `seed` must be an int >= 0, got -1"):
        load_recipe(path)
    path.write_text("name = ")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_recipe(path)
    with pytest.raises(ValueError, match="could not be read"):
        load_recipe(tmp_path / "missing.toml")


def test_wsd_schedule_warms_up_holds_then_decays_to_zero_and_resumes():
    import torch

    from training.config import OptimSettings
    from training.run_setup import build_optimizer

    optim = OptimSettings(learning_rate=1e-3, lr_schedule="wsd", warmup_steps=10, decay_steps=20)
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer, scheduler = build_optimizer(params, optim, total_steps=100)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == 0 and rates[5] == pytest.approx(5e-4)  # linear warm-up
    assert rates[10:80] == [pytest.approx(1e-3)] * 70  # stable
    assert 0 < rates[90] < rates[85] < 1e-3 and rates[-1] < 2e-5  # cosine down to ~0 over the last 20
    state = scheduler.state_dict()
    optimizer2, scheduler2 = build_optimizer(params, optim, total_steps=100)
    scheduler2.load_state_dict(state)
    assert scheduler2.get_last_lr() == scheduler.get_last_lr()
    with pytest.raises(ValueError, match="must not exceed the recipe's 25 steps"):
        build_optimizer(params, optim, total_steps=25)
    with pytest.raises(ValueError, match="`decay_steps`"):
        OptimSettings(lr_schedule="cosine", decay_steps=5)
