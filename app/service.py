"""The studio's service object, built once at start-up by launch.py: the history store, the engine with its one
resident model, and the job worker. UI handlers and API endpoints call it; nothing in app/ holds models or
state at module level."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from core.request import GenerationRequest
from core.store import Store
from core.store import queue
from core.store.jobs import enqueue_generation, recover_jobs
from core.store.schema import Generation

from app.job_worker import JobWorker


@dataclass(frozen=True)
class JobStatus:
    generation_id: int
    status: str  # queued, running, done, failed, cancelled, interrupted
    place: int | None  # 1 = next to run, 0 = running, None = finished
    stage: str
    step: int
    total: int
    progress: float  # 0..1 over the whole job
    eta_s: float | None  # for the current stage
    error: str
    video_path: Path | None
    seed: int | None

    @property
    def finished(self) -> bool:
        return self.status not in ("queued", "running")


class StudioService:
    def __init__(self, store: Store, engine, *, default_model: str = "kelp-small", start_worker: bool = True):
        self.store, self.engine, self.default_model = store, engine, default_model
        from app.finetune_jobs import recover_finetune_runs

        self.recovered = recover_jobs(store)  # jobs a previous run left running
        self.recovered_finetunes = recover_finetune_runs(store)
        self.worker = JobWorker(store, engine)
        self.lock = threading.Lock()  # for whatever else shares the engine (e.g. fine-tuning start-up)
        if start_worker:
            self.worker.start()

    @classmethod
    def open(cls, data_dir: str | Path | None = None, *, device: str = "auto", model: str = "kelp-small",
             start_worker: bool = True) -> StudioService:
        from core.pipeline import Engine

        store = Store.open(data_dir)
        engine = Engine(device=device, output_dir=store.data_dir.staging)
        return cls(store, engine, default_model=model, start_worker=start_worker)

    def close(self) -> None:
        self.worker.stop()
        self.store.close()

    # Jobs -------------------------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, *, client_id: str = "", source: str = "ui",
               project_id: int | None = None, shot_id: int | None = None, parent_id: int | None = None) -> int:
        """Validate `request` (ValueError naming the bad field) and queue it; returns the job id."""
        self.engine.validate(request)
        generation_id = enqueue_generation(self.store, request, source=source, client_id=client_id,
                                           project_id=project_id, shot_id=shot_id, parent_id=parent_id)
        self.worker.notify()
        return generation_id

    def status(self, generation_id: int) -> JobStatus:
        with self.store.db.read() as session:
            job = session.get(Generation, generation_id)
            if job is None:
                raise ValueError(f"`generation_id` must be the id of an existing generation but is {generation_id!r}")
            place = queue.queue_place(session, generation_id)
            video = self.store.asset_path(job.video) if job.video is not None else None
            status, progress, stage, error, seed = job.status, job.progress, job.progress_stage, job.error, job.seed
        live = self.worker.live_progress(generation_id) if status == "running" else None
        return JobStatus(generation_id, status, place, live.stage if live else stage, live.step if live else 0,
                         live.total if live else 0, progress, live.eta_s if live else None, error, video, seed)

    def wait(self, generation_id: int, timeout: float = 600.0, poll_s: float = 0.2) -> JobStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(generation_id)
            if status.finished or time.monotonic() > deadline:
                return status
            time.sleep(poll_s)

    def cancel(self, generation_id: int) -> str:
        """Cancel a queued job now, or stop a running one within one model call."""
        status = self.store.db.write(lambda session: queue.request_cancel(session, generation_id))
        if status == "running":
            self.worker.cancel(generation_id)
        return status

    def client_jobs(self, client_id: str) -> list[JobStatus]:
        """A browser session's queued and running jobs, in the order they will run."""
        with self.store.db.read() as session:
            ids = [job.id for job in queue.queued_jobs(session, client_id)]
        return [self.status(i) for i in ids]

    # Models -----------------------------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Bundled models, model folders added in Models & settings, then the untrained random presets."""
        from app.model_folders import available_models

        return available_models(self.store)

    def device_info(self) -> dict:
        import platform

        import torch

        info = {"device": str(self.engine.device), "torch": torch.__version__, "python": platform.python_version(),
                "cpu_threads": torch.get_num_threads()}
        if self.engine.device.type == "cuda":
            props = torch.cuda.get_device_properties(self.engine.device)
            info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1))
        return info
