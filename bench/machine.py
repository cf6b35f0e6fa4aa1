"""What a benchmark ran on, recorded beside its numbers: date, command, commit, device, CPU, versions, threads."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import diffusers
import torch


def machine_info(device: torch.device, module: str) -> dict:
    """`module`: the benchmark's module name (e.g. "bench.attention"), for the command that reruns it."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    # A lent GPU machine gets a copy of the working tree whose .git may be older than the code: the caller names the
    # commit there (bench/gpu_session.sh).
    commit = os.environ.get("KELP_BENCH_COMMIT")
    if not commit:
        try:
            git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
            commit = git.stdout.strip() if git.returncode == 0 else None
        except OSError:
            commit = None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable), "-m", module, *sys.argv[1:]]),
        "git_commit": commit,
        "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None),
        "torch": torch.__version__, "diffusers": diffusers.__version__, "threads": torch.get_num_threads(),
        "load_average_1min": load,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
