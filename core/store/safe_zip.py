"""Reading a zip that came from elsewhere without trusting it: member names that could land outside the
target folder (zip slip), symlinks, encrypted members and sizes that would fill the disk (zip bombs) are
refused before anything is extracted, and every byte read is counted against the member's declared size."""

from __future__ import annotations

import hashlib
import stat
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
CHUNK = 1 << 20
READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
# What a damaged member raises while it is read: a bad CRC, a broken deflate stream, a short file.
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


@dataclass(frozen=True)
class ZipLimits:
    """Caps on what an untrusted zip may unpack to; raise them for very large projects."""

    max_members: int = 100_000  # a 10,000-generation project with its thumbnails and inputs fits easily
    max_member_bytes: int = 64 * GiB  # one uncompressed member (a long 4K video is a few GiB)
    max_total_bytes: int = 1024 * GiB  # all members together
    max_compression_ratio: float = 1000.0  # video is stored as is and JSON deflates ~10x; a bomb deflates ~1000x
    ratio_applies_above: int = 1 * MiB  # a small member may compress absurdly well (a run of zeros) harmlessly

    def __post_init__(self) -> None:
        for name in ("max_members", "max_member_bytes", "max_total_bytes", "ratio_applies_above"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"`{name}` must be a non-negative integer but is {value!r}")
        if not isinstance(self.max_compression_ratio, (int, float)) or self.max_compression_ratio < 1:
            raise ValueError(
                f"`max_compression_ratio` must be a number of at least 1 but is {self.max_compression_ratio!r}"
            )


def unsafe_name_reason(name: str) -> str | None:
    """Why extracting a member called `name` could write outside the target folder, or None when it cannot."""
    if not name:
        return "it has an empty name"
    if "\x00" in name:
        return "its name contains a NUL character"
    if "\\" in name:
        return "its name contains a backslash (a Windows path)"
    if ":" in name:
        return "its name contains ':' (a drive letter or an alternate data stream)"
    if name.startswith("/"):
        return "its name is an absolute path"
    if ".." in name.split("/"):
        return "its name has a '..' component"
    return None


def is_symlink(info: zipfile.ZipInfo) -> bool:
    # Unix zip tools keep the file mode in the high 16 bits of the external attributes.
    return stat.S_ISLNK(info.external_attr >> 16)


def check_members(infos: Iterable[zipfile.ZipInfo], limits: ZipLimits) -> None:
    """Refuse the whole archive (ValueError naming the member) if any member is unsafe or too large."""
    seen: set[str] = set()
    total = 0
    for count, info in enumerate(infos, start=1):
        name = info.filename
        if count > limits.max_members:
            raise ValueError(f"it has more than {limits.max_members} members (the `max_members` limit)")
        reason = unsafe_name_reason(name)
        if reason is not None:
            raise ValueError(f"member {name!r} is refused because {reason} (zip slip)")
        if is_symlink(info):
            raise ValueError(f"member {name!r} is refused because it is a symbolic link")
        if name in seen:
            raise ValueError(f"member {name!r} appears more than once")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise ValueError(f"member {name!r} is encrypted")
        if info.compress_type not in READABLE_METHODS:
            raise ValueError(f"member {name!r} uses an unsupported compression method ({info.compress_type})")
        if info.file_size > limits.max_member_bytes:
            raise ValueError(
                f"member {name!r} unpacks to {info.file_size} bytes, over the `max_member_bytes` limit of "
                f"{limits.max_member_bytes}"
            )
        if info.file_size > limits.ratio_applies_above:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_compression_ratio:
                raise ValueError(
                    f"member {name!r} unpacks {ratio:.0f}x its packed size, over the `max_compression_ratio` "
                    f"limit of {limits.max_compression_ratio:g} (a zip bomb?)"
                )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ValueError(f"its members unpack to more than the `max_total_bytes` limit of {limits.max_total_bytes}")


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> bytes:
    """The whole of a small member, refused if it is larger than `max_bytes`."""
    if info.file_size > max_bytes:
        raise ValueError(f"member {info.filename!r} is {info.file_size} bytes, over the limit of {max_bytes}")
    try:
        with archive.open(info) as reader:
            data = reader.read(max_bytes + 1)
    except READ_ERRORS as error:
        raise ValueError(f"member {info.filename!r} cannot be read ({error})") from error
    if len(data) != info.file_size:
        raise ValueError(f"member {info.filename!r} holds {len(data)} bytes but declares {info.file_size}")
    return data


def extract_verified(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, sha256: str) -> None:
    """Copy a member to `target` (a path the caller chose, never the member's name), checking its sha256 and size."""
    digest = hashlib.sha256()
    written = 0
    try:
        with archive.open(info) as reader, open(target, "xb") as writer:
            while chunk := reader.read(CHUNK):
                written += len(chunk)
                if written > info.file_size:  # zipfile stops at the declared size; this guards that promise
                    raise ValueError(f"member {info.filename!r} holds more than the {info.file_size} bytes it declares")
                digest.update(chunk)
                writer.write(chunk)
    except READ_ERRORS as error:
        raise ValueError(f"member {info.filename!r} cannot be read ({error})") from error
    if written != info.file_size:
        raise ValueError(f"member {info.filename!r} holds {written} bytes but declares {info.file_size}")
    if digest.hexdigest() != sha256:
        raise ValueError(
            f"member {info.filename!r} is damaged or altered: its sha256 is {digest.hexdigest()}, not the {sha256} "
            f"its name promises"
        )
