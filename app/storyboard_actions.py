"""The storyboard as the studio works it: shots from past generations, generating every shot (one native multi-shot
pass, or shot after shot from the previous shot's last frame), re-rendering one shot, choosing takes, and cutting
the chosen takes into one video that History lists. Service-level functions over StudioService; no Gradio here.

A shot's caption is the storyboard's subject, then the shot's prompt, joined as the engine joins them for a native
multi-shot pass ("subject. prompt"), so a shot re-rendered alone is described exactly as in the pass.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cutting import DEFAULT_CROSSFADE_FRAMES, CutPiece, cut_videos, plan_cut, split_video_frames
from core.request import GenerationRequest, ShotSpec
from core.store import queue
from core.store.generations import get_generation
from core.store.jobs import record_finished_video, staged_video_path
from core.store.projects import create_project, get_project
from core.store.schema import Generation, Project, Shot, utc_now
from core.store.storyboards import add_shot, create_storyboard, get_shot, get_storyboard, list_storyboards
from core.store.takes import choose_take, list_takes, record_take
from core.video_io import read_video_frames, read_video_info, write_video

logger = logging.getLogger(__name__)

DEFAULT_PROJECT_NAME = "My storyboard"  # where shots go when no project is picked
DEFAULT_STORYBOARD_NAME = "Storyboard"
SEGMENT_TASK = "shot_segment"  # a shot's part of a native multi-shot video, recorded as that shot's take
CUT_TASK = "cut"
# Storyboard settings that are request fields, shared by every shot's request. Not the seed: a re-render must differ
# from the take it replaces, so seeds are passed per call.
REQUEST_SETTINGS = ("model", "negative_prompt", "width", "height", "fps", "steps", "guidance_scale", "sampler", "shift")
POLL_S = 0.5


# Reading ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TakeView:
    generation_id: int
    status: str
    video_path: Path | None
    seed: int | None
    task: str


@dataclass(frozen=True)
class ShotView:
    id: int
    position: int  # 0-based
    prompt: str
    num_frames: int
    reference_path: Path | None
    transition: str
    trim_start: int
    trim_end: int
    chosen_id: int | None
    takes: tuple[TakeView, ...]

    @property
    def chosen(self) -> TakeView | None:
        return next((take for take in self.takes if take.generation_id == self.chosen_id), None)


@dataclass(frozen=True)
class StoryboardView:
    id: int
    project_id: int
    project_name: str
    name: str
    subject: str
    mode: str
    shots: tuple[ShotView, ...]


def caption(subject: str, prompt: str) -> str:
    """A shot's whole caption, as core.pipeline writes it for each shot of a multi-shot pass."""
    subject = subject.strip()
    return f"{subject}. {prompt.strip()}" if subject else prompt.strip()


def find_storyboard(service, project_id: int | None, *, create: bool = False) -> int | None:
    """The project's first storyboard (None: the "My storyboard" project's); made, with its project, when
    `create` is set and there is none, else None."""
    def find(session: Session) -> int | None:
        project = _default_project(session, create) if project_id is None else get_project(session, project_id)
        if project is None:
            return None
        storyboards = list_storyboards(session, project.id)
        if storyboards:
            return storyboards[0].id
        return create_storyboard(session, project.id, DEFAULT_STORYBOARD_NAME).id if create else None

    if create:
        return service.store.db.write(find)
    with service.store.db.read() as session:
        return find(session)


def storyboard_view(service, storyboard_id: int) -> StoryboardView:
    with service.store.db.read() as session:
        storyboard = get_storyboard(session, storyboard_id)
        shots = tuple(_shot_view(service, session, shot) for shot in storyboard.shots)
        return StoryboardView(storyboard.id, storyboard.project_id, storyboard.project.name, storyboard.name,
                              storyboard.subject, storyboard.mode, shots)


def list_shot_takes(service, shot_id: int) -> list[TakeView]:
    """The shot's takes, oldest first."""
    with service.store.db.read() as session:
        return [_take_view(service, take) for take in list_takes(session, shot_id)]


def choose_shot_take(service, shot_id: int, generation_id: int | None) -> None:
    """The take the cut uses for this shot (None: none)."""
    service.store.db.write(lambda session: choose_take(session, shot_id, generation_id))


@dataclass(frozen=True)
class ShotTiming:
    fps: float  # the frame rate shots are made at
    default_frames: int  # a new shot's length
    max_frames: int  # all shots of one native pass together


def shot_timing(service, storyboard_id: int | None) -> ShotTiming:
    """From the storyboard's settings, else the model's defaults."""
    settings: dict[str, Any] = {}
    if storyboard_id is not None:
        with service.store.db.read() as session:
            settings = dict(get_storyboard(session, storyboard_id).settings)
    validated = service.engine.validate(GenerationRequest(prompt="-", **_request_settings(service, settings)))
    return ShotTiming(float(validated.request.fps), int(validated.request.num_frames),
                      int(validated.model.defaults.max_frames))


# Adding a generation ------------------------------------------------------------------------------------------------

def add_generation_to_storyboard(service, project_id: int | None, generation_id: int) -> str:
    """Add a finished generation to the project's storyboard as a new last shot whose chosen take it is; returns
    a short message for the user. With no project, a project named "My storyboard" is used (made if needed)."""
    with service.store.db.read() as session:
        generation = get_generation(session, generation_id)
        if generation.status != "done" or generation.video is None:
            raise ValueError(f"`generation_id` must be a finished generation with a video but {generation_id} is "
                             f"{generation.status!r}")
        if generation.shot_id is not None:
            raise ValueError(f"`generation_id` {generation_id} is already a take of shot {generation.shot_id}; "
                             f"duplicate that shot instead")
        frames = read_video_info(service.store.asset_path(generation.video)).num_frames

    def add(session: Session) -> str:
        made_project = project_id is None and _default_project(session, create=False) is None
        project = _default_project(session, True) if project_id is None else get_project(session, project_id)
        storyboards = list_storyboards(session, project.id)
        storyboard = storyboards[0] if storyboards else create_storyboard(session, project.id, DEFAULT_STORYBOARD_NAME)
        generation = get_generation(session, generation_id)
        prompt = str((generation.request or {}).get("prompt") or generation.prompt)
        shot = add_shot(service.store, session, storyboard.id, prompt, max(1, (frames - 1) // 4 * 4 + 1))
        record_take(session, shot.id, generation.id)
        choose_take(session, shot.id, generation.id)
        if generation.project_id is None:
            generation.project_id = project.id
        where = f"shot {shot.position + 1} of “{storyboard.name}” in project “{project.name}”"
        return f"Added as {where}" + (" (a new project, as none was picked)." if made_project else ".")

    return service.store.db.write(add)


# Generating ---------------------------------------------------------------------------------------------------------

@dataclass
class StoryboardRender:
    """A storyboard (or one shot) being generated in the background: its jobs so far (a chained run queues each
    shot once the one before is done), whether the run has ended, and why it stopped early."""

    storyboard_id: int
    mode: str  # "native", "chained" or "shot"
    shot_ids: tuple[int, ...]
    job_ids: list[int] = field(default_factory=list)
    error: str = ""
    _ended: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished(self) -> bool:
        return self._ended.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the run has ended (cancelling one of its jobs ends it too)."""
        return self._ended.wait(timeout)


@dataclass(frozen=True)
class _ShotPlan:
    id: int
    prompt: str
    num_frames: int
    reference: str | None  # the stored reference image, if any


def render_storyboard(service, storyboard_id: int, *, client_id: str, seed: int | None = None,
                      steps: int | None = None) -> StoryboardRender:
    """Generate every shot as the storyboard's mode says; each shot's new take is chosen as it lands.

    native: one multi-shot request (the subject as prompt, each shot's prompt and length; shot 1's reference
    image as its first frame), then its video split into one take per shot. chained: shot after shot, each from
    the previous shot's new take's last frame, or from its own reference image when it has one; with `seed`,
    shot k uses seed + k - 1. Requests are checked before anything is queued (ValueError naming shot and field).
    """
    with service.store.db.read() as session:
        storyboard = get_storyboard(session, storyboard_id)
        plans = [_plan(service, shot) for shot in storyboard.shots]
        subject, mode, project_id = storyboard.subject, storyboard.mode, storyboard.project_id
        settings = {**_request_settings(service, dict(storyboard.settings)), **_chosen(seed=seed, steps=steps)}
    if not plans:
        raise ValueError(f"`storyboard_id` {storyboard_id} has no shots to generate; add a shot first")
    for number, plan in enumerate(plans, start=1):
        _check_prompt(plan, number)
    run = StoryboardRender(storyboard_id, mode, tuple(plan.id for plan in plans))
    origin = dict(client_id=client_id, source="ui", project_id=project_id)
    if mode == "native":
        shots = tuple(ShotSpec(plan.prompt, plan.num_frames) for plan in plans)
        request = GenerationRequest(prompt=subject, shots=shots, image=plans[0].reference, **settings)
        _check_request(service, request, "")
        run.job_ids.append(service.submit(request, **origin))
        _start(run, _finish_native, service, run, plans)
        return run
    requests = [_shot_request(subject, plan, settings, index, plan.reference) for index, plan in enumerate(plans)]
    for number, request in enumerate(requests, start=1):
        _check_request(service, request, f"Shot {number}: ")
    run.job_ids.append(service.submit(requests[0], shot_id=plans[0].id, **origin))
    _start(run, _run_chain, service, run, plans, requests, origin)
    return run


def rerender_shot(service, shot_id: int, *, client_id: str, seed: int | None = None) -> StoryboardRender:
    """A new take of one shot alone (subject + its prompt), chosen once done; the other shots keep their takes.

    It starts from its reference image when it has one, else from the previous shot's chosen take's last frame,
    so that it carries the story on."""
    with service.store.db.read() as session:
        shot = get_shot(session, shot_id)
        storyboard = shot.storyboard
        plan = _plan(service, shot)
        before = storyboard.shots[shot.position - 1] if shot.position > 0 else None
        previous = _done_take(service, before.chosen) if before is not None else None
        settings = {**_request_settings(service, dict(storyboard.settings)), **_chosen(seed=seed)}
        subject, project_id, storyboard_id = storyboard.subject, storyboard.project_id, storyboard.id
        number = shot.position + 1
    _check_prompt(plan, number)
    run = StoryboardRender(storyboard_id, "shot", (shot_id,))
    with tempfile.TemporaryDirectory(dir=service.store.data_dir.staging) as folder:
        image = plan.reference or (_last_frame_png(previous[1], folder) if previous else None)
        request = _shot_request(subject, plan, settings, 0, image)
        _check_request(service, request, f"Shot {number}: ")
        job = service.submit(request, client_id=client_id, source="ui", project_id=project_id, shot_id=shot_id,
                             parent_id=previous[0] if previous and not plan.reference else None)
    run.job_ids.append(job)
    _start(run, _finish_shot, service, run, plan.id, job)
    return run


def split_native_take(service, generation_id: int, shot_ids: tuple[int, ...] | list[int]) -> list[int]:
    """Record each shot's part of a finished multi-shot generation as a take of that shot (a done generation whose
    parent is the multi-shot one) and choose it; returns the new takes' ids, or [] if it was split before.

    Crash-safe as jobs are: the rows are claimed (running) first, each part is staged as gen-<id>.mp4 with its
    metadata, then recorded; a crash in between is finished or marked interrupted at the next start-up."""
    with service.store.db.read() as session:
        parent = get_generation(session, generation_id)
        if parent.status != "done" or parent.video is None or parent.task != "multishot":
            raise ValueError(f"`generation_id` must be a finished multi-shot generation but {generation_id} is a "
                             f"{parent.status} {parent.task}")
        video, metadata, counts = service.store.asset_path(parent.video), dict(parent.result), \
            [int(spec["num_frames"]) for spec in parent.request["shots"]]
    if len(counts) != len(shot_ids):
        raise ValueError(f"`shot_ids` must name the generation's {len(counts)} shots but is {list(shot_ids)!r}")
    segment_ids = service.store.db.write(lambda session: _claim_segments(session, generation_id, list(shot_ids)))
    fps = read_video_info(video).fps
    first = 0
    parts = split_video_frames(video, counts)
    for index, (segment_id, shot_id, frames) in enumerate(zip(segment_ids, shot_ids, parts)):
        part = {**metadata, "task": SEGMENT_TASK,
                "segment": {"of": generation_id, "shot": index, "first_frame": first, "num_frames": len(frames)}}
        first += len(frames)
        staged = write_video(frames, staged_video_path(service.store, segment_id), fps, part)
        record_finished_video(service.store, segment_id, staged, part)
        service.store.db.write(lambda session, s=shot_id, g=segment_id: _choose_if_take(session, s, g))
    return segment_ids


# Cutting ------------------------------------------------------------------------------------------------------------

def cut_storyboard(service, storyboard_id: int, out_path: str | Path | None = None, *,
                   crossfade_frames: int = DEFAULT_CROSSFADE_FRAMES, client_id: str = "") -> Path:
    """Stitch the shots' chosen takes in order (each trimmed, joined by its transition; a crossfade overlaps the
    shots by `crossfade_frames`, so it shortens the cut by that many) into one H.264 mp4, kept in the file store
    and recorded as a "cut" generation of the project so History lists it. Returns the stored file, or `out_path`
    (a copy) when given."""
    with service.store.db.read() as session:
        storyboard = get_storyboard(session, storyboard_id)
        pieces, takes = [], []
        for shot in storyboard.shots:
            take = _done_take(service, shot.chosen)
            if take is None:
                raise ValueError(f"Shot {shot.position + 1} has no finished chosen take; generate it first")
            pieces.append(CutPiece(take[1], shot.trim_start, shot.trim_end, shot.transition))
            takes.append(dict(shot_id=shot.id, generation_id=take[0], trim_start=shot.trim_start,
                              trim_end=shot.trim_end, transition=shot.transition))
        name, subject, project_id = storyboard.name, storyboard.subject, storyboard.project_id
    if not pieces:
        raise ValueError(f"`storyboard_id` {storyboard_id} has no shots to cut; add a shot first")
    timeline = plan_cut([read_video_info(piece.video).num_frames for piece in pieces], pieces, crossfade_frames)
    description = dict(storyboard_id=storyboard_id, storyboard=name, crossfade_frames=crossfade_frames,
                       total_frames=timeline.total_frames, shots=takes)
    cut_id = service.store.db.write(
        lambda session: _claim_cut(session, description, f"Cut of {name}: {subject}".strip(" :"), project_id,
                                   client_id))
    metadata = {"task": CUT_TASK, "cut": description}
    try:
        staged = cut_videos(pieces, staged_video_path(service.store, cut_id), crossfade_frames=crossfade_frames,
                            metadata=metadata)
    except Exception as error:  # recorded as failed, as a job would be, then passed on
        message = f"{type(error).__name__}: {error}"
        service.store.db.write(lambda session: _fail(session, cut_id, message))
        raise
    stored = record_finished_video(service.store, cut_id, staged, metadata)
    if out_path is None:
        return stored
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(stored, out_path)
    return out_path


def latest_cut(service, storyboard_id: int) -> tuple[int, Path] | None:
    """The newest finished cut of the storyboard: (generation id, video path)."""
    with service.store.db.read() as session:
        storyboard = get_storyboard(session, storyboard_id)
        query = (select(Generation).where(Generation.task == CUT_TASK, Generation.status == "done",
                                          Generation.project_id == storyboard.project_id,
                                          Generation.deleted_at.is_(None))
                 .order_by(Generation.id.desc()))
        for cut in session.scalars(query):
            if (cut.request or {}).get("storyboard_id") == storyboard_id and cut.video is not None:
                return cut.id, service.store.asset_path(cut.video)
    return None


def export_copy(generation_id: int, video: str | Path, name: str) -> Path:
    """A copy of a finished video under a readable file name, to offer for download; one per generation, made once
    (in the system's temporary folder, which Gradio may serve)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-") or "storyboard"
    target = Path(tempfile.gettempdir()) / "kelp-exports" / str(generation_id) / f"{safe}.mp4"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(video, staged)
        staged.replace(target)
    return target


# Helpers -------------------------------------------------------------------------------------------------------------

def _default_project(session: Session, create: bool) -> Project | None:
    query = (select(Project).where(Project.name == DEFAULT_PROJECT_NAME, Project.deleted_at.is_(None))
             .order_by(Project.id))
    project = session.scalars(query).first()
    if project is None and create:
        project = create_project(session, DEFAULT_PROJECT_NAME, "Shots added when no project was picked.")
    return project


def _take_view(service, take: Generation) -> TakeView:
    path = service.store.asset_path(take.video) if take.video is not None else None
    return TakeView(take.id, take.status, path, take.seed, take.task)


def _shot_view(service, session: Session, shot: Shot) -> ShotView:
    takes = tuple(_take_view(service, take) for take in list_takes(session, shot.id))
    reference = service.store.asset_path(shot.reference) if shot.reference is not None else None
    return ShotView(shot.id, shot.position, shot.prompt, shot.num_frames, reference, shot.transition,
                    shot.trim_start, shot.trim_end, shot.chosen_generation_id, takes)


def _plan(service, shot: Shot) -> _ShotPlan:
    reference = str(service.store.asset_path(shot.reference)) if shot.reference is not None else None
    return _ShotPlan(shot.id, shot.prompt, shot.num_frames, reference)


def _done_take(service, take: Generation | None) -> tuple[int, Path] | None:
    if take is None or take.status != "done" or take.video is None:
        return None
    return take.id, service.store.asset_path(take.video)


def _chosen(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _request_settings(service, settings: dict[str, Any]) -> dict[str, Any]:
    return {"model": service.default_model, **{key: settings[key] for key in REQUEST_SETTINGS if key in settings}}


def _shot_request(subject: str, plan: _ShotPlan, settings: dict[str, Any], index: int,
                  image: str | None) -> GenerationRequest:
    seed = settings.get("seed")
    values = {**settings, "seed": seed + index if seed is not None else None}
    return GenerationRequest(prompt=caption(subject, plan.prompt), num_frames=plan.num_frames, image=image, **values)


def _check_prompt(plan: _ShotPlan, number: int) -> None:
    if not plan.prompt.strip():
        raise ValueError(f"Shot {number}: `prompt` must say what happens in the shot but is {plan.prompt!r}")


def _check_request(service, request: GenerationRequest, where: str) -> None:
    try:
        service.engine.validate(request)
    except ValueError as error:
        raise ValueError(f"{where}{error}") from error


def _last_frame_png(video: Path, folder: str | Path) -> str:
    frames, _ = read_video_frames(video)
    path = Path(folder) / "previous-last-frame.png"
    Image.fromarray(frames[-1]).save(path)
    return str(path)


def _start(run: StoryboardRender, work, *args) -> None:
    def body() -> None:
        try:
            work(*args)
        except Exception as error:  # a background run must end and say why, whatever went wrong
            logger.exception("storyboard %d: the run stopped", run.storyboard_id)
            run.error = run.error or f"{type(error).__name__}: {error}"
        finally:
            run._ended.set()

    threading.Thread(target=body, name=f"kelp-storyboard-{run.storyboard_id}", daemon=True).start()


def _wait(service, run: StoryboardRender, job_id: int):
    """Wait for a job however long it takes (real models are slow); one that did not finish well ends the run."""
    status = service.status(job_id)
    while not status.finished:
        status = service.wait(job_id, timeout=60.0, poll_s=POLL_S)
    if status.status != "done":
        run.error = run.error or f"job {job_id} {status.status}" + (f": {status.error}" if status.error else "")
    return status


def _finish_native(service, run: StoryboardRender, plans: list[_ShotPlan]) -> None:
    if _wait(service, run, run.job_ids[0]).status == "done":
        run.job_ids.extend(split_native_take(service, run.job_ids[0], [plan.id for plan in plans]))


def _run_chain(service, run: StoryboardRender, plans: list[_ShotPlan], requests: list[GenerationRequest],
               origin: dict[str, Any]) -> None:
    job, previous_video = run.job_ids[0], None
    for index, plan in enumerate(plans):
        if index:
            with tempfile.TemporaryDirectory(dir=service.store.data_dir.staging) as folder:
                image = plan.reference or _last_frame_png(previous_video, folder)
                job = service.submit(replace(requests[index], image=image), shot_id=plan.id,
                                     parent_id=None if plan.reference else job, **origin)
            run.job_ids.append(job)
        status = _wait(service, run, job)
        if status.status != "done":
            return
        choose_shot_take(service, plan.id, job)
        previous_video = status.video_path


def _finish_shot(service, run: StoryboardRender, shot_id: int, job: int) -> None:
    if _wait(service, run, job).status == "done":
        service.store.db.write(lambda session: _choose_if_take(session, shot_id, job))


def _choose_if_take(session: Session, shot_id: int, generation_id: int) -> None:
    """Choose the new take, unless its shot was deleted meanwhile."""
    if session.get(Shot, shot_id) is not None and session.get(Generation, generation_id).shot_id == shot_id:
        choose_take(session, shot_id, generation_id)


def _claim_segments(session: Session, generation_id: int, shot_ids: list[int]) -> list[int]:
    """New running rows for the parts of a multi-shot generation; none if its parts exist already."""
    existing = session.scalars(select(Generation.id).where(Generation.parent_id == generation_id,
                                                           Generation.task == SEGMENT_TASK)).first()
    if existing is not None:
        return []
    parent = session.get(Generation, generation_id)
    shots = parent.request.get("shots") or []
    rows = []
    for shot_id, spec in zip(shot_ids, shots):
        rows.append(_running_row(
            session, request=dict(parent.request), prompt=caption(parent.request.get("prompt") or "", spec["prompt"]),
            model=parent.model, seed=parent.seed, task=SEGMENT_TASK, source=parent.source, client_id=parent.client_id,
            project_id=parent.project_id, shot_id=shot_id if session.get(Shot, shot_id) is not None else None,
            parent_id=parent.id, image_asset_id=parent.image_asset_id))
    return [row.id for row in rows]


def _claim_cut(session: Session, description: dict, prompt: str, project_id: int, client_id: str) -> int:
    return _running_row(session, request=description, prompt=prompt, model="", task=CUT_TASK, source="ui",
                        client_id=client_id, project_id=project_id).id


def _running_row(session: Session, **columns: Any) -> Generation:
    """A generation made here rather than by the job worker, claimed by this process like a running job."""
    now = utc_now()
    row = Generation(status="running", worker=queue.worker_id(), started_at=now, heartbeat_at=now, **columns)
    session.add(row)
    session.flush()
    return row


def _fail(session: Session, generation_id: int, error: str) -> None:
    row = session.get(Generation, generation_id)
    row.status, row.error, row.finished_at = "failed", error, utc_now()
