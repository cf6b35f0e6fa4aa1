"""Training metrics: one CSV row per optimizer step in `<output_dir>/metrics.csv`, and TensorBoard if installed."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

COLUMNS = ("step", "stage", "loss", "lr", "grad_norm", "seconds_per_step", "samples_per_s")


class MetricsLog:
    """Appends rows to metrics.csv. On resume, rows after the resumed step (written before a crash) are dropped,
    so the file reads as one run. Nothing is touched until the first row: a trainer built only to export or
    evaluate a checkpoint leaves a live run's metrics alone."""

    def __init__(self, folder: str | Path, *, extra_columns: tuple[str, ...] = (), resume_step: int | None = None):
        self.path = Path(folder) / "metrics.csv"
        self.columns = COLUMNS + tuple(extra_columns)
        self.resume_step = resume_step
        self._handle = self._writer = self._tensorboard = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        if self.resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= self.resume_step]
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        self._handle = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._handle, self.columns, extrasaction="ignore")
        if importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(self.path.parent / "tensorboard"), purge_step=self.resume_step)

    def log(self, row: dict) -> None:
        if self._handle is None:
            self._open()
        self._writer.writerow({k: _round(v) for k, v in row.items()})
        self._handle.flush()
        if self._tensorboard is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tensorboard.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _round(value):
    return float(f"{value:.6g}") if isinstance(value, float) else value
