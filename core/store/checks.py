"""Argument checks shared by the history operations: a row by its id, names and texts, JSON values.

Each raises ValueError naming the argument and its value, which the UI shows as it is.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from core.store.schema import Base, utc_now

Row = TypeVar("Row", bound=Base)


def check_id(argument: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{argument}` must be a row id (a positive integer) but is {value!r}")
    return value


def get_row(session: Session, model: type[Row], row_id: Any, argument: str) -> Row:
    """The row of `model` with id `row_id`; trashed rows are returned too (callers decide what trash means)."""
    row = session.get(model, check_id(argument, row_id))
    if row is None:
        label = model.__tablename__.removesuffix("s").replace("_", " ")
        raise ValueError(f"`{argument}` must be the id of an existing {label} but is {row_id!r}")
    return row


def trash_row(session: Session, model: type[Row], row_id: Any, argument: str) -> Row:
    """Move a row to the trash (deleted_at set once; trashing twice keeps the first time)."""
    row = get_row(session, model, row_id, argument)
    if row.deleted_at is None:
        row.deleted_at = utc_now()
    return row


def restore_row(session: Session, model: type[Row], row_id: Any, argument: str) -> Row:
    """Take a row out of the trash."""
    row = get_row(session, model, row_id, argument)
    row.deleted_at = None
    return row


def check_name(argument: str, value: Any, max_chars: int = 200) -> str:
    """A name shown in lists: surrounding spaces dropped, 1..max_chars characters left."""
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > max_chars:
        raise ValueError(f"`{argument}` must be a non-empty text of at most {max_chars} characters but is {value!r}")
    return value.strip()


def check_text(argument: str, value: Any, max_chars: int) -> str:
    """Free text that may be empty (descriptions, notes, prompts)."""
    if not isinstance(value, str):
        raise ValueError(f"`{argument}` must be a text but is {value!r}")
    if len(value) > max_chars:
        raise ValueError(f"`{argument}` must be at most {max_chars} characters but has {len(value)}")
    return value


def check_json(argument: str, value: Any) -> Any:
    """A value that JSON stores and gives back unchanged (no NaN, no objects, string keys)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{argument}` must be JSON (dicts, lists, texts, numbers, booleans, None) but is "
                         f"{value!r} ({error})") from error
    return value


def check_dict(argument: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ValueError(f"`{argument}` must be a dict with text keys but is {value!r}")
    return check_json(argument, value)


def check_bool(argument: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{argument}` must be True or False but is {value!r}")
    return value


def naive_utc(argument: str, value: Any) -> datetime:
    """The database keeps naive UTC times; an aware time is converted, a naive one is taken as UTC."""
    if not isinstance(value, datetime):
        raise ValueError(f"`{argument}` must be a datetime but is {value!r}")
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo is not None else value
