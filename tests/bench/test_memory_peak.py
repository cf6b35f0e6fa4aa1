"""bench.memory's workers report their own peak memory, not that of the process that started them."""

import subprocess
import sys

import psutil
import torch

from bench.memory import ROOT


def test_a_worker_started_by_a_large_process_reports_its_own_peak():
    held = torch.ones(1536 * 2**20 // 4)  # 1.5 GiB, touched: resident in this process when the worker forks
    assert psutil.Process().memory_info().rss > held.numel() * 4
    done = subprocess.run([sys.executable, "-c", "from bench.memory_workers import peak_rss; print(peak_rss())"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    worker_peak = int(done.stdout.strip().splitlines()[-1])
    # getrusage's ru_maxrss would report at least this process's resident size here.
    assert 0 < worker_peak < held.numel() * 4 // 2, worker_peak
    del held
