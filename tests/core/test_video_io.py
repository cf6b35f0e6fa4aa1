"""Tests for core.video_io: mp4/GIF/sidecar writing, metadata round trips, atomic writes, readers."""

import json
import shutil
import stat
import struct
import subprocess
import time
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image, ImageSequence

from core import video_io
from core.video_io import (
    METADATA_KEY,
    read_video_frames,
    read_video_info,
    read_video_metadata,
    write_gif,
    write_sidecar,
    write_video,
    write_video_stream,
)

NASTY = {
    "prompt": "a café at night = ; # \\ back\\slash \"quoted\" 'single'\nsecond line\r\n\ttab 日本語 🌊",
    "negative": "\\n is not a newline; \\\\ is two backslashes; =;#",
    "seed": 1234567890123,
    "cfg": 6.25,
    "tiny": 1.5e-12,
    "nested": {"list": [1, 2.5, None, True, "x=y"], "empty": {}, "=;#": ["\\", "\n"]},
}


def moving_square(num_frames: int = 9, height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth gradient with a red square sliding right: easy to encode, easy to compare."""
    yy, xx = np.mgrid[:height, :width]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frames[t, ..., 0] = xx * 255 // (width - 1)
        frames[t, ..., 1] = yy * 255 // (height - 1)
        frames[t, ..., 2] = 90
        frames[t, 12:28, 4 + 4 * t: 20 + 4 * t] = (230, 40, 40)
    return frames


def top_level_boxes(path: Path) -> list[str]:
    """Types of the top-level ISO-BMFF boxes, in file order."""
    data, pos, types = path.read_bytes(), 0, []
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size == 1:  # a 64-bit size follows the type
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - pos
        types.append(kind.decode("latin-1"))
        pos += size
    return types


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or ".tmp" in p.name)


def test_ffprobe_sees_h264_yuv420p_exact_frames_rate_and_tag(tmp_path):
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        pytest.skip("ffprobe is not installed")
    path = write_video(moving_square(), tmp_path / "clip.mp4", fps=7.5, metadata={"seed": 7})
    out = subprocess.run(
        [ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0", "-print_format", "json",
         "-show_streams", "-show_format", str(path)],
        capture_output=True, check=True,
    )
    probe = json.loads(out.stdout)
    stream = probe["streams"][0]
    assert stream["codec_name"] == "h264"
    assert stream["pix_fmt"] == "yuv420p"
    assert (stream["width"], stream["height"]) == (64, 48)
    assert stream["nb_read_frames"] == "9"
    assert stream["avg_frame_rate"] == "15/2"
    assert json.loads(probe["format"]["tags"][METADATA_KEY]) == {"seed": 7}


def test_moov_comes_before_mdat_for_streaming_playback(tmp_path):
    boxes = top_level_boxes(write_video(moving_square(), tmp_path / "clip.mp4", fps=8))
    assert "moov" in boxes and "mdat" in boxes
    assert boxes.index("moov") < boxes.index("mdat")


def test_metadata_round_trips_nasty_json(tmp_path):
    path = write_video(moving_square(3), tmp_path / "clip.mp4", fps=8, metadata=NASTY)
    assert read_video_metadata(path) == NASTY


def test_video_without_metadata_reads_none(tmp_path):
    assert read_video_metadata(write_video(moving_square(3), tmp_path / "clip.mp4", fps=8)) is None


def test_foreign_kelp_tag_that_is_not_json_raises_value_error(tmp_path):
    clean = write_video(moving_square(3), tmp_path / "clean.mp4", fps=8)
    foreign = tmp_path / "foreign.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clean), "-c", "copy",
         "-movflags", "use_metadata_tags", "-metadata", f"{METADATA_KEY}=not json", str(foreign)],
        check=True,
    )
    with pytest.raises(ValueError, match="foreign.mp4"):
        read_video_metadata(foreign)


def test_ffmetadata_parser_unescapes_and_skips_comments_and_sections():
    dump = ";FFMETADATA1\n#comment=x\na\\=b=1\\;2\\#3\\\\\nmulti=line1\\\nline2\nend=\\\\\n[STREAM]\nz=9\n"
    assert video_io._parse_ffmetadata(dump) == {"a=b": "1;2#3\\", "multi": "line1\nline2", "end": "\\"}


@pytest.mark.parametrize("fps", [8, 7.5, 24000 / 1001])
def test_decoded_frames_match_input_and_fps_round_trips(tmp_path, fps):
    frames = moving_square()
    path = write_video(frames, tmp_path / "clip.mp4", fps=fps)
    decoded, read_fps = read_video_frames(path)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(np.int16) - frames).mean() < 6
    assert read_fps == fps
    info = read_video_info(path)
    assert (info.width, info.height, info.fps, info.num_frames) == (64, 48, fps, 9)
    assert info.duration_s == pytest.approx(9 / fps)


def test_max_frames_reads_only_the_start(tmp_path):
    frames = moving_square()
    path = write_video(frames, tmp_path / "clip.mp4", fps=8)
    first, _ = read_video_frames(path, max_frames=4)
    everything, _ = read_video_frames(path)
    assert first.shape == (4, 48, 64, 3)
    np.testing.assert_array_equal(first, everything[:4])


def test_stream_of_chunks_writes_every_frame(tmp_path):
    frames = moving_square(10)
    path = write_video_stream(iter([frames[:4], frames[4:5], frames[5:]]), tmp_path / "s.mp4", fps=8)
    decoded, _ = read_video_frames(path)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(np.int16) - frames).mean() < 6


@pytest.mark.parametrize("chunks", [[], [moving_square(0)]], ids=["no-chunks", "empty-chunk"])
def test_stream_without_frames_is_rejected(tmp_path, chunks):
    with pytest.raises(ValueError, match="`chunks"):
        write_video_stream(chunks, tmp_path / "s.mp4", fps=8)
    assert list(tmp_path.iterdir()) == []


def test_chunk_with_other_size_is_rejected_and_leaves_nothing(tmp_path):
    chunks = [moving_square(2), moving_square(2, height=32)]
    with pytest.raises(ValueError, match=r"chunks\[1\]"):
        write_video_stream(chunks, tmp_path / "s.mp4", fps=8)
    assert list(tmp_path.iterdir()) == []


def test_failing_stream_leaves_no_file_and_no_temp(tmp_path):
    target = tmp_path / "out" / "clip.mp4"  # the parent does not exist yet
    seen_midway = []

    def chunks():
        yield moving_square(3)
        # ffmpeg creates its output soon after it starts; give it a moment on a slow machine.
        deadline = time.monotonic() + 5
        while not leftovers(target.parent) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_midway.extend(leftovers(target.parent))
        assert not target.exists()
        raise RuntimeError("decoder died")

    with pytest.raises(RuntimeError, match="decoder died"):
        write_video_stream(chunks(), target, fps=8)
    # While writing, the only file was a hidden temp that cannot be taken for a finished clip.
    assert len(seen_midway) == 1 and seen_midway[0].startswith(".") and seen_midway[0].endswith(".tmp.mp4")
    assert list(target.parent.iterdir()) == []


def test_interrupted_overwrite_keeps_the_old_file(tmp_path):
    target = write_video(moving_square(3), tmp_path / "clip.mp4", fps=8, metadata={"v": 1})
    before = target.read_bytes()

    def chunks():
        yield moving_square(3)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_video_stream(chunks(), target, fps=8, metadata={"v": 2})
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_ffmpeg_failure_raises_with_its_stderr_and_cleans_up(tmp_path, monkeypatch):
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text("#!/bin/sh\necho 'Unknown encoder libx264: boom' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(fake))
    with pytest.raises(RuntimeError, match="boom"):
        write_video(moving_square(), tmp_path / "clip.mp4", fps=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-ffmpeg"]


@pytest.mark.parametrize(
    ("frames", "fps", "argument"),
    [
        (moving_square(width=63), 8, "frames"),
        (moving_square(height=47), 8, "frames"),
        (moving_square().astype(np.float32), 8, "frames"),
        (moving_square()[..., :2], 8, "frames"),
        (moving_square()[0], 8, "frames"),
        (moving_square(), 0, "fps"),
        (moving_square(), -8, "fps"),
    ],
    ids=["odd-width", "odd-height", "float32", "two-channels", "three-dims", "fps-zero", "fps-negative"],
)
def test_bad_input_raises_value_error_naming_the_argument(tmp_path, frames, fps, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        write_video(frames, tmp_path / "clip.mp4", fps=fps)
    assert list(tmp_path.iterdir()) == []


def test_metadata_that_is_not_json_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="`metadata`"):
        write_video(moving_square(), tmp_path / "clip.mp4", fps=8, metadata={"x": object()})


def test_gif_has_every_frame_and_loops_forever(tmp_path):
    frames = moving_square()
    path = write_gif(frames, tmp_path / "clip.gif", fps=8)
    assert path == tmp_path / "clip.gif"
    assert iio.imread(path, index=None, plugin="pillow").shape[:3] == (9, 48, 64)
    assert iio.immeta(path, plugin="pillow")["loop"] == 0
    with Image.open(path) as gif:
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]
    # GIF delays are whole centiseconds, so 125 ms frames alternate 120/130 and the total holds.
    assert set(durations) <= {120, 130}
    assert abs(sum(durations) - 9 * 125) <= 10
    assert leftovers(tmp_path) == []


def test_sidecar_is_pretty_utf8_json_next_to_the_video(tmp_path):
    video = write_video(moving_square(3), tmp_path / "clip.mp4", fps=8)
    path = write_sidecar(video, NASTY)
    assert path == tmp_path / "clip.json"
    text = path.read_text(encoding="utf-8")
    assert "日本語" in text and '\n  "prompt"' in text
    assert json.loads(text) == NASTY
    assert leftovers(tmp_path) == []


READERS = [read_video_metadata, read_video_frames, read_video_info]


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_missing_file_raises_file_not_found(tmp_path, reader):
    with pytest.raises(FileNotFoundError):
        reader(tmp_path / "nope.mp4")


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_corrupt_file_raises_value_error_naming_it(tmp_path, reader):
    path = tmp_path / "x.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="x.mp4"):
        reader(path)
