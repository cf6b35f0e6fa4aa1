"""User defaults that persist between sessions (the UI's last model, size, steps, ...): one JSON value per key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from core.store.checks import check_json
from core.store.schema import Setting

MAX_KEY_CHARS = 100


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS or key != key.strip():
        raise ValueError(f"`key` must be a text of 1..{MAX_KEY_CHARS} characters without spaces around it "
                         f"but is {key!r}")
    return key


def get_setting(session: Session, key: str, default: Any = None) -> Any:
    """The value stored under `key`, or `default` when none is."""
    setting = session.get(Setting, check_key(key))
    return default if setting is None else setting.value


def set_setting(session: Session, key: str, value: Any) -> None:
    """Store `value` (anything JSON holds) under `key`, replacing what was there."""
    value = check_json("value", value)
    setting = session.get(Setting, check_key(key))
    if setting is None:
        session.add(Setting(key=key, value=value))
    else:
        setting.value = value
        flag_modified(setting, "value")  # the caller may have changed the loaded dict itself: it would compare equal


def delete_setting(session: Session, key: str) -> bool:
    """Forget `key` (get_setting then gives its default); False when it was not set."""
    setting = session.get(Setting, check_key(key))
    if setting is not None:
        session.delete(setting)
        session.flush()
    return setting is not None


def all_settings(session: Session) -> dict[str, Any]:
    return {setting.key: setting.value for setting in session.scalars(select(Setting).order_by(Setting.key))}
