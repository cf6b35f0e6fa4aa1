"""Exact resume: a run killed (SIGKILL) right after its mid-run checkpoint and resumed with --resume ends with
the same weights, EMA and optimizer state, bit for bit, as the same run left alone."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.checkpointing import checkpoint_dirs

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "training" / "recipes" / "tiny-smoke.toml"  # 6 steps, a checkpoint every 3
# Train, but die the hard way as soon as the first checkpoint is on disk: no clean-up, no final save or export.
KILLED_AFTER_CHECKPOINT = """
import os, signal, sys
from training.dit_trainer import DiTTrainer
save = DiTTrainer.save
def save_then_die(self):
    save(self)
    os.kill(os.getpid(), signal.SIGKILL)
DiTTrainer.save = save_then_die
from training.train import main
main(sys.argv[1:])
"""


def train(log: Path, *args: str, code: str | None = None) -> tuple[subprocess.Popen, Path]:
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "training.train", *args]
    # One thread each: exactness does not depend on it, and the two first runs share the machine.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as handle:  # a file, not a pipe: nobody reads while both runs write
        return subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env), log


def finished(run: tuple[subprocess.Popen, Path]) -> tuple[int, str]:
    process, log = run
    process.wait(timeout=600)
    return process.returncode, log.read_text()


def losses(folder: Path) -> list[tuple[str, str]]:
    return [(r["step"], r["loss"]) for r in csv.DictReader(open(folder / "metrics.csv"))]


@pytest.mark.slow
def test_killed_and_resumed_run_matches_the_uninterrupted_run_bit_for_bit(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    runs = [train(tmp_path / "whole.log", "--recipe", str(RECIPE), "--output-dir", str(whole)),
            train(tmp_path / "killed.log", "--recipe", str(RECIPE), "--output-dir", str(broken),
                  code=KILLED_AFTER_CHECKPOINT)]
    (done, done_log), (killed, killed_log) = [finished(run) for run in runs]
    assert done == 0, done_log[-3000:]
    assert killed == -signal.SIGKILL, killed_log[-3000:]
    assert [p.name for p in checkpoint_dirs(broken / "checkpoints")] == ["step-000003"]
    assert not (broken / "model").exists()

    resumed, log = finished(train(tmp_path / "resumed.log", "--recipe", str(RECIPE), "--output-dir", str(broken),
                                  "--resume"))
    assert resumed == 0, log[-3000:]
    assert "resumed from" in log and "starts at step 3 of 6" in log

    final = "checkpoints/step-000006/state.safetensors"
    expected, actual = load_file(whole / final), load_file(broken / final)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)  # weights, EMA, Adam moments, RNG states
    weights = "model/transformer/diffusion_pytorch_model.safetensors"
    expected, actual = load_file(whole / weights), load_file(broken / weights)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert losses(whole) == losses(broken)  # the metrics read as one run
