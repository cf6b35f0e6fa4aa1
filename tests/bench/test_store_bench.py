"""The history benchmark still runs and writes what the README can quote (not its speed)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_small_store_benchmark_writes_its_table_and_json(tmp_path):
    out = tmp_path / "store.json"
    done = subprocess.run([sys.executable, "-m", "bench.store", "--rows", "300", "--repeats", "2", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    for key in ("date", "command", "cpu", "cores", "python", "sqlite", "sqlalchemy"):
        assert result[key], key
    assert result["settings"]["rows"] == 300 and result["build_s"] > 0 and result["database_bytes"] > 0
    queries = result["queries"]
    assert len(queries) == 6 and any(name.startswith("search rare word") for name in queries)
    for name, timing in queries.items():
        assert all(timing[key] > 0 for key in ("median_ms", "min_ms", "max_ms")), name
        assert timing["min_ms"] <= timing["median_ms"] <= timing["max_ms"] and timing["goal_ms"] == 50, name
        assert 0 <= timing["items"] <= 50 and timing["total"] >= timing["items"], name
    assert queries["page 1"]["total"] > 250  # all but the few trashed rows
    assert "| page 1 |" in done.stdout and "median ms" in done.stdout
