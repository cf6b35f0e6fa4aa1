"""Training-run records: created when a run is set up, updated as it trains, finished with its outcome."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.checks import check_bool, check_dict, check_name, check_text, get_row, restore_row, trash_row
from core.store.schema import FINISHED_STATUSES, TRAINING_STATUSES, TrainingRun, utc_now

TRAINING_KINDS = ("lora", "dit", "vae")


def _check_steps(argument: str, value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"`{argument}` must be a whole number from 0 but is {value!r}")
    return value


def create_training_run(
    session: Session,
    name: str,
    *,
    kind: str = "lora",
    base_model: str = "",
    recipe: dict[str, Any] | None = None,
    total_steps: int = 0,
    output_dir: str = "",
) -> TrainingRun:
    if kind not in TRAINING_KINDS:
        raise ValueError(f"`kind` must be one of {TRAINING_KINDS} but is {kind!r}")
    run = TrainingRun(
        name=check_name("name", name), kind=kind, base_model=check_text("base_model", base_model, 500),
        recipe=check_dict("recipe", recipe if recipe is not None else {}),
        total_steps=_check_steps("total_steps", total_steps), output_dir=check_text("output_dir", output_dir, 4096),
        status="queued",
    )
    session.add(run)
    session.flush()
    return run


def get_training_run(session: Session, run_id: int) -> TrainingRun:
    return get_row(session, TrainingRun, run_id, "run_id")


def record_training_progress(
    session: Session, run_id: int, *, step: int, metrics: dict[str, Any] | None = None, worker: str | None = None
) -> TrainingRun:
    """The run reached `step`: marks it running (from its first report), refreshes its heartbeat and progress,
    and appends `metrics` (e.g. {"loss": 0.12}) with the step to its metrics list."""
    run = get_training_run(session, run_id)
    _check_steps("step", step)
    if metrics is not None:
        if not isinstance(metrics, dict) or not all(
            isinstance(name, str) and isinstance(value, (int, float)) and math.isfinite(value)
            for name, value in metrics.items()
        ):
            raise ValueError(f"`metrics` must map names to finite numbers but is {metrics!r}")
        run.metrics = [*run.metrics, {"step": step, **metrics}]  # a new list: the JSON column sees the change
    now = utc_now()
    if run.status == "queued":
        run.status, run.started_at = "running", now
    run.step, run.heartbeat_at = step, now
    run.progress = min(1.0, step / run.total_steps) if run.total_steps else 0.0
    if worker is not None:
        run.worker = check_text("worker", worker, 200)
    return run


def finish_training_run(session: Session, run_id: int, status: str, *, error: str = "") -> TrainingRun:
    """The run ended: "done", "failed", "cancelled" or "interrupted" (with `error` saying why, if it failed)."""
    if status not in FINISHED_STATUSES:
        raise ValueError(f"`status` must be one of {FINISHED_STATUSES} but is {status!r}")
    run = get_training_run(session, run_id)
    run.status, run.finished_at, run.error = status, utc_now(), check_text("error", error, 100_000)
    if status == "done":
        run.progress = 1.0
    return run


def list_training_runs(
    session: Session, *, status: str | None = None, include_deleted: bool = False
) -> list[TrainingRun]:
    """Runs newest first, optionally only those with `status`."""
    query = select(TrainingRun).order_by(TrainingRun.created_at.desc(), TrainingRun.id.desc())
    if status is not None:
        if status not in TRAINING_STATUSES:
            raise ValueError(f"`status` must be one of {TRAINING_STATUSES} but is {status!r}")
        query = query.where(TrainingRun.status == status)
    if not check_bool("include_deleted", include_deleted):
        query = query.where(TrainingRun.deleted_at.is_(None))
    return list(session.scalars(query))


def trash_training_run(session: Session, run_id: int) -> TrainingRun:
    return trash_row(session, TrainingRun, run_id, "run_id")


def restore_training_run(session: Session, run_id: int) -> TrainingRun:
    return restore_row(session, TrainingRun, run_id, "run_id")
