"""The generation benchmark still runs and writes what the README quotes (not its speed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_benchmark_writes_a_comparison(tmp_path):
    out = tmp_path / "generate.json"
    done = subprocess.run([sys.executable, "-m", "bench.generate", "--quick", "--device", "cpu", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["kelp"]["median"]["s_per_step"] > 0 and result["diffusers-wan-peer"]["median"]["s_per_step"] > 0
    assert "kelp" in done.stdout and "diffusers-wan-peer" in done.stdout
