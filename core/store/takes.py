"""Takes of a storyboard shot: the generations made for it (a Generation with `shot_id`), and the chosen one."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.checks import check_bool
from core.store.generations import get_generation, visible_generations
from core.store.schema import Generation, Shot
from core.store.storyboards import get_shot


def record_take(session: Session, shot_id: int, generation_id: int) -> Generation:
    """Make a generation a take of the shot (generations queued for a shot already carry its id)."""
    shot = get_shot(session, shot_id)
    generation = get_generation(session, generation_id)
    generation.shot_id = shot.id
    return generation


def list_takes(session: Session, shot_id: int, *, include_deleted: bool = False) -> list[Generation]:
    """The shot's takes, oldest first (the order they were made in)."""
    get_shot(session, shot_id)
    query = select(Generation).where(Generation.shot_id == shot_id).order_by(Generation.created_at, Generation.id)
    if not check_bool("include_deleted", include_deleted):
        query = query.where(visible_generations())
    return list(session.scalars(query))


def choose_take(session: Session, shot_id: int, generation_id: int | None) -> Shot:
    """The take the storyboard uses for this shot; None un-chooses."""
    shot = get_shot(session, shot_id)
    generation = None if generation_id is None else get_generation(session, generation_id)
    if generation is not None and generation.shot_id != shot.id:
        raise ValueError(f"`generation_id` must be a take of shot {shot.id} but is {generation_id!r} "
                         f"(a take of {'no shot' if generation.shot_id is None else f'shot {generation.shot_id}'})")
    shot.chosen = generation
    session.flush()  # fills chosen_generation_id
    return shot
