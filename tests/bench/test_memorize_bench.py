"""The memorisation benchmark: its recipe trains on exactly the clips it scores, and a whole run writes before and
after scores for each of them. Scores are not asserted on the untrained tiny model: its clips are noise."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.memorize import recipe_table, training_clips
from core.model_loader import resolve_model
from training.config import parse_recipe
from training.datasets import build_dataset

ROOT = Path(__file__).resolve().parents[2]


def test_the_scored_clips_are_the_recipes_training_clips(tmp_path):
    defaults = resolve_model("random:tiny").defaults
    recipe = parse_recipe(recipe_table("random:tiny", "tiny", defaults, clips=3, steps=10, seed=7,
                                       mixed_precision="no", output_dir=tmp_path))
    stage = recipe.stages[0]
    assert stage.tasks.as_dict()["t2v"] == 1.0 and recipe.data.caption_dropout == 0.0
    trained = build_dataset(recipe.data.source, width=stage.width, height=stage.height, num_frames=stage.frames,
                            seed=recipe.seed, options=recipe.data.options)  # as DiTTrainer._enter_stage builds it
    scored = training_clips(defaults, clips=3, seed=7)
    assert [item["caption"] for item in scored] == [trained[i]["caption"] for i in range(len(trained))]
    assert all(item["truth"].objects and len(item["truth"].objects) == 1 for item in scored)  # single shapes


@pytest.mark.slow
def test_a_whole_run_scores_every_clip_before_and_after(tmp_path):
    out = tmp_path / "memorize.json"
    done = subprocess.run([sys.executable, "-m", "bench.memorize", "--model", "random:tiny", "--clips", "2",
                           "--steps", "2", "--sampling-steps", "2", "--mixed-precision", "no",
                           "--work-dir", str(tmp_path / "w"), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert Path(result["fitted_model"], "transformer").is_dir() and result["train_seconds"] > 0
    captions = [item["caption"] for item in training_clips(resolve_model("random:tiny").defaults, clips=2, seed=11)]
    for part in ("before", "after"):
        assert [c["caption"] for c in result[part]["clips"]] == captions
        assert all(0 <= v <= 1 for v in result[part]["scores"].values())
    assert "| random:tiny on its 2 training captions |" in done.stdout
