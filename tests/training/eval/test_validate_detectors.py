"""The validation script runs end to end and writes its JSON report."""

import json

from training.eval.validate_detectors import main


def test_small_validation_run_passes_and_writes_json(tmp_path, capsys):
    out = tmp_path / "agreement.json"
    assert main(["--clips", "12", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["passed"] and report["threshold"] == 0.99
    assert "one shape, still camera" in report["cases"]
    assert "| case |" in capsys.readouterr().out
