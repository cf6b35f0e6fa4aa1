"""Looking after a data folder: the space each part takes, the leftovers (files no row knows, rows whose file is
gone, copies a crash cut short), removing the leftovers that are safe to remove, and backups that stay
consistent while other Kelp processes keep writing.

Restoring a backup: stop every Kelp process; copy the backup's `kelp-<time>.db` over `<data_dir>/kelp.db` and
delete `kelp.db-wal` and `kelp.db-shm` beside it; unzip `kelp-<time>-files.zip` inside `<data_dir>` (it holds
`files/<ab>/<sha256><suffix>`; files already there are identical, being named by their content). Start Kelp:
`Store.open` migrates an older backup to the current schema, and `find_orphans` shows what the backup lacks.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import tempfile
import time
import zipfile
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select, union
from sqlalchemy.orm import Session

from core.store.references import ASSET_REFERENCES, referenced_asset_ids
from core.store.schema import Asset, Generation, Shot, Storyboard
from core.store.store import Store

# A running job's files in staging: the engine's `gen-<id>.mp4`, and `.gen-<id>.tmp*` while it is being written.
STAGED_JOB_FILE = re.compile(r"^\.?gen-(\d+)\.")
PARTIAL_BACKUP_GLOB = ".kelp-*.partial"
DEFAULT_MIN_AGE_S = 3600.0  # a younger leftover may belong to work in progress (a copy, an import, a commit)


@dataclass(frozen=True)
class DiskUsage:
    """Bytes used by each part of a data folder."""

    assets_by_kind: dict[str, int]  # from the asset rows: "output", "thumbnail", "upload", ...
    files: int  # the file store on disk, untracked and temporary files included
    database: int  # the database file with its -wal and -shm
    staging: int
    backups: int
    training: int
    # The assets each project's rows point at (None: generations in no project); a file shared by two
    # projects counts in both, so these may add up to more than `files`.
    by_project: dict[int | None, int]

    @property
    def total(self) -> int:
        return self.files + self.database + self.staging + self.backups + self.training


@dataclass(frozen=True)
class AssetFile:
    asset_id: int
    kind: str
    path: Path


@dataclass
class OrphanReport:
    """What `find_orphans` found. The first three lists are safe to remove (`clean_orphans` does); the others
    need a decision: the trash purge removes unreferenced assets, and a missing file can only come from a backup."""

    untracked_files: list[Path] = field(default_factory=list)  # in the file store, with no asset row
    incomplete_files: list[Path] = field(default_factory=list)  # `.incoming-*` copies and partial backups
    stale_staging: list[Path] = field(default_factory=list)  # in staging, of no running job
    missing_files: list[AssetFile] = field(default_factory=list)  # asset rows whose file is gone
    unreferenced_assets: list[AssetFile] = field(default_factory=list)  # asset rows no row points at
    done_without_video: list[int] = field(default_factory=list)  # "done" generation ids with no video file

    @property
    def healthy(self) -> bool:
        """No row has lost its file; leftovers alone do not make a store unhealthy."""
        return not self.missing_files and not self.done_without_video


@dataclass(frozen=True)
class BackupPaths:
    database: Path
    files: Path | None  # None when the backup was made without files


def disk_usage(store: Store) -> DiskUsage:
    with store.db.session() as session:
        by_kind = dict(session.execute(select(Asset.kind, func.sum(Asset.size_bytes)).group_by(Asset.kind)).all())
        by_project = _bytes_by_project(session)
    database = _database_path(store)
    database_bytes = 0
    if database is not None:
        database_bytes = sum(_file_bytes(database.with_name(database.name + extra)) for extra in ("", "-wal", "-shm"))
    folders = store.data_dir
    return DiskUsage(
        assets_by_kind={kind: int(total) for kind, total in by_kind.items()},
        files=_folder_bytes(folders.files),
        database=database_bytes,
        staging=_folder_bytes(folders.staging),
        backups=_folder_bytes(folders.backups),
        training=_folder_bytes(folders.training),
        by_project={project: int(total) for project, total in by_project.items()},
    )


def find_orphans(store: Store) -> OrphanReport:
    """Everything out of step between the rows and the files; changes nothing."""
    # Rows first, files after: a file always enters the store before its row, so a job finishing meanwhile
    # can only make a file look untracked (clean_orphans checks again), never a row look broken.
    with store.db.session() as session:
        assets = list(session.execute(select(Asset.id, Asset.sha256, Asset.suffix, Asset.kind)).all())
        used = referenced_asset_ids(session)
        running = set(session.scalars(select(Generation.id).where(Generation.status == "running")))
        done_videos = list(
            session.execute(
                select(Generation.id, Asset.sha256, Asset.suffix)
                .outerjoin(Asset, Asset.id == Generation.video_asset_id)
                .where(Generation.status == "done")
                .order_by(Generation.id)
            ).all()
        )
    on_disk = {(sha256, suffix): path for sha256, suffix, path in store.files.iter_files()}
    known = {(sha256, suffix) for _, sha256, suffix, _ in assets}
    report = OrphanReport(
        untracked_files=[path for key, path in on_disk.items() if key not in known],
        incomplete_files=store.files.incomplete_files() + _partial_backups(store),
        stale_staging=[path for path in _staging_entries(store) if _staged_job_id(path) not in running],
    )
    for asset_id, sha256, suffix, kind in assets:
        asset_file = AssetFile(asset_id, kind, store.files.path_for(sha256, suffix))
        if (sha256, suffix) not in on_disk:
            report.missing_files.append(asset_file)
        if asset_id not in used:
            report.unreferenced_assets.append(asset_file)
    report.done_without_video = [
        generation_id for generation_id, sha256, suffix in done_videos if (sha256, suffix) not in on_disk
    ]
    return report


def clean_orphans(store: Store, report: OrphanReport, *, min_age_s: float = DEFAULT_MIN_AGE_S) -> list[Path]:
    """Remove the report's safe leftovers (untracked and incomplete files, stale staging entries) that are at
    least `min_age_s` seconds old; return the paths removed. Rows are never touched.

    Each path is checked again under the database's write lock, so a file that a job recorded since the report,
    or a staged file whose job started since, stays. The age limit covers the moment between a file entering the
    store and its row being committed; 0 removes everything the report lists that is still a leftover.
    """
    if not isinstance(min_age_s, (int, float)) or min_age_s < 0:
        raise ValueError(f"`min_age_s` must be a non-negative number of seconds but is {min_age_s!r}")
    oldest_allowed = time.time() - min_age_s
    removed: list[Path] = []
    with store.db.session() as session:  # holds the write lock: no job can record a file or start meanwhile
        known = set(session.execute(select(Asset.sha256, Asset.suffix)).all())
        running = set(session.scalars(select(Generation.id).where(Generation.status == "running")))

        def remove(path: Path, folder: Path) -> None:
            if _is_inside(path, folder) and os.path.lexists(path) and _newest_mtime(path) <= oldest_allowed:
                _remove_path(path)
                removed.append(path)

        for path in report.incomplete_files:
            folder = store.data_dir.backups if path.parent == store.data_dir.backups else store.data_dir.files
            remove(path, folder)
        for path in report.untracked_files:
            sha256, _, _ = path.name.partition(".")
            if (sha256, path.name[len(sha256):]) not in known:
                remove(path, store.data_dir.files)
        for path in report.stale_staging:
            if _staged_job_id(path) not in running:
                remove(path, store.data_dir.staging)
    return removed


def backup(store: Store, destination: str | Path | None = None, *, include_files: bool = True) -> BackupPaths:
    """Back up the database (and, with `include_files`, the file store as a zip) into `destination`, a folder
    (default: the data folder's `backups`), under a UTC time stamp; return the paths written.

    The database copy uses SQLite's online backup API in one step: one consistent snapshot, even while other
    processes write, checked with `PRAGMA integrity_check` and made self-contained (no -wal file). The files are
    zipped after the snapshot, so the zip has every file the snapshot's rows name unless one was purged meanwhile.
    See this module's docstring for how to restore.
    """
    folder = store.data_dir.backups if destination is None else Path(destination)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"`destination` must be a folder but {str(folder)!r} is a file")
    source = _database_path(store)
    if source is None:
        raise ValueError(f"backup needs an SQLite database file, but this store's database is {store.db.engine.url!s}")
    folder.mkdir(parents=True, exist_ok=True)
    stem = _unused_stem(folder)
    database = folder / f"{stem}.db"
    _backup_database(source, database)
    files = _zip_file_store(store, folder / f"{stem}-files.zip") if include_files else None
    return BackupPaths(database, files)


def _bytes_by_project(session: Session) -> dict[int | None, int]:
    # (project, asset) pairs, each once: generations' files and shots' reference images.
    pairs = [
        select(Generation.project_id.label("project_id"), column.label("asset_id")).where(column.is_not(None))
        for column in ASSET_REFERENCES if column.class_ is Generation
    ]
    pairs.append(
        select(Storyboard.project_id.label("project_id"), Shot.reference_asset_id.label("asset_id"))
        .join(Shot, Shot.storyboard_id == Storyboard.id)
        .where(Shot.reference_asset_id.is_not(None))
    )
    used = union(*pairs).subquery()
    query = (
        select(used.c.project_id, func.sum(Asset.size_bytes))
        .join(Asset, Asset.id == used.c.asset_id)
        .group_by(used.c.project_id)
    )
    return dict(session.execute(query).all())


def _database_path(store: Store) -> Path | None:
    url = store.db.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def _backup_database(source: Path, target: Path) -> None:
    partial = target.with_name(f".{target.name}.partial")
    try:
        with closing(sqlite3.connect(source, timeout=30)) as reader, closing(sqlite3.connect(partial)) as writer:
            reader.backup(writer)  # all pages in one step: a step that other writers interrupt would restart
            writer.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to copy back
            check = "; ".join(row[0] for row in writer.execute("PRAGMA integrity_check"))
            if check != "ok":
                raise RuntimeError(f"the backup of {str(source)!r} failed its integrity check: {check}")
        _fsync_file(partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _zip_file_store(store: Store, target: Path) -> Path:
    partial = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".partial", delete=False)
    try:
        with partial:
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for sha256, suffix, path in store.files.iter_files():
                    try:
                        archive.write(path, f"files/{sha256[:2]}/{sha256}{suffix}")
                    except FileNotFoundError:  # purged since the listing: the snapshot may not need it
                        continue
            partial.flush()
            os.fsync(partial.fileno())
        os.replace(partial.name, target)
    except BaseException:
        Path(partial.name).unlink(missing_ok=True)
        raise
    return target


def _unused_stem(folder: Path) -> str:
    stem = "kelp-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%SZ")
    candidate, number = stem, 1
    while (folder / f"{candidate}.db").exists() or (folder / f"{candidate}-files.zip").exists():
        number += 1
        candidate = f"{stem}-{number}"
    return candidate


def _staging_entries(store: Store) -> list[Path]:
    staging = store.data_dir.staging
    return sorted(staging.iterdir()) if staging.is_dir() else []


def _staged_job_id(path: Path) -> int | None:
    match = STAGED_JOB_FILE.match(path.name)
    return int(match.group(1)) if match else None


def _partial_backups(store: Store) -> list[Path]:
    backups = store.data_dir.backups
    return sorted(backups.glob(PARTIAL_BACKUP_GLOB)) if backups.is_dir() else []


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder)) and Path(path) != Path(folder)
    except ValueError:
        return False


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, folders, files in os.walk(path):
            for name in folders + files:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # removed while we walked
                continue
    return total


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
