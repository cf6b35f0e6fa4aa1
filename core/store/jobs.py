"""Running generation jobs from the store: enqueue a request (its input files stored with it), run it with the
engine, and record the outcome. A job is marked done only once its video is complete and in the file store.

Crash safety, step by step: the engine writes `staging/gen-<id>.mp4` under a temporary name and renames it
when complete; the finished file moves into the content-addressed store; then one transaction adds its asset
rows and marks the job done. A crash before the rename leaves the job running (it becomes interrupted at the
next start-up); a crash after it leaves a complete staged file, which start-up recovery finishes recording.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from sqlalchemy.orm import Session

from core.request import GenerationRequest
from core.store import queue
from core.store.schema import Generation, utc_now
from core.store.store import Store
from core.video_io import read_video_frames, read_video_metadata

INPUT_FIELDS = {"image": "image_asset_id", "last_image": "last_image_asset_id", "extend_video": "extend_video_asset_id"}
PROGRESS_INTERVAL_S = 0.5  # how often a running job writes its progress (and heartbeat) to the database
THUMBNAIL_SIDE = 256


def enqueue_generation(
    store: Store,
    request: GenerationRequest,
    *,
    source: str = "cli",
    client_id: str = "",
    project_id: int | None = None,
    shot_id: int | None = None,
    parent_id: int | None = None,
) -> int:
    """Add `request` to the end of the queue and return the job's id; input images and clips are copied into the
    store, so the job can run (and be remixed or exported) after the originals are gone."""

    def add(session: Session) -> int:
        job = Generation(
            request={**request.to_dict(), **dict.fromkeys(INPUT_FIELDS)},
            prompt=_search_text(request), model=request.model, seed=request.seed, task=request.task,
            source=source, client_id=client_id, project_id=project_id, shot_id=shot_id, parent_id=parent_id,
            status="queued", queue_position=queue.next_queue_position(session),
        )
        for field, column in INPUT_FIELDS.items():
            path = getattr(request, field)
            if path is not None:
                kind = "upload" if field == "extend_video" else "image"
                setattr(job, column, store.add_asset(session, path, kind, original_name=Path(path).name).id)
        session.add(job)
        session.flush()
        return job.id

    return store.db.write(add)


def stored_request(store: Store, session: Session, generation_id: int) -> GenerationRequest:
    """Job `generation_id`'s request with its input files pointing at their copies in the store."""
    job = session.get(Generation, generation_id)
    if job is None:
        raise ValueError(f"`generation_id` must be the id of an existing generation but is {generation_id!r}")
    data = dict(job.request)
    for field in INPUT_FIELDS:
        asset = getattr(job, field)
        if asset is not None:
            data[field] = str(store.asset_path(asset))
    return GenerationRequest.from_dict(data)


def staged_video_path(store: Store, generation_id: int) -> Path:
    return store.data_dir.staging / f"gen-{generation_id}.mp4"


class JobCancel:
    """The engine's cancel object for a stored job: set by this process, or by anyone through the database."""

    def __init__(self, store: Store, generation_id: int, local: Callable[[], bool] | None = None):
        self.store, self.generation_id, self.local = store, generation_id, local
        self._last_check, self._flagged = 0.0, False

    def is_set(self) -> bool:
        if self._flagged or (self.local is not None and self.local()):
            return True
        now = time.monotonic()
        if now - self._last_check >= PROGRESS_INTERVAL_S:
            self._last_check = now
            with self.store.db.session() as session:
                self._flagged = queue.cancel_requested(session, self.generation_id)
        return self._flagged


@dataclass(frozen=True)
class JobOutcome:
    generation_id: int
    status: str  # "done", "failed" or "cancelled"
    video_path: Path | None = None
    error: str = ""
    seed: int | None = None


def run_claimed_job(
    store: Store,
    engine,
    job: Generation,
    *,
    on_progress: Callable | None = None,
    cancel: Callable[[], bool] | None = None,
) -> JobOutcome:
    """Run a job that this process has claimed (status running) and record how it ended."""
    from core.cancellation import GenerationCancelled

    staged = staged_video_path(store, job.id)
    stopper = JobCancel(store, job.id, cancel)
    last_write = [0.0]

    def progress(update) -> None:
        now = time.monotonic()
        if now - last_write[0] >= PROGRESS_INTERVAL_S or update.step == update.total:
            last_write[0] = now
            fraction = _overall_fraction(update)
            store.db.write(lambda s: queue.report_progress(s, job.id, fraction, update.stage))
        if on_progress is not None:
            on_progress(update)

    try:
        with store.db.session() as session:
            request = stored_request(store, session, job.id)
        result = engine.generate(request, output_path=staged, on_progress=progress, cancel=stopper)
    except GenerationCancelled:
        staged.unlink(missing_ok=True)
        store.db.write(lambda s: _finish(s, job.id, "cancelled"))
        return JobOutcome(job.id, "cancelled")
    except KeyboardInterrupt:  # Ctrl-C at the command line: record it, then let the process stop
        staged.unlink(missing_ok=True)
        store.db.write(lambda s: _finish(s, job.id, "cancelled", error="interrupted from the keyboard"))
        raise
    except Exception as error:  # the job fails, the worker carries on; the message is kept for the user
        staged.unlink(missing_ok=True)
        message = f"{type(error).__name__}: {error}"
        store.db.write(lambda s: _finish(s, job.id, "failed", error=message))
        return JobOutcome(job.id, "failed", error=message)
    path = record_finished_video(store, job.id, result.video_path, result.metadata)
    Path(result.metadata_path).unlink(missing_ok=True)  # its content is in the database and the mp4
    return JobOutcome(job.id, "done", path, seed=result.seed)


def record_finished_video(
    store: Store, generation_id: int, video: Path, metadata: dict | None, thumbnail: bytes | None = None
) -> Path:
    """Move a complete video into the file store, add a thumbnail (PNG bytes; read from the video's first frame
    when not given), and mark the job done, in one transaction."""
    metadata = metadata or {}
    thumbnail = thumbnail if thumbnail is not None else _thumbnail_png(video)

    def finish(session: Session) -> Path:
        job = session.get(Generation, generation_id)
        video_asset = store.add_asset(session, video, "output", move=True, original_name=f"kelp-{generation_id}.mp4")
        thumb_asset = store.add_asset_bytes(session, thumbnail, ".png", "thumbnail")
        job.video_asset_id, job.thumbnail_asset_id = video_asset.id, thumb_asset.id
        job.result = metadata
        job.seed = metadata.get("seed", job.seed)
        job.weights_hash = (metadata.get("model") or {}).get("weights_sha256", "") or ""
        job.timings = metadata.get("timings", {})
        _finish(session, generation_id, "done")
        return store.asset_path(video_asset)

    return store.db.write(finish)


def recover_jobs(store: Store) -> dict[str, list[int]]:
    """At start-up: jobs whose worker died become "interrupted", or "done" when their video had been completed."""
    with store.db.session() as session:
        dead = [job.id for job in queue.dead_running_jobs(session)]
    recovered: dict[str, list[int]] = {"done": [], "interrupted": []}
    for generation_id in dead:
        staged = staged_video_path(store, generation_id)
        metadata = read_video_metadata(staged) if staged.is_file() else None
        if metadata is not None:  # complete: the engine renames the file only when it is whole
            record_finished_video(store, generation_id, staged, metadata)
            recovered["done"].append(generation_id)
        else:
            staged.unlink(missing_ok=True)
            store.db.write(lambda s, i=generation_id: _finish(s, i, "interrupted", error="the process running it stopped"))
            recovered["interrupted"].append(generation_id)
    for leftover in store.data_dir.staging.glob(".gen-*.tmp*"):  # a video the crash cut short
        leftover.unlink(missing_ok=True)
    return recovered


def run_next_job(store: Store, engine, worker: str | None = None, **kwargs) -> JobOutcome | None:
    """Claim and run the first queued job; None when the queue is empty."""
    job = store.db.write(lambda s: queue.claim_next(s, worker or queue.worker_id()))
    return None if job is None else run_claimed_job(store, engine, job, **kwargs)


def run_job_now(store: Store, engine, generation_id: int, **kwargs) -> JobOutcome:
    """Claim the queued job `generation_id` (ahead of its turn, as the CLI does) and run it."""
    job = store.db.write(lambda s: queue.claim_next(s, queue.worker_id(), generation_id))
    if job is None:
        raise ValueError(f"job {generation_id} is not queued")
    return run_claimed_job(store, engine, job, **kwargs)


def _finish(session: Session, generation_id: int, status: str, *, error: str = "") -> None:
    job = session.get(Generation, generation_id)
    job.status, job.finished_at, job.error, job.cancel_requested = status, utc_now(), error, False
    if status == "done":
        job.progress = 1.0


def _thumbnail_png(video: Path) -> bytes:
    frames, _ = read_video_frames(video, max_frames=1)
    image = Image.fromarray(frames[0])
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _overall_fraction(update) -> float:
    """Sampling is most of a job; decoding the rest."""
    share = {"loading": (0.0, 0.05), "encoding": (0.05, 0.1), "sampling": (0.1, 0.85), "decoding": (0.85, 1.0)}
    low, high = share.get(update.stage, (0.0, 0.0))
    return low + (high - low) * (update.step / update.total if update.total else 0.0)


def _search_text(request: GenerationRequest) -> str:
    shots = " ".join(shot.prompt for shot in request.shots)
    return " ".join(part for part in (request.prompt, shots) if part)
