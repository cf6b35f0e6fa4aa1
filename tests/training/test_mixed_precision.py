"""bfloat16 autocast on a CPU: a run is warned at its start where the CPU emulates bfloat16 (tens of times slower than
float32), and `--mixed-precision` replaces a recipe's precision from the command line."""

import logging
import math
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState

import training.run_setup as run_setup
from training.config import load_recipe
from training.run_setup import cpu_bfloat16_slowdown, make_accelerator
from training.train import main, with_mixed_precision

RECIPE = Path(__file__).resolve().parents[2] / "training" / "recipes" / "tiny-smoke.toml"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


@pytest.fixture
def bf16_recipe_file(tmp_path):
    """tiny-smoke with bfloat16 autocast and one image step, as the CPU recipes ask for it."""
    text = RECIPE.read_text().replace('preset = "tiny"', 'preset = "tiny"\nmixed_precision = "bf16"')
    text = text[:text.rindex("[[stages]]")].replace('name = "images"\nsteps = 2', 'name = "images"\nsteps = 1')
    path = tmp_path / "bf16.toml"
    path.write_text(text.replace('output_dir = "runs/tiny-smoke"', f'output_dir = "{tmp_path / "run"}"'))
    return path


@pytest.fixture
def fresh_accelerate():
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_the_probe_times_both_precisions_and_leaves_the_generators_alone():
    state = torch.get_rng_state()
    slowdown = cpu_bfloat16_slowdown(repeats=1)
    assert math.isfinite(slowdown) and slowdown > 0
    assert torch.equal(torch.get_rng_state(), state)  # exact resume depends on the generators' states


@pytest.mark.usefixtures("fresh_accelerate")
@pytest.mark.parametrize("slowdown, warned", [(40.0, True), (0.6, False)])
def test_a_bf16_run_is_warned_only_where_bfloat16_is_slow(bf16_recipe_file, monkeypatch, caplog, slowdown, warned):
    monkeypatch.setattr(run_setup, "cpu_bfloat16_slowdown", lambda: slowdown)
    with caplog.at_level(logging.WARNING, logger="training"):
        make_accelerator(load_recipe(bf16_recipe_file))
    assert ("takes 40x as long as a float32 one" in caplog.text and "--mixed-precision no" in caplog.text) == warned


@pytest.mark.usefixtures("fresh_accelerate")
def test_a_float32_run_does_not_probe(bf16_recipe_file, monkeypatch):
    def probe():
        raise AssertionError("a float32 run timed bfloat16")

    monkeypatch.setattr(run_setup, "cpu_bfloat16_slowdown", probe)
    make_accelerator(with_mixed_precision(load_recipe(bf16_recipe_file), "no"))


def test_the_command_line_replaces_the_recipes_precision_only(bf16_recipe_file):
    recipe = load_recipe(bf16_recipe_file)
    replaced = with_mixed_precision(recipe, "no")
    assert recipe.model.mixed_precision == "bf16" and replaced.model.mixed_precision == "no"
    assert replaced.model.preset == recipe.model.preset and replaced.stages == recipe.stages
    assert with_mixed_precision(recipe, None) is recipe
    with pytest.raises(ValueError, match="`mixed_precision` must be one of .*got 'fp8'"):
        with_mixed_precision(recipe, "fp8")


@pytest.mark.usefixtures("fresh_accelerate")
def test_a_run_with_mixed_precision_no_trains_unwarned_in_float32(bf16_recipe_file, monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(run_setup, "cpu_bfloat16_slowdown", lambda: 40.0)
    with caplog.at_level(logging.WARNING, logger="training"):
        assert main(["--recipe", str(bf16_recipe_file), "--mixed-precision", "no"]) == 0
    assert "--mixed-precision no" not in caplog.text
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 2  # header and the one step


def test_bad_flags_are_refused(bf16_recipe_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--recipe", str(bf16_recipe_file), "--mixed-precision", "fp8"])
    assert exit_info.value.code == 2 and "invalid choice: 'fp8'" in capsys.readouterr().err
    assert main(["--recipe", str(bf16_recipe_file), "--export-only", "--mixed-precision", "no"]) == 2
    assert "--mixed-precision is for training" in capsys.readouterr().err
