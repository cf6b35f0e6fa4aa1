"""Importing Kelp makes no network request: diffusers imports bitsandbytes, which (on CPUs with AVX512-BF16)
would ask the Hugging Face Hub for a kernel to download at import time (core/offline.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WATCH_NETWORK = """
import os, sys
lookups = []
sys.addaudithook(lambda event, args: lookups.append(args[0]) if event in ("socket.getaddrinfo", "socket.connect") else None)
import {module}
import diffusers, transformers, peft
try:
    import bitsandbytes
except ImportError:
    pass
print("lookups:", lookups)
print("HF_HUB_OFFLINE:", os.environ.get("HF_HUB_OFFLINE"))
"""


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"} | env
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("module", ["launch", "training.train"])
def test_importing_kelp_and_its_libraries_reaches_no_network(module):
    result = run_python(WATCH_NETWORK.format(module=module))
    assert result.returncode == 0, result.stderr
    assert "lookups: []" in result.stdout
    assert "HF_HUB_OFFLINE: 1" in result.stdout
    assert "kernels-community" not in result.stdout + result.stderr  # nor the warning about the refused kernel


def test_a_users_own_hub_setting_is_kept():
    result = run_python("import os, core; print(os.environ['HF_HUB_OFFLINE'])", HF_HUB_OFFLINE="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
