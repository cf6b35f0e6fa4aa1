"""The content-addressed file store: every upload, output, thumbnail and LoRA kept once, under its sha256.

Layout: <root>/<sha[:2]>/<sha><suffix>. A file enters through a temporary name in the same folder and an
atomic rename, so a crash leaves either the whole file or no file under its final name.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

CHUNK = 1 << 20
SUFFIX_PATTERN = re.compile(r"^(\.[a-z0-9]{1,12}){1,2}$")  # ".safetensors" has 11 letters
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def sha256_of_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_suffix(suffix: str) -> str:
    """A lower-case file suffix like ".mp4" or ".tar.gz"; anything that could leave the folder is refused."""
    if not isinstance(suffix, str) or not SUFFIX_PATTERN.match(suffix.lower()):
        raise ValueError(f"`suffix` must look like '.mp4' (letters and digits after a dot) but is {suffix!r}")
    return suffix.lower()


def check_sha256(sha256: str) -> str:
    if not isinstance(sha256, str) or not SHA256_PATTERN.match(sha256):
        raise ValueError(f"`sha256` must be 64 lower-case hex digits but is {sha256!r}")
    return sha256


class FileStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_for(self, sha256: str, suffix: str) -> Path:
        sha256, suffix = check_sha256(sha256), check_suffix(suffix)
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def contains(self, sha256: str, suffix: str) -> bool:
        return self.path_for(sha256, suffix).is_file()

    def add_file(self, source: str | Path, suffix: str | None = None, *, move: bool = False) -> tuple[str, Path, int]:
        """Store the file at `source`; returns (sha256, stored path, size). `move` takes the file instead of copying
        it when it lies on the same filesystem (outputs written by the engine)."""
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"cannot store {str(source)!r}: not a file")
        suffix = check_suffix(suffix if suffix is not None else "".join(source.suffixes[-1:]) or ".bin")
        sha256 = sha256_of_file(source)
        target = self.path_for(sha256, suffix)
        size = source.stat().st_size
        if target.is_file():
            # Fresh again: orphan cleaning spares young files, and a new row is about to point at this one.
            os.utime(target)
            if move:
                source.unlink()
            return sha256, target, size
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            try:
                os.replace(source, target)
                _fsync_directory(target.parent)
                return sha256, target, size
            except OSError:  # another filesystem: copy below, then remove
                pass
        self._copy_in(source, target)
        if move:
            source.unlink()
        return sha256, target, size

    def add_bytes(self, data: bytes, suffix: str) -> tuple[str, Path, int]:
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path_for(sha256, suffix)
        if target.is_file():
            os.utime(target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".incoming-", delete=False) as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(handle.name, target)
            _fsync_directory(target.parent)
        return sha256, target, len(data)

    def remove(self, sha256: str, suffix: str) -> bool:
        path = self.path_for(sha256, suffix)
        if path.is_file():
            path.unlink()
            return True
        return False

    def iter_files(self):
        """Every stored file as (sha256, suffix, path); temporary and foreign files are skipped."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or len(folder.name) != 2:
                continue
            for path in sorted(folder.iterdir()):
                sha256, dot, _ = path.name.partition(".")
                if path.is_file() and dot and SHA256_PATTERN.match(sha256) and sha256[:2] == folder.name:
                    yield sha256, path.name[len(sha256):], path

    def incomplete_files(self) -> list[Path]:
        """Leftovers of copies a crash interrupted (never counted as stored)."""
        return sorted(self.root.glob("*/.incoming-*")) if self.root.is_dir() else []

    def _copy_in(self, source: Path, target: Path) -> None:
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".incoming-", delete=False) as handle:
            with open(source, "rb") as reader:
                shutil.copyfileobj(reader, handle, CHUNK)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, target)
        _fsync_directory(target.parent)


def _fsync_directory(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
