"""metrics.csv: rows past a resumed step are dropped when the resumed run writes, and not before, so that a trainer
built only to export a checkpoint of a live run leaves that run's metrics alone."""

import csv

from training.metrics import MetricsLog


def steps(path) -> list[int]:
    return [int(row["step"]) for row in csv.DictReader(open(path, newline=""))]


def test_a_new_log_writes_a_header_and_rows(tmp_path):
    log = MetricsLog(tmp_path, extra_columns=("psnr",))
    assert not (tmp_path / "metrics.csv").exists()  # nothing until the first row
    log.log({"step": 1, "stage": "a", "loss": 0.123456789, "psnr": 20.0})
    log.log({"step": 2, "stage": "a", "loss": 0.1})
    log.close()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv", newline="")))
    assert [r["step"] for r in rows] == ["1", "2"] and rows[0]["loss"] == "0.123457" and rows[0]["psnr"] == "20.0"


def test_resume_drops_later_rows_only_when_it_writes(tmp_path):
    first = MetricsLog(tmp_path)
    for step in range(1, 11):
        first.log({"step": step, "stage": "a", "loss": 1.0 / step})
    first.close()
    before = (tmp_path / "metrics.csv").read_bytes()

    exporter = MetricsLog(tmp_path, resume_step=5)  # e.g. DiTTrainer(recipe, resume=True) built to export
    exporter.close()
    assert (tmp_path / "metrics.csv").read_bytes() == before

    resumed = MetricsLog(tmp_path, resume_step=5)
    resumed.log({"step": 6, "stage": "a", "loss": 0.5})
    resumed.close()
    assert steps(tmp_path / "metrics.csv") == [1, 2, 3, 4, 5, 6]
