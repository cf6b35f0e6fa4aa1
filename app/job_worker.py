"""The studio's one worker: a thread that runs queued generation jobs in order, one at a time, with the one
resident model. It keeps each running job's latest progress (for step counts and ETAs) in memory, and stops a
job within one model call when asked."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from core.store import Store
from core.store import queue
from core.store.jobs import JobOutcome, run_claimed_job

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveProgress:
    stage: str
    step: int
    total: int
    eta_s: float | None


class JobWorker:
    def __init__(self, store: Store, engine, *, idle_poll_s: float = 1.0):
        self.store, self.engine, self.idle_poll_s = store, engine, idle_poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._live: dict[int, LiveProgress] = {}
        self._cancelled: set[int] = set()
        self._running: int | None = None
        self._thread: threading.Thread | None = None
        self.last_outcome: JobOutcome | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="kelp-job-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            if self._running is not None:
                self._cancelled.add(self._running)
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self) -> None:
        """A job was queued: look at the queue now rather than at the next poll."""
        self._wake.set()

    def cancel(self, generation_id: int) -> None:
        with self._lock:
            self._cancelled.add(generation_id)

    def live_progress(self, generation_id: int) -> LiveProgress | None:
        with self._lock:
            return self._live.get(generation_id)

    @property
    def running_job(self) -> int | None:
        return self._running

    def _loop(self) -> None:
        worker = queue.worker_id()
        while not self._stop.is_set():
            try:
                job = self.store.db.write(lambda session: queue.claim_next(session, worker))
            except Exception:  # a broken database or disk: keep serving, try again after a pause
                logger.exception("the job worker could not read the queue")
                self._stop.wait(self.idle_poll_s)
                continue
            if job is None:
                self._wake.wait(self.idle_poll_s)
                self._wake.clear()
                continue
            with self._lock:
                self._running = job.id
            try:
                self.last_outcome = run_claimed_job(self.store, self.engine, job, on_progress=self._on_progress,
                                                    cancel=self._is_cancelled)
            except Exception:
                logger.exception("job %d could not be recorded", job.id)
            finally:
                with self._lock:
                    self._live.pop(job.id, None)
                    self._cancelled.discard(job.id)
                    self._running = None

    def _on_progress(self, update) -> None:
        with self._lock:
            if self._running is not None:
                self._live[self._running] = LiveProgress(update.stage, update.step, update.total, update.eta_s)

    def _is_cancelled(self) -> bool:
        with self._lock:
            return self._running is not None and self._running in self._cancelled
