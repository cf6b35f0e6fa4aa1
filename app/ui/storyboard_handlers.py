"""The storyboard tab's event handlers: each saves what the page shows, does one thing through
app.storyboard_actions, and turns a ValueError into a gr.Error that names the shot and field.

Every button first saves the subject, the mode and every shot's fields from the page, so that what is generated or
cut is what the user sees, whichever field they edited last."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import gradio as gr

from app import storyboard_actions as actions
from app.ui.job_progress import jobs_ahead, progress_text
from core.store.storyboards import (
    add_shot, delete_shot, duplicate_shot, move_shot, set_shot_reference, update_shot, update_storyboard,
)
from core.video_io import read_video_info

SHOT_FIELDS = ("prompt", "num_frames", "transition", "trim_start", "trim_end")  # per shot, in this order
POLL_S = 0.5


def save_board(service, storyboard_id: int | None, shot_ids: Sequence[int], subject: str, mode: str,
               fields: Sequence) -> None:
    """Write the page's subject, mode and shot fields (`fields`: SHOT_FIELDS for each shot, in order)."""
    if storyboard_id is None:
        return
    values = list(fields)
    width = len(SHOT_FIELDS)

    def save(session) -> None:
        update_storyboard(session, storyboard_id, subject=subject or "", mode=mode)
        for number, shot_id in enumerate(shot_ids, start=1):
            prompt, frames, transition, trim_start, trim_end = values[(number - 1) * width: number * width]
            try:
                update_shot(session, shot_id, prompt=prompt or "", num_frames=_whole(frames), transition=transition,
                            trim_start=_whole(trim_start or 0), trim_end=_whole(trim_end or 0))
            except ValueError as error:
                raise ValueError(f"Shot {number}: {error}") from error

    service.store.db.write(save)


def add_new_shot(service, project_id, storyboard_id, shot_ids, version, subject, mode, *fields) -> int:
    """A new last shot (the storyboard, and with no project picked a "My storyboard" project, made if needed)."""
    try:
        board = storyboard_id or actions.find_storyboard(service, project_id, create=True)
        save_board(service, board, shot_ids, subject, mode, fields)
        frames = actions.shot_timing(service, board).default_frames
        service.store.db.write(lambda session: add_shot(service.store, session, board, "", frames))
    except ValueError as error:
        raise gr.Error(str(error)) from error
    return version + 1


def change_shot(service, change: str, shot_id: int, storyboard_id, shot_ids, version, subject, mode, *fields) -> int:
    """Duplicate, delete, or move a shot "up" or "down"; returns the next version so the list is drawn again."""
    try:
        save_board(service, storyboard_id, shot_ids, subject, mode, fields)
        position = list(shot_ids).index(shot_id)

        def apply(session) -> None:
            if change == "duplicate":
                duplicate_shot(session, shot_id)
            elif change == "delete":
                delete_shot(session, shot_id)
            else:
                target = position - 1 if change == "up" else position + 1
                if 0 <= target < len(shot_ids):
                    move_shot(session, shot_id, target)

        service.store.db.write(apply)
    except ValueError as error:
        raise gr.Error(str(error)) from error
    return version + 1


def change_mode(service, storyboard_id, shot_ids, version, subject, mode, *fields):
    """Save the new mode (with everything else) and draw the shots again; with no storyboard yet, the choice waits
    on the page for the first "Add shot"."""
    if storyboard_id is None:
        return gr.skip()
    try:
        save_board(service, storyboard_id, shot_ids, subject, mode, fields)
    except ValueError as error:
        raise gr.Error(str(error)) from error
    return version + 1


def save_only(service, storyboard_id, shot_ids, subject, mode, *fields) -> None:
    """Keep edits when a field loses focus; a value that does not fit waits for the next button (which says why)."""
    try:
        save_board(service, storyboard_id, shot_ids, subject, mode, fields)
    except ValueError:
        pass


def set_reference(service, shot_id: int, image: str | None) -> None:
    try:
        service.store.db.write(lambda session: set_shot_reference(service.store, session, shot_id, image))
    except ValueError as error:
        raise gr.Error(str(error)) from error


def choose(service, shot_id: int, generation_id) -> str | None:
    """Make a take the shot's chosen one; returns its video for the shot's player."""
    try:
        actions.choose_shot_take(service, shot_id, int(generation_id))
    except (TypeError, ValueError) as error:
        raise gr.Error(f"Take {generation_id!r} cannot be chosen: {error}") from error
    take = next(t for t in actions.list_shot_takes(service, shot_id) if t.generation_id == int(generation_id))
    return str(take.video_path) if take.video_path else None


def generate_all(service, storyboard_id, shot_ids, client_id, version, subject, mode, *fields) -> Iterator[tuple]:
    """Generate every shot; yields (progress text, version) until the new takes are chosen."""
    try:
        save_board(service, storyboard_id, shot_ids, subject, mode, fields)
        if storyboard_id is None:
            raise ValueError("The storyboard has no shots yet; add a shot first")
        run = actions.render_storyboard(service, storyboard_id, client_id=client_id or "")
    except ValueError as error:
        raise gr.Error(str(error)) from error
    yield from _follow(service, run, version)


def rerender(service, shot_id, storyboard_id, shot_ids, client_id, version, subject, mode, *fields) -> Iterator[tuple]:
    """A new take of one shot; yields (progress text, version) until it is chosen."""
    try:
        save_board(service, storyboard_id, shot_ids, subject, mode, fields)
        run = actions.rerender_shot(service, shot_id, client_id=client_id or "")
    except ValueError as error:
        raise gr.Error(str(error)) from error
    yield from _follow(service, run, version)


def cut(service, storyboard_id, shot_ids, crossfade_frames, client_id, subject, mode, *fields):
    """Cut the chosen takes together: (player, download button, progress text)."""
    try:
        save_board(service, storyboard_id, shot_ids, subject, mode, fields)
        if storyboard_id is None:
            raise ValueError("The storyboard has no shots yet; add a shot first")
        actions.cut_storyboard(service, storyboard_id, crossfade_frames=_whole(crossfade_frames),
                               client_id=client_id or "")
    except ValueError as error:
        raise gr.Error(str(error)) from error
    cut_id, video = actions.latest_cut(service, storyboard_id)  # the cut just made, with its History id
    view = actions.storyboard_view(service, storyboard_id)
    download = actions.export_copy(cut_id, video, f"{view.project_name}-{view.name}-cut-{cut_id}")
    info = read_video_info(video)
    shots = len(view.shots)
    note = (f"Cut {shots} shot{'s' if shots != 1 else ''} into one video of {info.num_frames} frames "
            f"({info.duration_s:.1f} s); it is in History too.")
    return gr.update(value=str(video), visible=True), gr.update(value=str(download), visible=True), note


def latest_cut(service, project_id):
    """The storyboard's newest cut for the player and download button, when the tab is drawn."""
    storyboard_id = actions.find_storyboard(service, project_id)
    found = actions.latest_cut(service, storyboard_id) if storyboard_id is not None else None
    if found is None:
        return gr.update(value=None, visible=False), gr.update(value=None, visible=False)
    view = actions.storyboard_view(service, storyboard_id)
    download = actions.export_copy(found[0], found[1], f"{view.project_name}-{view.name}-cut-{found[0]}")
    return gr.update(value=str(found[1]), visible=True), gr.update(value=str(download), visible=True)


def describe_run(service, run: actions.StoryboardRender) -> str:
    """One line per job of the run (what it is doing, or that it waits), then how the run ended."""
    lines = []
    if run.mode == "native":
        status = service.status(run.job_ids[0])
        lines.append(f"All {len(run.shot_ids)} shots in one pass: {_job_text(service, status)}")
        if status.status == "done" and not run.finished:
            lines.append("Splitting the video into its shots…")
    else:
        for index in range(len(run.shot_ids)):
            label = f"Shot {index + 1}" if run.mode == "chained" else "Re-render"
            if index < len(run.job_ids):
                lines.append(f"{label}: {_job_text(service, service.status(run.job_ids[index]))}")
            else:
                lines.append(f"{label}: waits for shot {index}")
    if run.finished:
        lines.append(f"Stopped: {run.error}" if run.error else "Done: the new takes are chosen.")
    return "\n".join(f"- {line}" for line in lines)


def _follow(service, run: actions.StoryboardRender, version: int) -> Iterator[tuple]:
    while not run.finished:
        yield describe_run(service, run), gr.skip()
        time.sleep(POLL_S)
    yield describe_run(service, run), version + 1


def _job_text(service, status) -> str:
    return progress_text(status, jobs_ahead(service, status))


def _whole(value) -> int:
    """A whole number from a number field (Gradio may send 9.0); anything else is left for the checks to name."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
