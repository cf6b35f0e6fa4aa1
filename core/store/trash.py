"""Emptying the trash: trashed projects (with their storyboards and generations), generations, LoRAs and training
runs are deleted for good, then the stored files that only they used.

A file is removed only when no row points at it any more (references.py), checked again while holding the
database's write lock, so that a file just stored again by another process is never taken from under it.
Only assets that the purged rows used are considered: files that no row used before (an upload not yet queued)
are not the trash's business.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, delete, select
from sqlalchemy.orm import Session

from core.store.references import ASSET_REFERENCES, referenced_asset_ids
from core.store.schema import (FINISHED_STATUSES, Asset, Generation, GenerationTag, Lora, Project, Shot, Storyboard,
                               Tag, TrainingRun, utc_now)
from core.store.store import Store

CHUNK = 500  # ids per IN (...) list: SQLite caps the number of parameters in one statement


@dataclass(frozen=True)
class PurgeReport:
    projects: int
    generations: int
    loras: int
    training_runs: int
    tags: int  # tags no generation carries any more
    assets: int  # asset rows deleted
    files_removed: int
    bytes_freed: int


def _trashed(model, cutoff: datetime | None) -> ColumnElement[bool]:
    condition = model.deleted_at.is_not(None)
    return condition if cutoff is None else condition & (model.deleted_at <= cutoff)


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def _delete(session: Session, model, condition: ColumnElement[bool]) -> int:
    """DELETE in SQL, so that the foreign keys' ON DELETE actions apply; returns the number of rows."""
    return session.execute(delete(model).where(condition), execution_options={"synchronize_session": False}).rowcount


def _delete_rows(session: Session, cutoff: datetime | None) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """Delete the trashed rows and the asset rows only they used; returns the counts and the freed files."""
    projects = select(Project.id).where(_trashed(Project, cutoff))
    # Generations still queued or running are left alone (the queue owns them); in a purged project they stay,
    # without a project.
    generations = select(Generation.id).where(
        _trashed(Generation, cutoff) | Generation.project_id.in_(projects), Generation.status.in_(FINISHED_STATUSES)
    )
    shots = select(Shot.id).join(Storyboard).where(Storyboard.project_id.in_(projects))
    loras = select(Lora.id).where(_trashed(Lora, cutoff))
    owners: dict[type, Select] = {Generation: generations, Shot: shots, Lora: loras}
    candidates: set[int] = set()
    for reference in ASSET_REFERENCES:  # every asset column; a new one without an owner above fails loudly here
        owner = owners[reference.class_]
        candidates.update(session.scalars(select(reference).where(reference.class_.id.in_(owner),
                                                                  reference.is_not(None))))
    counts = {
        # generations first: their query reads the projects about to go (storyboards and shots follow projects
        # through ON DELETE CASCADE)
        "generations": _delete(session, Generation, Generation.id.in_(generations)),
        "projects": _delete(session, Project, _trashed(Project, cutoff)),
        "loras": _delete(session, Lora, _trashed(Lora, cutoff)),
        "training_runs": _delete(session, TrainingRun, _trashed(TrainingRun, cutoff)),
        "tags": _delete(session, Tag, Tag.id.not_in(select(GenerationTag.tag_id))),
    }
    freed_ids = sorted(candidates - referenced_asset_ids(session))
    freed: list[tuple[str, str, int]] = []
    for chunk in _chunks(freed_ids):
        freed += session.execute(select(Asset.sha256, Asset.suffix, Asset.size_bytes).where(Asset.id.in_(chunk))).all()
        _delete(session, Asset, Asset.id.in_(chunk))
    counts["assets"] = len(freed)
    session.expunge_all()  # the identity map may hold rows deleted above
    return counts, [tuple(row) for row in freed]


def _remove_files(store: Store, session: Session, freed: list[tuple[str, str, int]]) -> tuple[int, int]:
    """Remove freed files that still have no asset row; runs in a write transaction, so none can get one now."""
    removed = freed_bytes = 0
    for sha256, suffix, size in freed:
        still_used = session.scalar(select(Asset.id).where(Asset.sha256 == sha256, Asset.suffix == suffix))
        if still_used is None and store.files.remove(sha256, suffix):
            removed, freed_bytes = removed + 1, freed_bytes + size
    return removed, freed_bytes


def purge_trash(store: Store, older_than: timedelta | None = None) -> PurgeReport:
    """Delete for good what has been in the trash longer than `older_than` (None: everything in the trash)."""
    if older_than is not None and (not isinstance(older_than, timedelta) or older_than < timedelta(0)):
        raise ValueError(f"`older_than` must be a timedelta from 0 or None but is {older_than!r}")
    cutoff = None if older_than is None else utc_now() - older_than
    counts, freed = store.db.write(lambda session: _delete_rows(session, cutoff))
    files_removed, bytes_freed = store.db.write(lambda session: _remove_files(store, session, freed))
    return PurgeReport(**counts, files_removed=files_removed, bytes_freed=bytes_freed)
