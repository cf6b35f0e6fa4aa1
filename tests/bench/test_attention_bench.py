"""The attention benchmark runs and writes what the README quotes (its numbers are not asserted: a slow or
loaded machine must not fail a test), and its synthetic inputs have the structure it claims."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.attention import video_like_qkv
from core.attention.adaptive_sparsity import block_attention_mass

ROOT = Path(__file__).resolve().parents[2]


def test_video_like_inputs_attend_locally():
    q, k, _ = video_like_qkv(2048, heads=2, head_dim=64, device="cpu", dtype=torch.float32)
    mass = block_attention_mass(q, k, block_size=64)[0]  # (H, n, n); each row sums to the block's 64 queries
    diagonal = torch.diagonal(mass, dim1=-2, dim2=-1).mean(-1) / 64
    assert (diagonal > 0.2).all()  # a query block's own block holds far more than its 1/32 share
    assert diagonal[0] > diagonal[1]  # head 0 is the more local one


@pytest.mark.slow
def test_quick_benchmark_writes_kernels_and_end_to_end(tmp_path):
    out = tmp_path / "attention.json"
    done = subprocess.run([sys.executable, "-m", "bench.attention", "--quick", "--lengths", "1024",
                           "--head-dims", "32", "--steps", "3", "--model", "random:tiny", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    kernels = {row["kernel"]: row for row in result["kernels"]}
    assert kernels["dense SDPA"]["seconds"] > 0
    fixed = kernels["sparse, fixed sparsity 0.85"]
    assert 0.8 < fixed["sparsity"] < 0.9 and 0 < fixed["rel_l2"] < 1
    case, higher_recall = result["end_to_end"]["cases"].values()  # --quick: the model's own size, recall 0.9 and 0.95
    assert case["searches"] > 0 and case["psnr_db"] > 0
    assert higher_recall["settings"]["target_recall"] == 0.95 and higher_recall["mean_recall"] >= 0.95
    assert "| tokens | head dim | kernel |" in done.stdout
