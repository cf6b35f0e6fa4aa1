"""Generation defaults the user saves in the Models & settings tab: steps, guidance and size, kept in the store.
None means "the model's own default"; the Create tab fills its fields from these."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from core.store import Store
from core.store.settings import get_setting, set_setting

SETTING = "generation_defaults"  # a JSON object with the fields below


@dataclass(frozen=True, kw_only=True)
class GenerationPreferences:
    steps: int | None = None  # sampling steps, 1..500
    guidance_scale: float | None = None  # 0..50; 1 turns classifier-free guidance off
    width: int | None = None  # pixels, a multiple of 16
    height: int | None = None  # pixels, a multiple of 16

    def __post_init__(self):
        _check_int("steps", self.steps, 1, 500)
        g = self.guidance_scale
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g)
                              or not 0 <= g <= 50):
            raise ValueError(f"`guidance_scale` must be a number from 0 to 50 (or empty), got {g!r}")
        for side in ("width", "height"):
            value = getattr(self, side)
            _check_int(side, value, 16, 4096)
            if value is not None and value % 16:
                raise ValueError(f"`{side}` must be a multiple of 16, got {value!r}")


def _check_int(name: str, value, low: int, high: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
        raise ValueError(f"`{name}` must be a whole number from {low} to {high} (or empty), got {value!r}")


def load_generation_defaults(store: Store) -> GenerationPreferences:
    """The saved defaults; fields that are missing or no longer valid come back as None."""
    with store.db.read() as session:
        saved = get_setting(session, SETTING, {})
    values = {}
    for name in ("steps", "guidance_scale", "width", "height"):
        try:
            GenerationPreferences(**{name: saved.get(name) if isinstance(saved, dict) else None})
            values[name] = saved.get(name) if isinstance(saved, dict) else None
        except ValueError:
            values[name] = None
    return GenerationPreferences(**values)


def save_generation_defaults(store: Store, defaults: GenerationPreferences) -> None:
    store.db.write(lambda session: set_setting(session, SETTING, asdict(defaults)))
