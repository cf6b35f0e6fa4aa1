"""Follows one fine-tune's trainer process from a thread in the studio: its metrics.csv rows become the run's progress
in the store, a cancel request stops it, and when it ends the run is finished (and a finished LoRA registered)."""

from __future__ import annotations

import csv
import io
import logging
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from core.lora import read_lora_info
from core.store import Store
from core.store.loras import register_lora
from core.store.training_runs import finish_training_run, get_training_run, record_training_progress

logger = logging.getLogger(__name__)

POLL_S = 0.5  # how often the metrics file and the cancel request are looked at
HEARTBEAT_S = 30.0  # the run's heartbeat while no step finishes (model loading, validation), for recovery
STOP_WAIT_S = 15.0  # after SIGTERM, this long before SIGKILL
METRICS = ("loss", "lr", "grad_norm", "seconds_per_step")  # metrics.csv columns kept with the run


@dataclass(frozen=True)
class RunFolder:
    """Where a fine-tune keeps its footage, recipe, trainer output and log: <data dir>/training/<run id>/."""

    root: Path

    @property
    def footage(self) -> Path:
        return self.root / "footage"

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.toml"

    @property
    def output(self) -> Path:
        # the trainer's output_dir
        return self.root / "output"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def pid(self) -> Path:
        return self.root / "trainer.pid"

    @property
    def cancel_request(self) -> Path:
        # a file: its presence asks the monitor to stop the trainer
        return self.root / "CANCEL"

    def lora_file(self, lora_name: str) -> Path:
        return self.output / "lora" / f"{lora_name}.safetensors"

    def validation_clips(self) -> list[Path]:
        return sorted(self.output.glob("validation/step-*/*.mp4"))

    def log_tail(self, max_chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""


class MetricsFollower:
    """New complete rows of a growing metrics.csv, as dicts, each time `new_rows` is called."""

    def __init__(self, path: Path):
        self.path, self.offset, self.columns = path, 0, None

    def new_rows(self) -> list[dict]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []  # not written yet
        complete = data[: data.rfind(b"\n") + 1]  # a row being written has no newline yet
        self.offset += len(complete)
        lines = complete.decode(errors="replace").splitlines()
        if self.columns is None and lines:
            self.columns, lines = next(csv.reader([lines[0]])), lines[1:]
        return list(csv.DictReader(io.StringIO("\n".join(lines)), fieldnames=self.columns)) if lines else []


def row_metrics(row: dict) -> tuple[int, dict[str, float]] | None:
    """(step, {name: value}) from a metrics.csv row; None for a row that does not parse."""
    try:
        step = int(row["step"])
        values = {name: float(row[name]) for name in METRICS if row.get(name) not in (None, "")}
    except (KeyError, TypeError, ValueError):
        return None
    return step, {name: value for name, value in values.items() if value == value and abs(value) != float("inf")}


class FinetuneMonitor:
    """Watches `process` (the trainer of run `run_id`) on a daemon thread until it ends."""

    def __init__(self, store: Store, run_id: int, process: subprocess.Popen, folder: RunFolder, worker: str):
        self.store, self.run_id, self.process, self.folder, self.worker = store, run_id, process, folder, worker
        self.metrics = MetricsFollower(folder.output / "metrics.csv")
        self.step, self.beat_at = 0, time.monotonic()
        self.thread = threading.Thread(target=self._watch, name=f"kelp-finetune-{run_id}", daemon=True)

    def start(self) -> FinetuneMonitor:
        self.thread.start()
        return self

    def _watch(self) -> None:
        try:
            while True:
                self._record_progress()
                code = self.process.poll()
                if code is not None:
                    self._record_progress()
                    self._finish(code)
                    return
                if self.folder.cancel_request.exists():
                    self._stop_process()
                    self._end("cancelled")
                    return
                time.sleep(POLL_S)
        except Exception as err:  # a full disk or a broken database: never leave the trainer running unwatched
            logger.exception("fine-tune run %d: the monitor failed", self.run_id)
            self._stop_process()
            self._end("failed", f"the studio lost track of this run: {err}")

    def _record_progress(self) -> None:
        parsed = [p for p in map(row_metrics, self.metrics.new_rows()) if p is not None]
        if not parsed and time.monotonic() - self.beat_at < HEARTBEAT_S:
            return

        def record(session) -> None:
            for step, values in parsed:
                record_training_progress(session, self.run_id, step=step, metrics=values, worker=self.worker)
            if not parsed:
                record_training_progress(session, self.run_id, step=self.step, worker=self.worker)

        self.store.db.write(record)
        self.step = parsed[-1][0] if parsed else self.step
        self.beat_at = time.monotonic()

    def _finish(self, code: int) -> None:
        if code != 0:
            self._end("cancelled" if self.folder.cancel_request.exists() else "failed", self._failure(code))
            return
        self.store.db.write(self._register_lora)

    def _register_lora(self, session) -> None:
        run = get_training_run(session, self.run_id)
        recipe = run.recipe["recipe"]
        path = self.folder.lora_file(recipe["name"])
        info = read_lora_info(path)
        info.update(steps=run.total_steps, learning_rate=recipe["optim"]["learning_rate"])
        register_lora(self.store, session, path, name=run.name, base_model=run.base_model,
                      trigger=", ".join(info.get("trigger_words", [])), info=info, training_run_id=run.id)
        finish_training_run(session, self.run_id, "done")

    def _failure(self, code: int) -> str:
        tail = self.folder.log_tail().strip().splitlines()
        errors = [line for line in tail if line.startswith("error:") or "Error" in line.split(":")[0]]
        reason = errors[-1] if errors else (tail[-1] if tail else "no output")
        return f"the trainer stopped with exit code {code}: {reason} (full log: {self.folder.log})"

    def _stop_process(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _end(self, status: str, error: str = "") -> None:
        self.store.db.write(lambda session: finish_training_run(session, self.run_id, status, error=error))
