"""Who may open the studio: `--auth user:pass`, or a file of `user:pass` lines; `--share` always needs one, and
gets a generated password when none is given, so a shared studio is never open to anyone with the link."""

from __future__ import annotations

import secrets
from pathlib import Path

SHARE_USER = "kelp"


def parse_auth(value: str | None) -> list[tuple[str, str]]:
    """`user:pass` or the path of a file with one `user:pass` per line (blank lines and # comments skipped)."""
    if value is None:
        return []
    path = Path(value)
    lines = path.read_text().splitlines() if ":" not in value and path.is_file() else [value]
    pairs = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip() or not password:
            where = f"line {number} of {str(path)!r}" if len(lines) > 1 or path.is_file() else "the value"
            raise ValueError(f"`--auth` must be user:password (or a file of such lines); {where} is {line!r}")
        pairs.append((user.strip(), password))
    if not pairs:
        raise ValueError(f"`--auth` file {str(path)!r} holds no user:password line")
    return pairs


def studio_auth(value: str | None, share: bool) -> tuple[list[tuple[str, str]], str | None]:
    """(credentials, generated password or None): sharing without --auth gets user "kelp" and a fresh password."""
    pairs = parse_auth(value)
    if share and not pairs:
        password = secrets.token_urlsafe(12)
        return [(SHARE_USER, password)], password
    return pairs, None
