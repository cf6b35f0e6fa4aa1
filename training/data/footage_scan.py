"""Find a user's footage (videos, images) and their captions in a folder, probing each file once.

Nothing here raises for a bad file: every file left out lands in `FootageScan.skipped` with a reason.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import imageio_ffmpeg
from PIL import Image, UnidentifiedImageError

from core.video_io import read_video_info

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".webm", ".gif", ".mkv"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
CAPTION_EXTENSION = ".txt"
METADATA_NAMES = ("metadata.csv", "metadata.jsonl")  # Hugging Face imagefolder convention; later names win a tie

# EXIF orientations 5 to 8 turn the picture a quarter turn, so its shown width and height swap.
_EXIF_ORIENTATION = 0x0112
_QUARTER_TURN_ORIENTATIONS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class FootageFile:
    """One readable video or image with its caption; sizes are as shown (EXIF rotation applied for images)."""

    path: Path
    kind: Literal["video", "image"]
    caption: str
    caption_source: str  # the .txt or metadata file the caption came from, or "default_caption"
    width: int
    height: int
    fps: float | None  # None for images
    num_frames: int  # 1 for images
    duration_s: float  # 0.0 for images


@dataclass(frozen=True)
class FootageScan:
    """What `scan_footage` found: usable files sorted by path, and every file left out with the reason."""

    folder: Path
    files: list[FootageFile] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def scan_footage(folder: str | Path, *, default_caption: str | None = None) -> FootageScan:
    """Walk `folder` recursively; caption each video and image from a same-named .txt, else from a
    metadata.csv / metadata.jsonl in its folder or a parent, else `default_caption`.

    Dot-files and dot-folders are ignored (macOS `._x.mp4` debris, `.git`, caches). Symlinks that
    resolve outside `folder` are not followed and are reported; symlinked folders inside it are not
    walked, because their files are found at their real place.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"`folder` must be an existing folder, got {str(folder)!r}")
    if default_caption is not None and (not isinstance(default_caption, str) or not default_caption.strip()):
        raise ValueError(f"`default_caption` must be None or a non-empty string, got {default_caption!r}")
    root = root.resolve()
    skipped: list[tuple[Path, str]] = []
    media, texts, metadata_files = _walk(root, skipped)

    metadata: dict[Path, tuple[str, Path]] = {}  # media path -> (caption, metadata file)
    # Shallow folders first, so a metadata file nearer the media overrides one further up.
    for meta_path in sorted(metadata_files, key=lambda p: (len(p.parts), p.name)):
        metadata.update(_read_metadata(meta_path, skipped))

    files: list[FootageFile] = []
    used_captions: set[Path] = set()
    for path in sorted(media):
        txt = path.with_suffix(CAPTION_EXTENSION)
        if txt in texts:
            used_captions.add(txt)
        # Probe before looking for a caption: "unreadable" is the more useful thing to hear about a broken file.
        probed = _probe(path)
        if isinstance(probed, str):
            skipped.append((path, probed))
            continue
        caption, source, why_not = _caption_for(path, txt if txt in texts else None, metadata, default_caption)
        if caption is None:
            skipped.append((path, why_not))
            continue
        kind, width, height, fps, num_frames, duration_s = probed
        files.append(FootageFile(path, kind, caption, source, width, height, fps, num_frames, duration_s))

    for txt in sorted(texts - used_captions):
        skipped.append((txt, "caption file with no video or image of the same name"))
    walked_past = {path for path, _ in skipped}  # e.g. a symlink out of the folder: already reported
    for path, (_, meta_path) in sorted(metadata.items()):
        if path not in media and path not in walked_past:
            skipped.append((path, f"named in {meta_path.name} ({meta_path.parent}) but no such video or image"))
    return FootageScan(folder=root, files=files, skipped=skipped)


def _walk(root: Path, skipped: list[tuple[Path, str]]) -> tuple[set[Path], set[Path], list[Path]]:
    """Media files, caption .txt files and metadata files under `root`; reports what it passes over."""
    media: set[Path] = set()
    texts: set[Path] = set()
    metadata_files: list[Path] = []
    folders = [root]
    while folders:
        current = folders.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as err:
            skipped.append((current, f"cannot list folder: {err.strerror or err}"))
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                target = Path(os.path.realpath(path))
                if not target.exists():
                    skipped.append((path, "broken symlink"))
                    continue
                if not target.is_relative_to(root):
                    skipped.append((path, f"symlink to {target}, outside the folder; not followed"))
                    continue
                if target.is_dir():
                    continue  # its files are scanned at their real place inside the folder
            if entry.is_dir():
                folders.append(path)
                continue
            suffix = path.suffix.lower()
            if entry.name in METADATA_NAMES:
                metadata_files.append(path)
            elif suffix in VIDEO_EXTENSIONS or suffix in IMAGE_EXTENSIONS:
                media.add(path)
            elif path.suffix == CAPTION_EXTENSION:
                texts.add(path)
            else:
                skipped.append((path, f"not a supported video or image ({suffix or 'no extension'})"))
    return media, texts, metadata_files


def _read_metadata(meta_path: Path, skipped: list[tuple[Path, str]]) -> dict[Path, tuple[str, Path]]:
    """{media path: (caption, meta_path)} from one metadata.csv / metadata.jsonl; bad rows are reported."""
    try:
        text = meta_path.read_text(encoding="utf-8-sig")  # -sig: spreadsheet exports often start with a BOM
    except (OSError, UnicodeDecodeError) as err:
        skipped.append((meta_path, f"cannot read metadata file: {err}"))
        return {}
    rows: list[tuple[str, object, object]] = []  # (where, file_name, caption)
    if meta_path.suffix == ".csv":
        try:
            reader = csv.DictReader(text.splitlines())
            if not {"file_name", "caption"} <= set(reader.fieldnames or ()):
                skipped.append((meta_path, f"needs columns `file_name` and `caption`, has {reader.fieldnames}"))
                return {}
            rows = [(f"row {n}", r["file_name"], r["caption"]) for n, r in enumerate(reader, start=2)]
        except csv.Error as err:
            skipped.append((meta_path, f"not valid CSV: {err}"))
            return {}
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                skipped.append((meta_path, f"line {n} is not JSON: {err}"))
                continue
            if not isinstance(record, dict):
                skipped.append((meta_path, f"line {n} is not a JSON object"))
                continue
            rows.append((f"line {n}", record.get("file_name"), record.get("caption")))

    captions: dict[Path, tuple[str, Path]] = {}
    for where, file_name, caption in rows:
        if not isinstance(file_name, str) or not file_name.strip():
            skipped.append((meta_path, f"{where}: `file_name` must be a non-empty string, got {file_name!r}"))
            continue
        if not isinstance(caption, str):
            skipped.append((meta_path, f"{where}: `caption` must be a string, got {caption!r}"))
            continue
        # file_name is relative to the metadata file's folder, with / separators on every platform.
        path = Path(os.path.normpath(meta_path.parent / file_name.strip()))
        captions[path] = (caption, meta_path)
    return captions


def _caption_for(
    path: Path, txt: Path | None, metadata: dict[Path, tuple[str, Path]], default_caption: str | None
) -> tuple[str | None, str, str]:
    """(caption or None, where it came from, why there is none); a .txt beats metadata beats the default."""
    why_not = "no caption: no same-named .txt, no metadata.csv/.jsonl entry, no default_caption"
    if txt is not None:
        try:
            caption = txt.read_text(encoding="utf-8-sig").strip()
            why_not = f"caption file {txt.name} is empty"
        except (OSError, UnicodeDecodeError) as err:
            caption, why_not = "", f"cannot read caption file {txt.name}: {err}"
        if caption:
            return caption, str(txt), ""
    if path in metadata:
        caption, meta_path = metadata[path]
        if caption.strip():
            return caption.strip(), str(meta_path), ""
        why_not = f"empty caption in {meta_path}"
    if default_caption is not None:
        return default_caption.strip(), "default_caption", ""
    return None, "", why_not


def _probe(path: Path) -> tuple[str, int, int, float | None, int, float] | str:
    """(kind, width, height, fps, num_frames, duration_s), or the reason the file cannot be used."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
    except OSError as err:
        return f"cannot stat: {err.strerror or err}"
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        try:
            info = read_video_info(path)
        except (ValueError, OSError) as err:
            return f"unreadable video: {str(err).splitlines()[0][:300]}"
        if damage := _container_errors(path):
            return f"damaged video: {damage}"
        return "video", info.width, info.height, info.fps, info.num_frames, info.duration_s
    try:
        with Image.open(path) as image:
            image.load()  # decode fully: a truncated JPEG opens fine and fails only here
            width, height = image.size
            if image.getexif().get(_EXIF_ORIENTATION) in _QUARTER_TURN_ORIENTATIONS:
                width, height = height, width
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        return f"unreadable image: {err}"
    return "image", width, height, None, 1, 0.0


def _container_errors(path: Path) -> str:
    """The last error ffmpeg reports while reading every video packet (no decoding), or "" if none.

    read_video_info counts the packets that are there: a cut-off mp4 whose index survives reads as a
    shorter video with a broken last frame. Reading the packets with errors shown catches that cheaply.
    """
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path),
           "-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    said = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0 and not said:
        said = f"ffmpeg exit {proc.returncode}"
    return said.splitlines()[-1][:300] if said else ""  # the last line: for a cut-off file, "partial file"
