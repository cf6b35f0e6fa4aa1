"""The Create tab's handlers: queue a job, watch it, cancel it, pick it up again after a page refresh, and act on
the finished clip (extend, remix, add to a storyboard). Each takes the StudioService first (bound with
functools.partial by create_tab.py); a ValueError from the engine or the store becomes a gr.Error."""

from __future__ import annotations

import gradio as gr

from app.service import StudioService
from app.ui.create_form import (
    FORM_FIELDS, NO_LORA, FormValues, duration_note, form_from_request, request_from_form, size_choices,
)
from app.ui.job_progress import progress_html, status_html, watch_job
from core.model_loader import RANDOM_PREFIX, resolve_model


TASK_NAMES = {"text_to_video": "text to video", "image_to_video": "image to video",
              "first_last_frame": "first + last frame", "extend": "extended clip", "multishot": "multi-shot"}


def model_choices(service: StudioService) -> list[tuple[str, str]]:
    """(label, name): the studio's default model first; random presets are labelled as untrained."""
    names = [service.default_model] + [name for name in service.models() if name != service.default_model]
    return [(f"{name} (untrained, random weights)" if name.startswith(RANDOM_PREFIX) else name, name)
            for name in names]


def lora_choices(service: StudioService) -> list[tuple[str, str]]:
    from core.store.loras import list_loras

    with service.store.db.read() as session:
        loras = [(lora.name, lora.base_model, str(service.store.asset_path(lora.asset)))
                 for lora in list_loras(session)]
    return [("none", NO_LORA)] + [(f"{name} (trained on {base})" if base else name, path)
                                  for name, base, path in loras]


def _defaults(model: str):
    try:
        return resolve_model(model).defaults
    except ValueError as err:
        raise gr.Error(str(err)) from err


def model_settings(model: str) -> tuple:
    """Size, duration, frame note, steps, guidance, sampler and fps set to `model`'s defaults."""
    d = _defaults(model)
    seconds = (d.num_frames - 1) / d.fps
    return (gr.update(choices=size_choices(d), value=f"{d.width}x{d.height}"),
            duration_slider(d.fps, d.max_frames, seconds), duration_note(seconds, d.fps),
            d.steps, d.guidance_scale, d.sampler, d.fps)


def saved_defaults(service) -> tuple:
    """Size, steps and guidance from the defaults saved in Models & settings (unchanged where none is saved)."""
    from app.settings_defaults import load_generation_defaults

    saved, d = load_generation_defaults(service.store), _defaults(service.default_model)
    size = gr.update()
    if saved.width is not None and saved.height is not None:
        current = f"{saved.width}x{saved.height}"
        size = gr.update(choices=size_choices(d, current), value=current)
    steps = saved.steps if saved.steps is not None else gr.update()
    guidance = saved.guidance_scale if saved.guidance_scale is not None else gr.update()
    return size, steps, guidance


def duration_slider(fps: float, max_frames: int, seconds: float | None = None):
    """The duration slider for `fps`: steps of 4 frames, from 5 frames to the model's longest clip."""
    step = 4 / fps
    return gr.update(minimum=step, maximum=(max_frames - 1) / fps, step=step,
                     **({} if seconds is None else {"value": seconds}))


def fps_changed(model: str, fps: float, seconds: float) -> tuple:
    if not fps or fps <= 0:
        return gr.skip(), duration_note(seconds, fps)
    return duration_slider(fps, _defaults(model).max_frames), duration_note(seconds, fps)


def refresh_models(service: StudioService, current: str):
    choices = model_choices(service)
    return gr.update(choices=choices, value=current if current in {name for _, name in choices} else choices[0][1])


def refresh_loras(service: StudioService, current: str):
    choices = lora_choices(service)
    return gr.update(choices=choices, value=current if current in {path for _, path in choices} else NO_LORA)


# Jobs --------------------------------------------------------------------------------------------------------


def submit_job(service: StudioService, client_id: str, project_id: int | None, *values) -> tuple:
    """Queue the form's request; returns (job id, progress line)."""
    try:
        request = request_from_form(FormValues(*values))
        job_id = service.submit(request, client_id=client_id or "", source="ui", project_id=project_id)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    return job_id, status_html(service, service.status(job_id))


def follow_job(service: StudioService, job_id: int | None):
    """Yield (progress, video, result note, result id, seed) as the job moves, until it has finished; the seed
    box gets the seed the job used, so that unticking "Random seed" repeats it."""
    if job_id is None:
        return
    shown, unchanged = None, (gr.skip(),) * 4
    for status in watch_job(service, job_id):
        line = status_html(service, status)
        if status.status == "done":
            yield line, str(status.video_path), result_note(service, job_id), job_id, status.seed
        elif status.finished:
            if status.status == "failed":
                gr.Warning(f"Job {job_id} failed: {status.error}")
            yield line, *unchanged
        elif line != shown:
            yield line, *unchanged
        shown = line


def result_note(service: StudioService, job_id: int) -> str:
    from core.store.schema import Generation

    with service.store.db.read() as session:
        job = session.get(Generation, job_id)
        result, seed = dict(job.result or {}), job.seed
    output = result.get("output", {})
    took = (result.get("timings") or {}).get("total_s")
    task = TASK_NAMES.get(result.get("task", ""), result.get("task", ""))
    parts = [f"**Job {job_id}**", task, f"seed **{seed}**"]
    if output:
        parts.append(f"{output.get('width')}×{output.get('height')}, {output.get('generated_frames')} frames "
                     f"at {output.get('fps') or 0:g} fps")
    if took is not None:
        parts.append(f"made in {took:.1f} s")
    return " · ".join(parts)


def cancel_job(service: StudioService, job_id: int | None) -> str:
    if job_id is None:
        raise gr.Error("There is no job to cancel: nothing has been queued from this page")
    status = service.cancel(job_id)
    if status == "running":
        return progress_html(f"Job {job_id}: stopping ...", None, "running")
    if status == "cancelled":
        return progress_html(f"Job {job_id} cancelled", None, "done")
    return progress_html(f"Job {job_id} had already finished ({status})", None, "done")


def resume_job(service: StudioService, client_id: str, page_job: int | None) -> tuple:
    """After a page (re)load: this browser's running or next queued job, so that the page watches it again, as
    (page's job, progress, job to watch). A Generate pressed before the page finished loading wins."""
    jobs = service.client_jobs(client_id) if client_id and page_job is None else []
    if not jobs:
        return gr.skip(), gr.skip(), None
    return jobs[0].generation_id, status_html(service, jobs[0]), jobs[0].generation_id


def queue_table(service: StudioService, client_id: str) -> str:
    """This browser's queued and running jobs, as a Markdown table."""
    from core.store.schema import Generation

    jobs = service.client_jobs(client_id) if client_id else []
    if not jobs:
        return "Nothing of yours is queued or running."
    with service.store.db.read() as session:
        prompts = {job.generation_id: (session.get(Generation, job.generation_id).prompt or "")
                   for job in jobs}
    rows = ["| Job | Where | Prompt |", "|---:|---|---|"]
    for job in jobs:
        where = f"running, {job.progress:.0%}" if job.place == 0 else f"#{job.place} in the queue"
        prompt = prompts[job.generation_id][:60].replace("|", "/")
        rows.append(f"| {job.generation_id} | {where} | {prompt} |")
    return "\n".join(rows)


# The finished clip ---------------------------------------------------------------------------------------------


def _video_of(service: StudioService, generation_id: int | None) -> str:
    if generation_id is None:
        raise gr.Error("There is no finished clip on this page yet")
    status = service.status(generation_id)
    if status.video_path is None:
        raise gr.Error(f"Job {generation_id} has no video ({status.status})")
    return str(status.video_path)


def extend_result(service: StudioService, generation_id: int | None) -> tuple:
    """Make the shown clip the one the next run continues (image inputs are cleared: extend starts from video)."""
    video = _video_of(service, generation_id)
    banner = f"Extending job {generation_id}: the next run continues this clip."
    return video, banner, gr.update(visible=True), None, None


def clear_extend() -> tuple:
    return None, "", gr.update(visible=False)


def remix_values(service: StudioService, generation_id: int | None, new_seed: bool) -> FormValues:
    from core.store.remix import remix_request

    if generation_id is None:
        raise gr.Error("Pick a generation to remix first")
    try:
        with service.store.db.read() as session:
            request = remix_request(service.store, session, int(generation_id),
                                    **({"seed": None} if new_seed else {}))
        defaults = resolve_model(request.model).defaults
    except ValueError as err:
        raise gr.Error(str(err)) from err
    if request.shots:
        gr.Warning(f"Job {generation_id} is multi-shot; the form takes its shared prompt, the Storyboard tab its shots")
    return form_from_request(request, defaults)


def form_updates(service: StudioService, form: FormValues) -> tuple:
    """Updates for every form component (CreateForm.components order), filling it with `form`."""
    d = _defaults(form.model)
    updates = dict(zip(FORM_FIELDS, form.values()))
    updates["model"] = refresh_models(service, form.model)
    updates["size"] = gr.update(choices=size_choices(d, form.size), value=form.size)
    updates["seconds"] = duration_slider(form.fps, d.max_frames, form.seconds)
    updates["lora"] = _lora_update(service, form.lora)
    updates["quant"] = _quant_value(service, form.quant)
    updates["text_encoder_quant"] = _quant_value(service, form.text_encoder_quant)
    return tuple(updates.values())


def _quant_value(service: StudioService, quant: str) -> str:
    """A remixed job's weights mode, or full precision (with a warning) where this device cannot run it."""
    from core.quant.modes import available_modes

    if quant in available_modes(service.engine.device):
        return quant
    gr.Warning(f"This job used {quant!r} weights, which this device ({service.engine.device}) cannot run; "
               f"the remix uses full precision")
    return "none"


def _lora_update(service: StudioService, path: str):
    choices = lora_choices(service)
    if path and path not in {value for _, value in choices}:
        choices.append((f"{path} (not in the studio's LoRAs)", path))
    return gr.update(choices=choices, value=path)


def remix_result(service: StudioService, generation_id: int | None, new_seed: bool = False) -> tuple:
    """The form filled from a past job (the seed it used, or a new random one), the extend banner to match."""
    form = remix_values(service, generation_id, new_seed)
    banner = f"Extending the clip that job {generation_id} continued." if form.extend_video else ""
    return (*form_updates(service, form), banner, gr.update(visible=bool(form.extend_video)),
            duration_note(form.seconds, form.fps))


def add_result_to_storyboard(service: StudioService, project_id: int | None, generation_id: int | None) -> None:
    from app.storyboard_actions import add_generation_to_storyboard

    if generation_id is None:
        raise gr.Error("There is no finished clip on this page yet")
    try:
        message = add_generation_to_storyboard(service, project_id, generation_id)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    gr.Info(message)
