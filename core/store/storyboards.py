"""Storyboards and their shots: create, edit, duplicate, delete and reorder shots.

Shot positions are always 0..n-1 in order, with no gaps: every change renumbers the whole storyboard.
Takes (generations made for a shot) are in takes.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from core.store.checks import check_dict, check_name, check_text, get_row
from core.store.projects import get_project
from core.store.schema import Shot, Storyboard
from core.store.store import Store

STORYBOARD_MODES = ("native", "chained")  # one pass for all shots, or shot after shot from the last frame
SHOT_TRANSITIONS = ("cut", "crossfade")
MAX_PROMPT_CHARS = 2000  # as core.request.MAX_PROMPT_CHARS (not imported: that module loads torch)
MAX_SHOT_FRAMES = 100_000  # a sanity bound; the model's own limit is checked when the storyboard is generated


def check_num_frames(num_frames: Any, argument: str = "num_frames") -> int:
    if type(num_frames) is not int or num_frames < 1 or (num_frames - 1) % 4 or num_frames > MAX_SHOT_FRAMES:
        raise ValueError(f"`{argument}` must be 1 + 4k (1, 5, 9, ...; the causal VAE codes frame 1 alone, then 4 "
                         f"at a time) but is {num_frames!r}")
    return num_frames


def check_mode(mode: Any) -> str:
    if mode not in STORYBOARD_MODES:
        raise ValueError(f"`mode` must be one of {STORYBOARD_MODES} but is {mode!r}")
    return mode


def create_storyboard(
    session: Session,
    project_id: int,
    name: str,
    *,
    subject: str = "",
    mode: str = "native",
    settings: dict[str, Any] | None = None,
) -> Storyboard:
    """`subject` is put in front of every shot's prompt; `settings` (size, steps, seed, ...) are shared by shots."""
    storyboard = Storyboard(
        project=get_project(session, project_id),
        name=check_name("name", name),
        subject=check_text("subject", subject, MAX_PROMPT_CHARS),
        mode=check_mode(mode),
        settings=check_dict("settings", settings if settings is not None else {}),
    )
    session.add(storyboard)
    session.flush()
    return storyboard


def get_storyboard(session: Session, storyboard_id: int) -> Storyboard:
    return get_row(session, Storyboard, storyboard_id, "storyboard_id")


def list_storyboards(session: Session, project_id: int) -> list[Storyboard]:
    get_project(session, project_id)
    query = select(Storyboard).where(Storyboard.project_id == project_id).order_by(Storyboard.created_at, Storyboard.id)
    return list(session.scalars(query))


def update_storyboard(
    session: Session,
    storyboard_id: int,
    *,
    name: str | None = None,
    subject: str | None = None,
    mode: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Storyboard:
    """Change the given fields (None: leave as is); `settings` replaces the whole dict."""
    storyboard = get_storyboard(session, storyboard_id)
    if name is not None:
        storyboard.name = check_name("name", name)
    if subject is not None:
        storyboard.subject = check_text("subject", subject, MAX_PROMPT_CHARS)
    if mode is not None:
        storyboard.mode = check_mode(mode)
    if settings is not None:
        storyboard.settings = check_dict("settings", settings)
        flag_modified(storyboard, "settings")  # the loaded dict, changed in place, would compare equal
    return storyboard


def get_shot(session: Session, shot_id: int) -> Shot:
    return get_row(session, Shot, shot_id, "shot_id")


def _place(storyboard: Storyboard, shots: list[Shot]) -> list[Shot]:
    """Make `shots` the storyboard's shots in this order, numbered 0..n-1."""
    for position, shot in enumerate(shots):
        shot.position = position
    storyboard.shots = shots
    return shots


def _check_position(position: Any, highest: int) -> int:
    if type(position) is not int or not 0 <= position <= highest:
        raise ValueError(f"`position` must be an integer from 0 to {highest} but is {position!r}")
    return position


def _store_reference(store: Store, session: Session, image: str | Path):
    """The reference image as a stored asset; it must be a readable image."""
    try:
        with Image.open(image) as opened:  # reads the header only
            opened.verify()
    except (OSError, SyntaxError) as error:
        raise ValueError(f"`reference_image` must be a readable image file but is {str(image)!r} ({error})") from error
    return store.add_asset(session, image, "image")


def add_shot(
    store: Store,
    session: Session,
    storyboard_id: int,
    prompt: str,
    num_frames: int,
    *,
    reference_image: str | Path | None = None,
    position: int | None = None,
) -> Shot:
    """A new shot at `position` (default: the end); `reference_image` is copied into the store."""
    storyboard = get_storyboard(session, storyboard_id)
    shots = list(storyboard.shots)
    position = len(shots) if position is None else _check_position(position, len(shots))
    shot = Shot(prompt=check_text("prompt", prompt, MAX_PROMPT_CHARS), num_frames=check_num_frames(num_frames))
    if reference_image is not None:
        shot.reference = _store_reference(store, session, reference_image)
    shots.insert(position, shot)
    _place(storyboard, shots)
    session.flush()
    return shot


def set_shot_reference(store: Store, session: Session, shot_id: int, reference_image: str | Path | None) -> Shot:
    """Give a shot a new reference image, or none; the old image's file stays until no row uses it."""
    shot = get_shot(session, shot_id)
    shot.reference = None if reference_image is None else _store_reference(store, session, reference_image)
    return shot


def update_shot(
    session: Session,
    shot_id: int,
    *,
    prompt: str | None = None,
    num_frames: int | None = None,
    transition: str | None = None,
    trim_start: int | None = None,
    trim_end: int | None = None,
) -> Shot:
    """Change the given fields (None: leave as is). Trims drop frames of the chosen take when shots are cut.
    Everything is checked before anything changes."""
    shot = get_shot(session, shot_id)
    if prompt is not None:
        check_text("prompt", prompt, MAX_PROMPT_CHARS)
    if num_frames is not None:
        check_num_frames(num_frames)
    if transition is not None and transition not in SHOT_TRANSITIONS:
        raise ValueError(f"`transition` must be one of {SHOT_TRANSITIONS} but is {transition!r}")
    for argument, value in (("trim_start", trim_start), ("trim_end", trim_end)):
        if value is not None and (type(value) is not int or value < 0):
            raise ValueError(f"`{argument}` must be a whole number of frames from 0 but is {value!r}")
    frames = shot.num_frames if num_frames is None else num_frames
    start = shot.trim_start if trim_start is None else trim_start
    end = shot.trim_end if trim_end is None else trim_end
    if start + end >= frames:
        raise ValueError(f"`trim_start` + `trim_end` must leave at least one of the shot's {frames} frames "
                         f"but are {start} + {end}")
    changes = dict(prompt=prompt, num_frames=num_frames, transition=transition, trim_start=trim_start,
                   trim_end=trim_end)
    for field, value in changes.items():
        if value is not None:
            setattr(shot, field, value)
    return shot


def duplicate_shot(session: Session, shot_id: int) -> Shot:
    """A copy placed right after the shot: prompt, length, reference, transition and trims; no takes."""
    original = get_shot(session, shot_id)
    storyboard = original.storyboard
    copy = Shot(prompt=original.prompt, num_frames=original.num_frames, reference_asset_id=original.reference_asset_id,
                transition=original.transition, trim_start=original.trim_start, trim_end=original.trim_end)
    shots = list(storyboard.shots)
    shots.insert(shots.index(original) + 1, copy)
    _place(storyboard, shots)
    session.flush()
    return copy


def delete_shot(session: Session, shot_id: int) -> None:
    """Delete a shot for good (shots have no trash); its takes stay in the history, no longer tied to a shot."""
    shot = get_shot(session, shot_id)
    storyboard = shot.storyboard
    _place(storyboard, [other for other in storyboard.shots if other is not shot])  # delete-orphan removes it
    session.flush()


def move_shot(session: Session, shot_id: int, position: int) -> list[Shot]:
    """Move a shot to `position`; the others keep their order. Returns the storyboard's shots in order."""
    shot = get_shot(session, shot_id)
    storyboard = shot.storyboard
    shots = [other for other in storyboard.shots if other is not shot]
    shots.insert(_check_position(position, len(shots)), shot)
    return _place(storyboard, shots)


def reorder_shots(session: Session, storyboard_id: int, shot_ids: list[int]) -> list[Shot]:
    """Put the storyboard's shots in the order of `shot_ids`, which must list each of them once."""
    storyboard = get_storyboard(session, storyboard_id)
    by_id = {shot.id: shot for shot in storyboard.shots}
    if not isinstance(shot_ids, (list, tuple)) or any(type(i) is not int for i in shot_ids) \
            or sorted(shot_ids) != sorted(by_id):
        raise ValueError(f"`shot_ids` must list each shot of storyboard {storyboard.id} once ({sorted(by_id)}) "
                         f"but is {shot_ids!r}")
    return _place(storyboard, [by_id[shot_id] for shot_id in shot_ids])
