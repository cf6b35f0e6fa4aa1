"""One past generation: look it up, mark it (favourite, rating, note), move it to the trash and back.

Listing and searching many is history.py; tags are tags.py; the queue is queue.py/jobs.py.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from core.store.checks import check_bool, check_text, get_row, restore_row, trash_row
from core.store.schema import Generation, Project

MAX_NOTE_CHARS = 10_000
RATINGS = (1, 2, 3, 4, 5)


def get_generation(session: Session, generation_id: int) -> Generation:
    return get_row(session, Generation, generation_id, "generation_id")


def visible_generations() -> ColumnElement[bool]:
    """Generations shown outside the trash: not trashed themselves, and not in a trashed project."""
    trashed_projects = select(Project.id).where(Project.deleted_at.is_not(None))
    return Generation.deleted_at.is_(None) & or_(
        Generation.project_id.is_(None), Generation.project_id.not_in(trashed_projects)
    )


def set_favourite(session: Session, generation_id: int, favourite: bool) -> Generation:
    generation = get_generation(session, generation_id)
    generation.favourite = check_bool("favourite", favourite)
    return generation


def check_rating(rating: Any) -> int | None:
    if rating is not None and (type(rating) is not int or rating not in RATINGS):  # no bools, no 5.0
        raise ValueError(f"`rating` must be 1..5 or None but is {rating!r}")
    return rating


def set_rating(session: Session, generation_id: int, rating: int | None) -> Generation:
    """Rate 1 (worst) to 5 (best); None clears the rating."""
    generation = get_generation(session, generation_id)
    generation.rating = check_rating(rating)
    return generation


def set_note(session: Session, generation_id: int, note: str) -> Generation:
    """The user's own words about a generation; searched together with the prompt."""
    generation = get_generation(session, generation_id)
    generation.note = check_text("note", note, MAX_NOTE_CHARS)
    return generation


def trash_generation(session: Session, generation_id: int) -> Generation:
    return trash_row(session, Generation, generation_id, "generation_id")


def restore_generation(session: Session, generation_id: int) -> Generation:
    """Out of the trash; it stays hidden while its project is in the trash."""
    return restore_row(session, Generation, generation_id, "generation_id")
