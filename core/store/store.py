"""The history store: one data directory holding the SQLite database and the content-addressed files."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.data_dir import DataDir
from core.store.database import Database, sqlite_url
from core.store.files import FileStore
from core.store.schema import ASSET_KINDS, Asset


class Store:
    """`Store.open(data_dir)` creates the folders, opens the database (URL from `url`, else <data_dir>/kelp.db)
    and migrates it to the newest schema."""

    def __init__(self, data_dir: DataDir, database: Database):
        self.data_dir = data_dir
        self.db = database
        self.files = FileStore(data_dir.files)

    @classmethod
    def open(cls, data_dir: str | Path | None = None, *, url: str | None = None, migrate: bool = True) -> Store:
        folders = DataDir(data_dir).create()
        return cls(folders, Database.open(url or sqlite_url(folders.database), migrate=migrate))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def add_asset(
        self,
        session: Session,
        source: str | Path,
        kind: str,
        *,
        suffix: str | None = None,
        move: bool = False,
        original_name: str = "",
    ) -> Asset:
        """Put the file at `source` into the file store and return its (possibly existing) asset row."""
        if kind not in ASSET_KINDS:
            raise ValueError(f"`kind` must be one of {ASSET_KINDS} but is {kind!r}")
        sha256, path, size = self.files.add_file(source, suffix, move=move)
        return _asset_row(session, sha256, path.name[len(sha256):], kind, size, original_name or Path(source).name)

    def add_asset_bytes(self, session: Session, data: bytes, suffix: str, kind: str) -> Asset:
        """Store `data` (e.g. a thumbnail made in memory) and return its (possibly existing) asset row."""
        if kind not in ASSET_KINDS:
            raise ValueError(f"`kind` must be one of {ASSET_KINDS} but is {kind!r}")
        sha256, path, size = self.files.add_bytes(data, suffix)
        return _asset_row(session, sha256, path.name[len(sha256):], kind, size, "")

    def asset_path(self, asset: Asset) -> Path:
        return self.files.path_for(asset.sha256, asset.suffix)


def _asset_row(session: Session, sha256: str, suffix: str, kind: str, size: int, original_name: str) -> Asset:
    asset = session.scalars(select(Asset).where(Asset.sha256 == sha256, Asset.suffix == suffix)).first()
    if asset is None:
        asset = Asset(sha256=sha256, suffix=suffix, kind=kind, size_bytes=size, original_name=original_name)
        session.add(asset)
        session.flush()
    return asset
