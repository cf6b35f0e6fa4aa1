"""Named API endpoints for scripts (`gradio_client`): /generate waits and returns the clip, /submit + /status +
/cancel work without waiting, /history lists past generations. They queue through the same StudioService as the
page, so API jobs share its one queue and show up in History (source "api").

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    video, info = client.predict("a red fox in snow", steps=20, seed=7, api_name="/generate")
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.data_classes import FileData

from app.service import JobStatus, StudioService
from core.request import GenerationRequest

API_CLIENT_ID = "api"
GENERATE_TIMEOUT_S = 6 * 3600.0  # /generate gives up waiting (the job goes on) after this long


def _uploaded(name: str, value: Any) -> str | None:
    """The server-side path of a file the client uploaded (gradio_client.handle_file). A bare path string is
    refused: it would let a remote caller make the studio read any file on this machine."""
    if value is None or value == "":
        return None
    if isinstance(value, dict) and isinstance(value.get("path"), str):
        return value["path"]  # Gradio has checked that it lies in its upload folder
    raise gr.Error(f"`{name}` must be a file sent with gradio_client.handle_file(path), got {value!r}")


def _frames(num_frames: int | None, seconds: float | None, fps: float | None, model: str) -> int | None:
    if seconds is None:
        return num_frames
    if num_frames is not None:
        raise gr.Error(f"give `num_frames` or `seconds`, not both; got {num_frames!r} and {seconds!r}")
    from app.ui.create_form import seconds_to_frames
    from core.model_loader import resolve_model

    return seconds_to_frames(seconds, fps or resolve_model(model).defaults.fps)


def api_request(service: StudioService, prompt: str, negative_prompt: str, model: str, width: int | None,
                height: int | None, num_frames: int | None, seconds: float | None, fps: float | None,
                steps: int | None, guidance_scale: float | None, sampler: str | None, seed: int | None,
                image: Any, last_image: Any) -> GenerationRequest:
    """The request an API call describes; None (or "") leaves a setting at the model's default."""
    model = model or service.default_model
    try:
        frames = _frames(num_frames, seconds, fps, model)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    return GenerationRequest(
        prompt=prompt, negative_prompt=negative_prompt or "", model=model, width=width, height=height,
        num_frames=frames, fps=fps, steps=steps, guidance_scale=guidance_scale, sampler=sampler or None, seed=seed,
        image=_uploaded("image", image), last_image=_uploaded("last_image", last_image),
    )


def _submit(service: StudioService, request: GenerationRequest) -> int:
    try:
        return service.submit(request, client_id=API_CLIENT_ID, source="api")
    except ValueError as err:
        raise gr.Error(str(err)) from err


def status_dict(service: StudioService, status: JobStatus) -> dict:
    """A job's status as JSON: status, place in the queue, progress, seed, error, and once done the engine's record."""
    from core.store.schema import Generation

    info = {"job_id": status.generation_id, "status": status.status, "place": status.place,
            "stage": status.stage, "step": status.step, "total": status.total, "progress": round(status.progress, 4),
            "eta_s": status.eta_s, "seed": status.seed, "error": status.error}
    if status.status == "done":
        with service.store.db.read() as session:
            info["result"] = dict(session.get(Generation, status.generation_id).result or {})
    return info


def _video(status: JobStatus) -> FileData | None:
    if status.video_path is None:
        return None
    return FileData(path=str(status.video_path), orig_name=f"kelp-{status.generation_id}.mp4")


def _job_status(service: StudioService, job_id: int) -> JobStatus:
    try:
        return service.status(int(job_id))
    except (TypeError, ValueError) as err:
        raise gr.Error(str(err)) from err


def register_api(service: StudioService) -> None:
    """Add the named endpoints to the Blocks being built (call inside `with gr.Blocks()`)."""

    def generate(prompt: str, negative_prompt: str = "", model: str = "", width: int | None = None,
                 height: int | None = None, num_frames: int | None = None, seconds: float | None = None,
                 fps: float | None = None, steps: int | None = None, guidance_scale: float | None = None,
                 sampler: str = "", seed: int | None = None, image: FileData | None = None,
                 last_image: FileData | None = None) -> tuple[FileData, dict]:
        """Make one clip and wait for it: returns the mp4 and its metadata (seed, settings, timings)."""
        request = api_request(service, prompt, negative_prompt, model, width, height, num_frames, seconds, fps,
                              steps, guidance_scale, sampler, seed, image, last_image)
        status = service.wait(_submit(service, request), timeout=GENERATE_TIMEOUT_S)
        if status.status != "done":
            detail = f": {status.error}" if status.error else ""
            raise gr.Error(f"job {status.generation_id} {status.status}{detail}")
        return _video(status), status_dict(service, status)

    def submit(prompt: str, negative_prompt: str = "", model: str = "", width: int | None = None,
               height: int | None = None, num_frames: int | None = None, seconds: float | None = None,
               fps: float | None = None, steps: int | None = None, guidance_scale: float | None = None,
               sampler: str = "", seed: int | None = None, image: FileData | None = None,
               last_image: FileData | None = None) -> dict:
        """Queue one clip and return at once with its job id and place in the queue; poll /status."""
        request = api_request(service, prompt, negative_prompt, model, width, height, num_frames, seconds, fps,
                              steps, guidance_scale, sampler, seed, image, last_image)
        return status_dict(service, service.status(_submit(service, request)))

    def status(job_id: int) -> tuple[FileData | None, dict]:
        """A job's status; the mp4 too once it is done."""
        current = _job_status(service, job_id)
        return _video(current), status_dict(service, current)

    def cancel(job_id: int) -> dict:
        """Cancel a queued job, or stop a running one within one model call."""
        _job_status(service, job_id)
        service.cancel(int(job_id))
        return status_dict(service, service.status(int(job_id)))

    def history(text: str = "", page: int = 1, page_size: int = 20, status: str = "", model: str = "",
                favourite: bool = False, tag: str = "") -> dict:
        """One page of past generations, newest first, with search (prompt and note words) and filters."""
        return history_page(service, text, page, page_size, status, model, favourite, tag)

    for fn in (generate, submit, status, cancel, history):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=None)


def history_page(service: StudioService, text: str, page: int, page_size: int, status: str, model: str,
                 favourite: bool, tag: str) -> dict:
    from core.store.history import list_generations

    try:
        with service.store.db.read() as session:
            found = list_generations(session, text=text or None, status=status or None, model=model or None,
                                     favourite=True if favourite else None, tag=tag or None, page=int(page),
                                     page_size=int(page_size))
            items = [{"job_id": job.id, "created_at": job.created_at.isoformat(timespec="seconds"),
                      "status": job.status, "prompt": job.prompt, "model": job.model, "seed": job.seed,
                      "task": job.task, "favourite": job.favourite, "rating": job.rating, "note": job.note,
                      "tags": sorted(t.name for t in job.tags), "project_id": job.project_id,
                      "error": job.error} for job in found.items]
    except ValueError as err:
        raise gr.Error(str(err)) from err
    return {"items": items, "total": found.total, "page": found.page, "pages": found.pages,
            "page_size": found.page_size}
