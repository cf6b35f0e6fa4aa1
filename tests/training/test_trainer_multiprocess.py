"""Two processes on the CPU (gloo): each trains on its own shard, gradients are averaged, and only the main
process writes checkpoints, metrics and the export.

accelerate 1.15 starts several CPU processes only through mpirun (`accelerate launch --cpu` starts one), so the
two processes come from its torchrun launcher (`--multi_gpu`); without a GPU, Kelp's trainer joins them with gloo.
"""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.checkpointing import checkpoint_dirs, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "training" / "recipes" / "tiny-smoke.toml"


@pytest.mark.slow
def test_two_processes_train_one_model_and_only_the_main_one_writes(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU (gloo) path")
    recipe = tmp_path / "recipe.toml"
    text = RECIPE.read_text()
    assert "interval = 3" in text
    recipe.write_text(text.replace("interval = 3", "interval = 100"))  # only the final checkpoint
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    output = tmp_path / "run"
    done = subprocess.run(
        [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "--main_process_port", "29517", "-m", "training.train", "--recipe", str(recipe),
         "--output-dir", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "process 0/2 (MULTI_CPU)" in log and "process 1/2 (MULTI_CPU)" in log
    assert [p.name for p in checkpoint_dirs(output / "checkpoints")] == ["step-000006"]
    assert not [p for p in (output / "checkpoints").iterdir() if p.name.startswith(".")]
    state = load_checkpoint(output / "checkpoints" / "step-000006")
    first, second = state["processes"]
    # The video stage: 4 steps x 2 micro-batches x 2 items each, drawn from the one- and multi-shot streams.
    assert sum(first["streams"].values()) == sum(second["streams"].values()) == 16  # the same number each ...
    assert not torch.equal(first["generator"], second["generator"])  # ... but their own noise and tasks
    rows = list(csv.DictReader(open(output / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))  # one writer
    assert (output / "model" / "kelp_model.json").is_file()
