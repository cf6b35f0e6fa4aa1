"""What the studio shows about a queued or running job: one progress line and bar, refreshed by polling the
service (the worker thread owns the job; a page only watches it, so a refresh or a closed tab loses nothing)."""

from __future__ import annotations

import html
import time
from collections.abc import Iterator

from app.service import JobStatus, StudioService

POLL_S = 0.3  # how often a watching page asks for the job's status
# Inline styles: Gradio 6 takes page CSS only at launch(), which launch.py owns.
_TRACK = "height: 6px; margin-top: 6px; border-radius: 3px; background: var(--neutral-200, #e5e7eb);"
_FILL = "height: 6px; border-radius: 3px; background: var(--color-accent, #f97316); transition: width 0.3s;"
STAGES = {"loading": "loading the model", "encoding": "encoding the prompt", "sampling": "sampling",
          "decoding": "decoding", "writing": "writing the video"}


def jobs_ahead(service: StudioService, status: JobStatus) -> int:
    """Jobs that will run before a queued one: the queued ones ahead of it, and the one running now."""
    if status.place is None or status.place == 0:
        return 0
    running = service.worker.running_job
    return status.place - 1 + (1 if running is not None and running != status.generation_id else 0)


def _seconds(eta_s: float | None) -> str:
    if eta_s is None:
        return ""
    if eta_s < 90:
        return f", about {max(1, round(eta_s))} s left"
    return f", about {round(eta_s / 60)} min left"


def progress_text(status: JobStatus, ahead: int = 0) -> str:
    """One line: "queued: 2 jobs ahead", "sampling step 12/40, about 3 s left", "done", ..."""
    job = f"Job {status.generation_id}"
    if status.status == "queued":
        return f"{job} queued: " + ("next to run" if ahead == 0 else f"{ahead} job{'s' if ahead > 1 else ''} ahead")
    if status.status == "running":
        stage = STAGES.get(status.stage, status.stage or "starting")
        if status.stage == "sampling" and status.total:
            return f"{job}: sampling step {status.step}/{status.total}{_seconds(status.eta_s)}"
        if status.stage == "decoding" and status.total:
            return f"{job}: decoding {status.step}/{status.total}{_seconds(status.eta_s)}"
        return f"{job}: {stage} ..."
    if status.status == "done":
        return f"{job} done (seed {status.seed})"
    if status.status == "cancelled":
        return f"{job} cancelled"
    if status.status == "interrupted":
        return f"{job} was interrupted when the studio stopped; re-queue it from History"
    return f"{job} failed: {status.error}"


def progress_html(text: str, fraction: float | None = None, state: str = "running") -> str:
    """The line with a thin bar under it while a job is under way (`state`: running, done, failed, idle)."""
    bar = ""
    if fraction is not None:
        percent = round(100 * max(0.0, min(1.0, fraction)))
        bar = (f'<div style="{_TRACK}"><div style="{_FILL} width:{percent}%"></div></div>')
    colour = "color: var(--error-text-color, #b91c1c);" if state == "failed" else ""
    return f'<div style="padding: 4px 2px;"><span style="{colour}">{html.escape(text)}</span>{bar}</div>'


def status_html(service: StudioService, status: JobStatus) -> str:
    text = progress_text(status, jobs_ahead(service, status))
    if not status.finished:
        return progress_html(text, status.progress, "running")
    return progress_html(text, None, "failed" if status.status in ("failed", "interrupted") else "done")


def watch_job(service: StudioService, generation_id: int, poll_s: float = POLL_S) -> Iterator[JobStatus]:
    """The job's status now and at every poll until it has finished (its last status included)."""
    while True:
        status = service.status(generation_id)
        yield status
        if status.finished:
            return
        time.sleep(poll_s)
