"""Listing past generations a page at a time: word search over prompts and notes, filters, newest or oldest first.

The text search uses the FTS5 index `generations_fts` (migration 0002). The user's words never reach FTS5's
query syntax: each becomes a quoted prefix term, so quotes, `*`, `-`, `NEAR`, `OR` or brackets are just text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Integer, column, func, select, table
from sqlalchemy.orm import Session, selectinload

from core.store.checks import check_bool, check_id, naive_utc
from core.store.generations import check_rating, visible_generations
from core.store.schema import GENERATION_STATUSES, Generation, GenerationTag, Tag
from core.store.tags import normalise_tag

ORDERS = ("newest", "oldest")
MAX_PAGE_SIZE = 500
MAX_SEARCH_CHARS = 1000

# The FTS5 table as SQLAlchemy sees it: its rowid is the generation's id; the hidden column named like the
# table is what MATCH is applied to.
generations_fts = table("generations_fts", column("rowid", Integer), column("generations_fts"))


@dataclass(frozen=True)
class HistoryPage:
    items: list[Generation]
    total: int  # matching generations on all pages
    page: int  # 1-based
    page_size: int
    pages: int  # at least 1, even when nothing matches


def fts_match_expression(text: str) -> str | None:
    """An FTS5 MATCH expression that finds rows containing every word of `text` (as a word or word prefix).

    Each word is put in double quotes (quotes inside doubled), which makes it a plain string to FTS5, and
    followed by `*` for prefix search. Words with no letter or digit are dropped: FTS5 would tokenize them to
    nothing. None when no word is left.
    """
    words = [word for word in text.split() if any(character.isalnum() for character in word)]
    return " ".join('"' + word.replace('"', '""') + '"*' for word in words) or None


def _statuses(status: str | tuple[str, ...]) -> tuple[str, ...]:
    statuses = (status,) if isinstance(status, str) else status
    if not isinstance(statuses, (tuple, list)) or not statuses or any(s not in GENERATION_STATUSES for s in statuses):
        raise ValueError(f"`status` must be one of {GENERATION_STATUSES} or a tuple of them but is {status!r}")
    return tuple(statuses)


def generation_filters(
    *,
    text: str | None = None,
    model: str | None = None,
    status: str | tuple[str, ...] | None = None,
    project_id: int | None = None,
    tag: str | None = None,
    favourite: bool | None = None,
    min_rating: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    include_deleted: bool = False,
) -> list[ColumnElement[bool]]:
    """The WHERE conditions for list_generations' filters (None: no filter), each checked first."""
    conditions: list[ColumnElement[bool]] = []
    if text is not None:
        if not isinstance(text, str) or len(text) > MAX_SEARCH_CHARS:
            raise ValueError(f"`text` must be a text of at most {MAX_SEARCH_CHARS} characters but is {text!r}")
        expression = fts_match_expression(text)
        if expression is not None:
            matches = select(generations_fts.c.rowid).where(generations_fts.c.generations_fts.op("MATCH")(expression))
            conditions.append(Generation.id.in_(matches))
    if model is not None:
        if not isinstance(model, str):
            raise ValueError(f"`model` must be a model name but is {model!r}")
        conditions.append(Generation.model == model)
    if status is not None:
        conditions.append(Generation.status.in_(_statuses(status)))
    if project_id is not None:
        conditions.append(Generation.project_id == check_id("project_id", project_id))
    if tag is not None:
        tagged = select(GenerationTag.generation_id).join(Tag).where(Tag.name == normalise_tag(tag))
        conditions.append(Generation.id.in_(tagged))
    if favourite is not None:
        conditions.append(Generation.favourite.is_(check_bool("favourite", favourite)))
    if min_rating is not None:
        conditions.append(Generation.rating >= check_rating(min_rating))
    if since is not None:
        conditions.append(Generation.created_at >= naive_utc("since", since))
    if until is not None:
        conditions.append(Generation.created_at < naive_utc("until", until))
    if not check_bool("include_deleted", include_deleted):
        conditions.append(visible_generations())
    return conditions


def list_generations(
    session: Session,
    *,
    text: str | None = None,
    model: str | None = None,
    status: str | tuple[str, ...] | None = None,
    project_id: int | None = None,
    tag: str | None = None,
    favourite: bool | None = None,
    min_rating: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    include_deleted: bool = False,
    page: int = 1,
    page_size: int = 50,
    order: str = "newest",
) -> HistoryPage:
    """One page of generations matching every given filter, by creation time (`since` inclusive, `until` not).

    `text` finds generations whose prompt or note holds each word, case and accents ignored, words also
    matching as prefixes ("fox" finds "foxes"). Items come with their tags, video and thumbnail loaded.
    """
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValueError(f"`page` must be an integer from 1 but is {page!r}")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"`page_size` must be an integer from 1 to {MAX_PAGE_SIZE} but is {page_size!r}")
    if order not in ORDERS:
        raise ValueError(f"`order` must be one of {ORDERS} but is {order!r}")
    conditions = generation_filters(
        text=text, model=model, status=status, project_id=project_id, tag=tag, favourite=favourite,
        min_rating=min_rating, since=since, until=until, include_deleted=include_deleted,
    )
    total = session.scalar(select(func.count()).select_from(Generation).where(*conditions)) or 0
    by_time = (Generation.created_at.desc(), Generation.id.desc()) if order == "newest" else \
        (Generation.created_at.asc(), Generation.id.asc())
    query = (
        select(Generation)
        .where(*conditions)
        .order_by(*by_time)
        .limit(page_size)
        .offset((page - 1) * page_size)
        .options(selectinload(Generation.tags), selectinload(Generation.video), selectinload(Generation.thumbnail))
    )
    items = list(session.scalars(query))
    return HistoryPage(items, total, page, page_size, max(1, math.ceil(total / page_size)))
