"""The memory benchmark's computed sizes hold the issue's budget, and a quick section still runs and writes JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.memory_sizes import build_on_meta, computed_bytes
from core.quant.bnb import BnbNF4Backend
from core.quant.native_int8 import NativeInt8Backend
from core.quant.rules import TRANSFORMER_PROJECTIONS

ROOT = Path(__file__).resolve().parents[2]


def test_wan_shaped_transformers_shrink_as_the_issue_asks():
    for size in ("wan-1.3b", "wan-14b"):
        model = build_on_meta(size)  # no memory: parameters on the meta device
        bf16 = computed_bytes(model, 2)
        int8 = computed_bytes(model, 2, TRANSFORMER_PROJECTIONS, NativeInt8Backend())
        nf4 = computed_bytes(model, 2, TRANSFORMER_PROJECTIONS, BnbNF4Backend())
        assert bf16 / int8 >= 1.9 and bf16 / nf4 >= 3.5, size
    assert nf4 <= 8.5e9  # Wan-14B


@pytest.mark.slow
def test_quick_kernels_section_writes_json(tmp_path):
    out = tmp_path / "memory.json"
    done = subprocess.run([sys.executable, "-m", "bench.memory", "--quick", "--kernels", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    shapes = json.loads(out.read_text())["kernels"]["shapes"]
    assert all(value > 0 for row in shapes.values() for value in row.values())
