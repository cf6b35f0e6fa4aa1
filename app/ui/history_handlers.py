"""The History tab's handlers: list a page of past generations with filters, show one, and change it (favourite,
rating, note, tags, project, trash, re-queue). Each takes the StudioService first; store errors become gr.Error."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from PIL import Image, ImageDraw

from app.service import StudioService
from core.store.queue import RESTARTABLE
from core.store.schema import GENERATION_STATUSES, Generation

ANY = "any"
PAGE_SIZE = 24
PLACEHOLDER_SIDE = 256


@dataclass
class HistoryFilters:
    """The filter widgets' values, in the order of HistoryTab.filter_components."""

    text: str = ""
    status: str = ANY
    model: str = ANY
    favourites: bool = False
    min_rating: str = ANY
    tag: str = ANY
    this_project: bool = False
    trash: bool = False

    def query(self, project_id: int | None) -> dict:
        """Keyword arguments for core.store.history.list_generations."""
        return dict(
            text=(self.text or "").strip() or None,
            status=None if self.status in (ANY, None) else self.status,
            model=None if self.model in (ANY, None) else self.model,
            favourite=True if self.favourites else None,
            min_rating=None if self.min_rating in (ANY, None) else int(self.min_rating),
            tag=None if self.tag in (ANY, None, "") else self.tag,
            project_id=project_id if self.this_project and project_id is not None else None,
            include_deleted=bool(self.trash),
        )


def _store_call(work: Callable):
    try:
        return work()
    except ValueError as err:
        raise gr.Error(str(err)) from err


def filter_choices(service: StudioService) -> tuple:
    """(status, model, tag) dropdown updates with what the history holds now."""
    from sqlalchemy import select

    from core.store.tags import list_tags

    with service.store.db.read() as session:
        models = sorted(m for m in session.scalars(select(Generation.model).distinct()) if m)
        tags = [tag.name for tag in list_tags(session)]
    return (gr.update(choices=[ANY, *GENERATION_STATUSES]), gr.update(choices=[ANY, *models]),
            gr.update(choices=[ANY, *tags]))


def placeholder(status: str) -> Image.Image:
    """A grey tile for a generation without a thumbnail (queued, running, failed ...)."""
    image = Image.new("RGB", (PLACEHOLDER_SIDE, PLACEHOLDER_SIDE), (228, 228, 231))
    draw = ImageDraw.Draw(image)
    draw.text((PLACEHOLDER_SIDE // 2, PLACEHOLDER_SIDE // 2), status, fill=(82, 82, 91), anchor="mm",
              font_size=28)
    return image


def _caption(job: Generation) -> str:
    marks = ("★ " if job.favourite else "") + ("🗑 " if job.deleted_at is not None else "")
    status = "" if job.status == "done" else f" [{job.status}]"
    prompt = job.prompt if len(job.prompt) <= 48 else job.prompt[:47] + "…"
    return f"{marks}#{job.id}{status} {prompt}"


def list_page(service: StudioService, project_id: int | None, page: int, *filter_values) -> tuple:
    """(gallery items, their ids, page note, page) for one page of the history."""
    from core.store.history import list_generations

    filters = HistoryFilters(*filter_values)

    def read():
        with service.store.db.read() as session:
            found = list_generations(session, **filters.query(project_id), page=max(1, int(page or 1)),
                                     page_size=PAGE_SIZE)
            if found.page > found.pages:  # the last page emptied (e.g. by a delete): show the one before
                found = list_generations(session, **filters.query(project_id), page=found.pages,
                                         page_size=PAGE_SIZE)
            items = [(str(service.store.asset_path(job.thumbnail)) if job.thumbnail is not None
                      else placeholder(job.status), _caption(job)) for job in found.items]
            return items, [job.id for job in found.items], found

    items, ids, found = _store_call(read)
    noun = "generation" if found.total == 1 else "generations"
    note = f"Page {found.page} of {found.pages} · {found.total} {noun}"
    if not found.total:
        note = "Nothing matches these filters." if any(filters.query(None).values()) else \
            "No generations yet: make one in the Create tab."
    return items, ids, note, found.page


def turn_page(delta: int, page: int) -> int:
    return max(1, int(page or 1) + delta)


def selected_id(ids: list[int], evt: gr.SelectData) -> int | None:
    index = evt.index if isinstance(evt.index, int) else None
    return ids[index] if index is not None and 0 <= index < len(ids) else None


def details(service: StudioService, generation_id: int | None) -> tuple:
    """One generation's panel: video, summary, favourite, rating, tags, note, settings, and which buttons apply."""
    if generation_id is None:
        return (None, "Pick a clip to play it and see its settings.", False, 0, "", "", None,
                *_buttons(None, None))
    with service.store.db.read() as session:
        job = session.get(Generation, generation_id)
        if job is None:
            raise gr.Error(f"`generation_id` must be the id of an existing generation but is {generation_id!r}")
        video = str(service.store.asset_path(job.video)) if job.video is not None else None
        values = (video, _summary(job), job.favourite, job.rating or 0, ", ".join(sorted(t.name for t in job.tags)),
                  job.note, _settings(job))
        status, deleted = job.status, job.deleted_at is not None
    return (*values, *_buttons(status, deleted))


def _buttons(status: str | None, deleted: bool | None) -> tuple:
    """Visibility of re-queue, delete (not while queued or running: cancel it first) and restore."""
    finished = status is not None and status not in ("queued", "running")
    return (gr.update(visible=status in RESTARTABLE), gr.update(visible=finished and not deleted),
            gr.update(visible=bool(deleted)))


def _summary(job: Generation) -> str:
    when = job.created_at.strftime("%Y-%m-%d %H:%M") if job.created_at else ""
    seed = "seed: random, not run yet" if job.seed is None else f"seed {job.seed}"
    project = f" · project “{job.project.name}”" if job.project is not None else ""
    lines = [f"**#{job.id}** · {job.status} · {when} UTC · {job.model}", seed + project]
    request = job.request or {}
    attention = attention_summary((job.result or {}).get("attention"), request.get("attention"))
    if attention:
        lines.append(attention)
    quant, text_quant = request.get("quant", "none"), request.get("text_encoder_quant", "none")
    if quant != "none" or text_quant != "none" or request.get("offload"):
        lines.append(f"weights: {quant}" + (f", text encoder {text_quant}" if text_quant != "none" else "")
                     + (", CPU offload" if request.get("offload") else ""))
    if request.get("vae_tile_size"):
        lines.append(f"VAE decoded in {request['vae_tile_size']} px tiles")
    if job.error:
        lines.append(f"Error: {job.error}")
    if job.deleted_at is not None:
        lines.append("In the trash: restore it to keep it.")
    return "\n\n".join([f"> {job.prompt}" if job.prompt else "> (no prompt)", *lines])


def attention_summary(report: dict | None, asked: str | None) -> str:
    """One line on sparse attention: what it achieved once run, or that it was asked for."""
    if report is None:
        return "attention: sparse (asked)" if asked == "sparse" else ""
    if report.get("mode") != "sparse":
        return ""
    if "mean_sparsity" not in report:
        return "attention: sparse asked, ran dense (clip too short for it)"
    share = report.get("search_share")
    search = f", searches {share:.0%} of sampling" if share is not None else ""
    return (f"attention: sparse, {report['mean_sparsity']:.0%} of blocks skipped, "
            f"{report['mean_recall']:.1%} of attention kept{search}")


def _settings(job: Generation) -> dict:
    """The full settings: once run, the engine's record (the request with every default filled in, the model's
    weights hash, timings, ...); before that, the request as it was asked for (None: the model's default)."""
    return json.loads(json.dumps(job.result or {"request": job.request}, default=str))


def set_favourite(service: StudioService, generation_id: int | None, favourite: bool) -> None:
    from core.store.generations import set_favourite as store_set_favourite

    _write(service, generation_id, lambda s: store_set_favourite(s, generation_id, bool(favourite)))


def set_rating(service: StudioService, generation_id: int | None, rating) -> None:
    from core.store.generations import set_rating as store_set_rating

    _write(service, generation_id, lambda s: store_set_rating(s, generation_id, int(rating) if rating else None))


def save_note(service: StudioService, generation_id: int | None, note: str) -> None:
    from core.store.generations import set_note

    _write(service, generation_id, lambda s: set_note(s, generation_id, note or ""))
    gr.Info("Note saved")


def save_tags(service: StudioService, generation_id: int | None, text: str) -> str:
    """Make the generation's tags exactly the comma-separated `text`; returns them as stored (normalised)."""
    from core.store.tags import add_tags, remove_tags

    wanted = [name for name in (part.strip() for part in (text or "").split(",")) if name]

    def replace(session) -> list[str]:
        current = [tag.name for tag in session.get(Generation, generation_id).tags]
        remove_tags(session, generation_id, current)
        return add_tags(session, generation_id, wanted) if wanted else []

    return ", ".join(_write(service, generation_id, replace))


def trash(service: StudioService, generation_id: int | None) -> None:
    from core.store.generations import trash_generation

    _write(service, generation_id, lambda s: trash_generation(s, generation_id))
    gr.Info(f"#{generation_id} moved to the trash; tick “Show the trash” to restore it")


def restore(service: StudioService, generation_id: int | None) -> None:
    from core.store.generations import restore_generation

    _write(service, generation_id, lambda s: restore_generation(s, generation_id))


def requeue(service: StudioService, generation_id: int | None) -> None:
    from core.store import queue

    _write(service, generation_id, lambda s: queue.requeue(s, generation_id))
    service.worker.notify()
    gr.Info(f"#{generation_id} is queued again")


def move_to_project(service: StudioService, generation_id: int | None, project_id: int | None) -> None:
    from core.store.generations import get_generation
    from core.store.projects import get_project

    if project_id is None:
        raise gr.Error("Pick a project at the top of the page first (`project` is none)")

    def move(session) -> None:
        get_generation(session, generation_id).project_id = get_project(session, project_id).id

    _write(service, generation_id, move)
    gr.Info(f"#{generation_id} is now in project {project_id}")


def _write(service: StudioService, generation_id: int | None, work: Callable):
    if generation_id is None:
        raise gr.Error("Pick a generation first")
    return _store_call(lambda: service.store.db.write(work))
