"""Cooperative cancellation: long jobs poll a flag between steps and stop by raising `GenerationCancelled`."""

from __future__ import annotations


class GenerationCancelled(Exception):
    """Raised when a caller's cancel flag is set; the job stopped between two steps and left no partial state."""


def check_cancel(cancel) -> None:
    """Raise `GenerationCancelled` if `cancel` (anything with is_set(), e.g. a threading.Event) is set; None: never."""
    if cancel is not None and cancel.is_set():
        raise GenerationCancelled("generation was cancelled")
