"""The job queue: generations in status "queued", run one at a time in queue order by any process.

State changes are single transactions (BEGIN IMMEDIATE), so two workers never claim the same job. A job
left "running" by a process that died becomes "interrupted" at the next start-up and can be re-queued.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.store.schema import GENERATION_STATUSES, Generation, utc_now

STALE_AFTER = timedelta(minutes=10)  # a running job whose worker has not reported for this long is dead
RESTARTABLE = ("interrupted", "failed", "cancelled")


def worker_id() -> str:
    """This process as "host:pid"; recovery checks whether that process still exists."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def worker_is_dead(worker: str, heartbeat_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether the process that claimed a job is gone: on this host, its pid no longer exists; anywhere, it has
    not reported for STALE_AFTER (this also covers a pid reused by an unrelated process)."""
    now = now or utc_now()
    if heartbeat_at is None or now - heartbeat_at > STALE_AFTER:
        return True
    host, _, pid = worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not _process_alive(int(pid))
    return False


def check_status(status: str | tuple[str, ...]) -> tuple[str, ...]:
    statuses = (status,) if isinstance(status, str) else tuple(status)
    for s in statuses:
        if s not in GENERATION_STATUSES:
            raise ValueError(f"`status` must be one of {GENERATION_STATUSES} but is {s!r}")
    return statuses


def next_queue_position(session: Session) -> float:
    last = session.scalar(select(func.max(Generation.queue_position)))
    return float(last or 0.0) + 1.0


def claim_next(session: Session, worker: str, generation_id: int | None = None) -> Generation | None:
    """Mark the first queued job (or `generation_id`, if it is queued) running for `worker` and return it."""
    query = select(Generation.id).where(Generation.status == "queued", Generation.deleted_at.is_(None))
    if generation_id is not None:
        query = query.where(Generation.id == generation_id)
    first = session.scalar(query.order_by(Generation.queue_position, Generation.id).limit(1))
    if first is None:
        return None
    now = utc_now()
    claimed = session.execute(
        update(Generation)
        .where(Generation.id == first, Generation.status == "queued")
        .values(status="running", worker=worker, started_at=now, heartbeat_at=now, progress=0.0, error="")
        .returning(Generation.id)
    ).scalar()
    return session.get(Generation, claimed, populate_existing=True) if claimed is not None else None


def queued_jobs(session: Session, client_id: str | None = None) -> list[Generation]:
    """Queued and running jobs in the order they will run (a client's own jobs when `client_id` is given)."""
    query = select(Generation).where(Generation.status.in_(("queued", "running")), Generation.deleted_at.is_(None))
    if client_id is not None:
        query = query.where(Generation.client_id == client_id)
    return list(session.scalars(query.order_by(Generation.status.desc(), Generation.queue_position, Generation.id)))


def queue_place(session: Session, generation_id: int) -> int | None:
    """1 for the next job to run, 2 for the one after, ...; 0 while running; None once finished."""
    job = session.get(Generation, generation_id)
    if job is None or job.status not in ("queued", "running"):
        return None
    if job.status == "running":
        return 0
    ahead = session.scalar(
        select(func.count()).select_from(Generation).where(
            Generation.status == "queued",
            Generation.deleted_at.is_(None),
            (Generation.queue_position < job.queue_position)
            | ((Generation.queue_position == job.queue_position) & (Generation.id < job.id)),
        )
    )
    return int(ahead) + 1


def request_cancel(session: Session, generation_id: int) -> str:
    """Cancel a queued job at once, or ask its worker to stop a running one; returns the job's status."""
    job = _get(session, generation_id)
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", utc_now()
    elif job.status == "running":
        job.cancel_requested = True
    return job.status


def cancel_requested(session: Session, generation_id: int) -> bool:
    return bool(session.scalar(select(Generation.cancel_requested).where(Generation.id == generation_id)))


def report_progress(session: Session, generation_id: int, progress: float, stage: str) -> None:
    session.execute(
        update(Generation)
        .where(Generation.id == generation_id, Generation.status == "running")
        .values(progress=max(0.0, min(1.0, progress)), progress_stage=stage, heartbeat_at=utc_now())
    )


def requeue(session: Session, generation_id: int) -> Generation:
    """Put an interrupted, failed or cancelled job back at the end of the queue."""
    job = _get(session, generation_id)
    if job.status not in RESTARTABLE:
        raise ValueError(f"only {RESTARTABLE} jobs can be re-queued but job {generation_id} is {job.status!r}")
    job.status, job.queue_position = "queued", next_queue_position(session)
    job.progress, job.progress_stage, job.error, job.cancel_requested = 0.0, "", "", False
    job.worker, job.heartbeat_at, job.started_at, job.finished_at = "", None, None, None
    return job


def move_in_queue(session: Session, generation_id: int, before_id: int | None) -> None:
    """Move a queued job just before `before_id` (another queued job), or to the end when it is None."""
    job = _get(session, generation_id)
    if job.status != "queued":
        raise ValueError(f"only queued jobs can be moved but job {generation_id} is {job.status!r}")
    if before_id is None:
        job.queue_position = next_queue_position(session)
        return
    target = _get(session, before_id)
    if target.status != "queued":
        raise ValueError(f"`before_id` must be a queued job but job {before_id} is {target.status!r}")
    previous = session.scalar(
        select(func.max(Generation.queue_position)).where(
            Generation.status == "queued", Generation.queue_position < target.queue_position, Generation.id != job.id
        )
    )
    low = float(previous) if previous is not None else target.queue_position - 1.0
    job.queue_position = (low + target.queue_position) / 2.0


def dead_running_jobs(session: Session) -> list[Generation]:
    """Jobs marked running whose worker process is gone (a crash, a kill, a power cut)."""
    running = session.scalars(select(Generation).where(Generation.status == "running"))
    now = utc_now()
    return [job for job in running if worker_is_dead(job.worker, job.heartbeat_at, now)]


def _get(session: Session, generation_id: int) -> Generation:
    job = session.get(Generation, generation_id)
    if job is None:
        raise ValueError(f"`generation_id` must be the id of an existing generation but is {generation_id!r}")
    return job
