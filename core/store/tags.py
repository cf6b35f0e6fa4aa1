"""Tags on generations: names normalised (stripped, lower-case) so that "Fox " and "fox" are one tag."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.store.generations import get_generation, visible_generations
from core.store.schema import Generation, GenerationTag, Tag

MAX_TAG_CHARS = 100


@dataclass(frozen=True)
class TagCount:
    name: str
    count: int  # generations carrying it, trash excluded


def normalise_tag(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_TAG_CHARS:
        raise ValueError(f"`tag` must be a text of 1..{MAX_TAG_CHARS} characters (spaces around it dropped) "
                         f"but is {name!r}")
    return name.strip().lower()


def _tag_names(names: Iterable[str] | str) -> list[str]:
    if isinstance(names, str):  # one tag, not its letters
        names = [names]
    return list(dict.fromkeys(normalise_tag(name) for name in names))


def add_tags(session: Session, generation_id: int, names: Iterable[str] | str) -> list[str]:
    """Tag a generation (new tags are created); returns its tag names, sorted."""
    generation = get_generation(session, generation_id)
    wanted = _tag_names(names)
    existing = {tag.name: tag for tag in session.scalars(select(Tag).where(Tag.name.in_(wanted)))}
    for name in wanted:
        tag = existing.get(name) or Tag(name=name)
        if tag not in generation.tags:
            generation.tags.append(tag)
    session.flush()
    return sorted(tag.name for tag in generation.tags)


def remove_tags(session: Session, generation_id: int, names: Iterable[str] | str) -> list[str]:
    """Untag a generation (tags it does not carry are ignored); returns its tag names, sorted."""
    generation = get_generation(session, generation_id)
    unwanted = set(_tag_names(names))
    generation.tags = [tag for tag in generation.tags if tag.name not in unwanted]
    session.flush()
    return sorted(tag.name for tag in generation.tags)


def list_tags(session: Session) -> list[TagCount]:
    """Every tag in use with its count of visible generations (not trashed, project not trashed), most used first."""
    count = func.count(Generation.id)
    query = (
        select(Tag.name, count)
        .join(GenerationTag, GenerationTag.tag_id == Tag.id)
        .join(Generation, Generation.id == GenerationTag.generation_id)
        .where(visible_generations())
        .group_by(Tag.id)
        .order_by(count.desc(), Tag.name)
    )
    return [TagCount(name, number) for name, number in session.execute(query)]
