"""Uploaded footage for a fine-tune, copied into a run's own folder with its captions as same-named .txt files.

Uploaded names are never used as paths: each file is stored as `NNN-<letters and digits of its name>.<ext>`.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from training.data.footage import FootageScan, scan_footage
from training.data.footage_scan import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

MAX_FILES = 200
MAX_TOTAL_BYTES = 20 * 2**30  # uploads are copied once more into the data folder; keep a runaway upload off the disk
MAX_CAPTION_CHARS = 1000  # the text encoder reads far fewer tokens; this only keeps junk out
MAX_TRIGGER_CHARS = 60
FOOTAGE_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS


def upload_name(path: str | Path) -> str:
    """The file name a browser sent (the part after the last / or \\), as the captions table shows it."""
    return re.split(r"[/\\]", str(path))[-1]


def safe_stem(name: str, fallback: str = "clip", max_chars: int = 40) -> str:
    """Letters, digits and single dashes only: safe as a file name on every system."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:max_chars].strip("-")
    return stem or fallback


def check_trigger(trigger: str) -> str:
    if not isinstance(trigger, str) or len(trigger.strip()) > MAX_TRIGGER_CHARS or "\n" in trigger:
        raise ValueError(f"`trigger` must be one line of at most {MAX_TRIGGER_CHARS} characters, got {trigger!r}")
    return trigger.strip()


def default_caption(name: str, trigger: str = "") -> str:
    """A starting caption from a file name ("red_car-01.mp4" -> "red car 01"), led by the trigger word."""
    words = re.sub(r"[^A-Za-z0-9]+", " ", Path(upload_name(name)).stem).strip()
    return " ".join(part for part in (trigger, words) if part) or "a video"


def caption_for(name: str, caption, trigger: str) -> str:
    """The caption stored for file `name`: one line, the trigger word included (prepended when missing)."""
    if caption is None or (isinstance(caption, str) and not caption.strip()):
        return default_caption(name, trigger)
    if not isinstance(caption, str) or len(caption) > MAX_CAPTION_CHARS:
        raise ValueError(f"`captions[{name!r}]` must be a text of at most {MAX_CAPTION_CHARS} characters, "
                         f"got {caption if not isinstance(caption, str) else caption[:60] + '...'!r}")
    text = " ".join(caption.split())
    if trigger and trigger.lower() not in text.lower():
        text = f"{trigger} {text}"
    return text


def check_files(files) -> list[Path]:
    """The uploaded paths, each an existing video or image file; a ValueError names the first bad one."""
    if isinstance(files, (str, Path)) or not isinstance(files, (list, tuple)) or not files:
        raise ValueError(f"`files` must list at least one video or image, got {files!r}")
    if len(files) > MAX_FILES:
        raise ValueError(f"`files` may list at most {MAX_FILES} files, got {len(files)}")
    paths = []
    for entry in files:
        path = Path(entry) if isinstance(entry, (str, Path)) else None
        if path is None or not path.is_file():
            raise ValueError(f"`files` entry {entry!r} is not an existing file")
        if path.suffix.lower() not in FOOTAGE_EXTENSIONS:
            raise ValueError(f"`files` entry {upload_name(path)!r} is not a video or image; "
                             f"use one of {sorted(FOOTAGE_EXTENSIONS)}")
        paths.append(path)
    total = sum(path.stat().st_size for path in paths)
    if total > MAX_TOTAL_BYTES:
        raise ValueError(f"`files` hold {total / 2**30:.1f} GiB; at most {MAX_TOTAL_BYTES / 2**30:.0f} GiB at once")
    return paths


@dataclass(frozen=True)
class CopiedFootage:
    scan: FootageScan  # what training will read, in the run's folder
    skipped: list[tuple[str, str]]  # (uploaded name, why) for each file that gives no training data
    uploaded: dict[str, str]  # stored file name -> the name it was uploaded as

    @property
    def usable(self) -> int:
        return len(self.scan.files)


def copy_footage(paths: list[Path], captions: dict, trigger: str, folder: Path) -> CopiedFootage:
    """Copy `paths` into `folder` (created) with a caption file each, and scan what was copied. `captions` maps an
    upload's name (or its path as given) to its caption."""
    if not isinstance(captions, dict):
        raise ValueError(f"`captions` must map file names to captions, got {captions!r}")
    texts = [caption_for(upload_name(p), captions.get(upload_name(p), captions.get(str(p))), trigger) for p in paths]
    folder.mkdir(parents=True, exist_ok=False)
    uploaded = {}
    for index, (path, caption) in enumerate(zip(paths, texts)):
        stored = folder / f"{index:03d}-{safe_stem(Path(upload_name(path)).stem)}{path.suffix.lower()}"
        shutil.copyfile(path, stored)
        stored.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
        uploaded[stored.name] = upload_name(path)
    scan = scan_footage(folder)
    skipped = [(uploaded.get(Path(path).name, Path(path).name), why) for path, why in scan.skipped]
    return CopiedFootage(scan, skipped, uploaded)
