"""Where Kelp keeps a user's history: --data-dir, else $KELP_DATA_DIR, else the platform's per-user data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DATA_DIR_ENV = "KELP_DATA_DIR"
DATABASE_NAME = "kelp.db"


def default_data_dir() -> Path:
    """$KELP_DATA_DIR, or ~/.local/share/kelp ($XDG_DATA_HOME/kelp), ~/Library/Application Support/Kelp on macOS,
    %LOCALAPPDATA%\\Kelp on Windows."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "Kelp"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Kelp"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "kelp"


class DataDir:
    """The folders inside a data directory."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_data_dir()
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"`data_dir` must be a folder but {str(self.root)!r} is a file")

    @property
    def database(self) -> Path:
        return self.root / DATABASE_NAME

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def staging(self) -> Path:
        """Outputs being written; a finished one is moved into `files` in the same transaction that marks it done."""
        return self.root / "staging"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def training(self) -> Path:
        return self.root / "training"

    def create(self) -> DataDir:
        for folder in (self.root, self.files, self.staging, self.backups, self.training):
            folder.mkdir(parents=True, exist_ok=True)
        return self
