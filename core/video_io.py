"""Write and read Kelp's video files: H.264 mp4 with embedded JSON metadata, GIF, JSON sidecar.
Every writer goes through a temp file in the target folder and an atomic rename."""

import contextlib
import itertools
import json
import numbers
import os
import re
import secrets
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np

METADATA_KEY = "kelp"  # the mp4 tag that holds Kelp's JSON metadata

# One command-line argument carries the tag; Linux refuses any single argument over 128 KiB.
_MAX_METADATA_BYTES = 100_000
# ffmetadata escapes `=;#\` and newline with a backslash; a token is an escape, a separator or text.
_FFMETADATA_TOKEN = re.compile(r"\\(.)|([=\n])|([^\\=\n]+)", re.S)


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, read without decoding it."""

    width: int
    height: int
    fps: float
    num_frames: int
    duration_s: float


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_target(path: str | Path, suffix: str) -> Iterator[Path]:
    """Yield a hidden temp path beside `path`; on success fsync it and rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A dot prefix and a .tmp suffix, so a crash never leaves a file that looks finished.
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        if os.name == "posix":  # the rename itself survives a power cut only once the folder is synced
            _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _check_frames(frames: np.ndarray, name: str, even: bool) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise ValueError(f"`{name}` must be a uint8 numpy array, got dtype {dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"`{name}` must have shape (T, H, W, 3) with T >= 1, got {frames.shape}")
    _, height, width, _ = frames.shape
    if height <= 0 or width <= 0 or (even and (height % 2 or width % 2)):
        need = "positive and even (yuv420p)" if even else "positive"
        raise ValueError(f"`{name}` height and width must be {need}, got {height}x{width}")


def _check_fps(fps: float) -> None:
    if not isinstance(fps, numbers.Real) or not 0 < fps < float("inf"):
        raise ValueError(f"`fps` must be a positive number, got {fps!r}")


def _metadata_json(metadata: dict | None) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise ValueError(f"`metadata` must be a dict or None, got {type(metadata).__name__}")
    try:
        text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"`metadata` is not JSON-serialisable: {err}") from err
    if (size := len(text.encode())) > _MAX_METADATA_BYTES:
        raise ValueError(f"`metadata` is {size} bytes as JSON; the limit is {_MAX_METADATA_BYTES}")
    return text


def write_video(frames: np.ndarray, path: str | Path, fps: float, metadata: dict | None = None) -> Path:
    """Encode uint8 (T, H, W, 3) RGB frames to an H.264 mp4 at `path`; return the final path."""
    _check_frames(frames, "frames", even=True)
    return write_video_stream([frames], path, fps, metadata)


def write_video_stream(
    chunks: Iterable[np.ndarray], path: str | Path, fps: float, metadata: dict | None = None
) -> Path:
    """Like write_video, but frames arrive as uint8 (t, H, W, 3) chunks, never all held at once."""
    _check_fps(fps)
    tag = _metadata_json(metadata)
    chunk_iter = iter(chunks)
    first = next(chunk_iter, None)
    if first is None:
        raise ValueError("`chunks` is empty; a video needs at least one frame")
    _check_frames(first, "chunks[0]", even=True)
    height, width = first.shape[1:3]
    # A rational rate keeps fractional fps such as 7.5 (15/2) or 24000/1001 exact in the file.
    rate = Fraction(float(fps)).limit_denominator(1001)
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
        "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0",
        "-an", "-c:v", "libx264", "-preset", "medium", "-crf", "17",
        # Convert and tag as BT.709 so browsers and decoders agree on the colours.
        "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
               "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709",
        # faststart puts the index first so a browser can play while downloading;
        # use_metadata_tags lets the mp4 keep our own `kelp` key.
        "-movflags", "+faststart+use_metadata_tags",
    ]
    if tag is not None:
        cmd += ["-metadata", f"{METADATA_KEY}={tag}"]
    with _atomic_target(path, ".mp4") as tmp, tempfile.TemporaryFile() as log:
        # stderr goes to a file: an unread pipe could fill up and stall ffmpeg.
        proc = subprocess.Popen(
            [*cmd, "-f", "mp4", str(tmp)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            for i, chunk in enumerate(itertools.chain([first], chunk_iter)):
                if i:
                    _check_frames(chunk, f"chunks[{i}]", even=True)
                    if chunk.shape[1:3] != (height, width):
                        raise ValueError(f"`chunks[{i}]` is {chunk.shape[1]}x{chunk.shape[2]}, "
                                         f"but chunks[0] is {height}x{width}")
                proc.stdin.write(np.ascontiguousarray(chunk).data)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg quit early; its exit code and stderr below say why
        except BaseException:
            proc.kill()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            proc.wait()
        if proc.returncode != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"ffmpeg failed (exit {proc.returncode}) writing {path}:\n{tail}")
    return Path(path)


def write_gif(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """Write uint8 (T, H, W, 3) frames as a GIF that loops forever; return the final path."""
    _check_frames(frames, "frames", even=False)
    _check_fps(fps)
    # GIF delays are whole centiseconds: round each frame's end time, not its length, so a
    # clip at 8 fps alternates 120/130 ms and keeps its total length instead of drifting.
    ends_cs = np.round(np.arange(1, len(frames) + 1) * 100 / fps)
    durations_ms = [int(ms) for ms in np.maximum(np.diff(ends_cs, prepend=0), 1) * 10]
    # Pillow merges identical consecutive frames into one longer frame; playback timing is kept.
    with _atomic_target(path, ".gif") as tmp:
        iio.imwrite(tmp, frames, extension=".gif", plugin="pillow", duration=durations_ms, loop=0)
    return Path(path)


def write_sidecar(video_path: str | Path, metadata: dict) -> Path:
    """Write `metadata` as pretty UTF-8 JSON beside the video (same name, .json); return its path."""
    if not isinstance(metadata, dict):
        raise ValueError(f"`metadata` must be a dict, got {type(metadata).__name__}")
    path = Path(video_path).with_suffix(".json")
    text = json.dumps(metadata, indent=2, ensure_ascii=False) + "\n"
    with _atomic_target(path, ".json") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video file at {path}")
    return path


def _parse_ffmetadata(text: str) -> dict[str, str]:
    """The global tags of an ffmetadata dump, unescaped."""
    tags: dict[str, str] = {}
    key, buf, line_start, comment = None, [], True, False
    for escaped, sep, plain in _FFMETADATA_TOKEN.findall(text + "\n"):
        if line_start:
            if plain.startswith("["):
                break  # [STREAM] and [CHAPTER] sections follow the global tags
            comment = plain.startswith((";", "#"))  # e.g. the ;FFMETADATA1 header
            line_start = False
        if sep == "\n":
            if key is not None and not comment:
                tags[key] = "".join(buf)
            key, buf, line_start = None, [], True
        elif sep == "=" and key is None:
            key, buf = "".join(buf), []
        else:
            buf.append(escaped or sep or plain)
    return tags


def read_video_metadata(path: str | Path) -> dict | None:
    """The dict that write_video stored in the file, or None if it has none."""
    path = _existing(path)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"]
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        said = proc.stderr.decode(errors="replace").strip()[-1000:]
        raise ValueError(f"ffmpeg cannot read {path}: {said}")
    tag = _parse_ffmetadata(proc.stdout.decode("utf-8", errors="replace")).get(METADATA_KEY)
    try:
        return None if tag is None else json.loads(tag)
    except json.JSONDecodeError as err:
        raise ValueError(f"the `{METADATA_KEY}` tag of {path} is not JSON: {err}") from err


def read_video_frames(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode up to `max_frames` frames from the start: (uint8 (T, H, W, 3) RGB, fps)."""
    if max_frames is not None and (not isinstance(max_frames, numbers.Integral) or max_frames < 0):
        raise ValueError(f"`max_frames` must be None or an int >= 0, got {max_frames!r}")
    fps = read_video_info(path).fps  # exact, where imageio's header parse rounds to 2 decimals
    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        width, height = next(gen)["size"]
        frames = [np.frombuffer(buf, np.uint8).reshape(height, width, 3)
                  for buf in itertools.islice(gen, None if max_frames is None else int(max_frames))]
    except (OSError, RuntimeError) as err:
        raise ValueError(f"ffmpeg cannot decode {path}: {err}") from err
    finally:
        gen.close()  # stops ffmpeg when max_frames ends the read early
    video = np.stack(frames) if frames else np.empty((0, height, width, 3), np.uint8)
    return video, fps


def read_video_info(path: str | Path) -> VideoInfo:
    """Size, exact fps, exact frame count and duration, without decoding the frames."""
    path = _existing(path)
    # framecrc of a stream copy lists the time base, size and one line per packet (one packet
    # per frame in an H.264 mp4) with its duration, so the counts are exact and nothing is decoded.
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path),
           "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"]
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    text = proc.stdout.decode(errors="replace")
    time_base = re.search(r"^#tb 0: (\d+)/(\d+)$", text, re.M)
    size = re.search(r"^#dimensions 0: (\d+)x(\d+)$", text, re.M)
    durations = [int(line.split(",")[3]) for line in text.splitlines() if line[:1].isdigit()]
    total = sum(durations) * Fraction(int(time_base[1]), int(time_base[2])) if time_base else 0
    if proc.returncode != 0 or size is None or total <= 0:
        said = proc.stderr.decode(errors="replace").strip()[-1000:] or "no timed video frames"
        raise ValueError(f"ffmpeg cannot read {path}: {said}")
    num_frames = len(durations)
    return VideoInfo(int(size[1]), int(size[2]), float(num_frames / total), num_frames, float(total))
