"""What the studio tests share: an in-process StudioService whose jobs are recorded without running (for the
handlers' own tests), and the browser steps: fill the Create form, start a run, wait for a clip or a toast."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from playwright.sync_api import Page

TEST_MODEL = "random:tiny"


def open_service(data_dir: Path):
    """A StudioService with a real engine (for validation) and no worker: queued jobs stay queued."""
    from app.service import StudioService
    from core.pipeline import Engine
    from core.store import Store

    store = Store.open(data_dir)
    engine = Engine(device="cpu", output_dir=store.data_dir.staging)
    return StudioService(store, engine, default_model=TEST_MODEL, start_worker=False)


def finished_job(service, prompt: str, *, seed: int = 3, **fields) -> int:
    """Queue a request and record it as done with a small grey clip, as the worker would."""
    from core.request import GenerationRequest
    from core.store.jobs import enqueue_generation, record_finished_video, staged_video_path
    from core.video_io import write_video

    request = GenerationRequest(prompt=prompt, model=TEST_MODEL, **fields)
    job_id = enqueue_generation(service.store, request, source="ui")
    service.store.db.write(lambda session: _claim(session, job_id))
    video = staged_video_path(service.store, job_id)
    write_video(np.full((9, 64, 64, 3), 128, dtype=np.uint8), video, 8.0)
    metadata = {"seed": seed, "task": request.task, "request": {**request.to_dict(), "seed": seed},
                "output": {"width": 64, "height": 64, "fps": 8.0, "generated_frames": 9}}
    record_finished_video(service.store, job_id, video, metadata)
    return job_id


def _claim(session, job_id: int) -> None:
    from core.store import queue

    queue.claim_next(session, queue.worker_id(), job_id)

VIDEO_PLAYS = """(selector) => {
    const video = document.querySelector(selector);
    return video !== null && video.readyState >= 2 && video.duration > 0;
}"""


def set_number(page: Page, elem_id: str, value) -> None:
    """Type into a slider's or number box's number field (Enter commits it)."""
    field = page.locator(f"#{elem_id} input[type=number]")
    field.fill(str(value))
    field.press("Enter")


def generate(page: Page, prompt: str, *, steps: int = 2, seconds: float | None = None) -> None:
    page.fill("#kelp-prompt textarea", prompt)
    set_number(page, "kelp-steps", steps)
    if seconds is not None:
        set_number(page, "kelp-duration", seconds)
    page.click("#kelp-generate")


def wait_for_video(page: Page, selector: str = "#kelp-result video", timeout_s: float = 60) -> dict:
    """Wait until the <video> under `selector` can play; returns its readyState, duration and src."""
    page.wait_for_function(VIDEO_PLAYS, arg=selector, timeout=timeout_s * 1000)
    return page.evaluate("(s) => { const v = document.querySelector(s); "
                         "return {readyState: v.readyState, duration: v.duration, src: v.currentSrc}; }", selector)


def wait_for_toast(page: Page, text: str, timeout_s: float = 30) -> str:
    toast = page.locator(".toast-body", has_text=text).first
    toast.wait_for(timeout=timeout_s * 1000)
    return toast.inner_text()


def close_toasts(page: Page) -> None:
    for button in page.locator(".toast-close").all():
        if button.is_visible():
            button.click()
    time.sleep(0.2)


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
