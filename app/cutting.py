"""Editing finished videos: cut a storyboard's takes together (trims, cuts and crossfades) into one mp4, and split
a multi-shot video back into its shots.

Lengths are in frames throughout. A crossfade of N frames overlaps the two shots by N frames, so every crossfade
makes the whole N frames shorter than the trimmed shots laid end to end; over those N frames the incoming shot's
weight rises 0, 1/N, ..., (N-1)/N (moviepy's CrossFadeIn), and its frame N is the first shown alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.video_io import METADATA_KEY, read_video_frames, read_video_info

TRANSITIONS = ("cut", "crossfade")
DEFAULT_CROSSFADE_FRAMES = 4
# The same encoding as core.video_io.write_video: H.264 yuv420p, tagged BT.709 so browsers agree on colours,
# the index first so a browser plays while downloading, and room for Kelp's own metadata tag.
_COLOUR_FILTER = ("scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
                  "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709")
_ENCODER_PARAMS = ["-crf", "17", "-vf", _COLOUR_FILTER, "-pix_fmt", "yuv420p",
                   "-movflags", "+faststart+use_metadata_tags"]


@dataclass(frozen=True)
class CutPiece:
    """One shot of a cut: its video, the frames dropped at each end, and how it follows the shot before."""

    video: Path
    trim_start: int = 0
    trim_end: int = 0
    transition: str = "cut"  # into this shot; the first shot has nothing to fade from and always starts cleanly


@dataclass(frozen=True)
class CutTimeline:
    """Where each trimmed shot starts in the cut and how long it runs, in frames."""

    starts: tuple[int, ...]
    lengths: tuple[int, ...]
    total_frames: int


def plan_cut(frame_counts: Sequence[int], pieces: Sequence[CutPiece], crossfade_frames: int) -> CutTimeline:
    """The cut's timeline from each video's frame count; ValueError naming the shot (1-based) that does not fit."""
    if type(crossfade_frames) is not int or crossfade_frames < 1:
        raise ValueError(f"`crossfade_frames` must be a whole number of frames from 1 but is {crossfade_frames!r}")
    if not pieces:
        raise ValueError("`pieces` must hold at least one shot but is empty")
    starts, lengths, end = [], [], 0
    for number, (count, piece) in enumerate(zip(frame_counts, pieces, strict=True), start=1):
        if piece.transition not in TRANSITIONS:
            raise ValueError(f"Shot {number}: `transition` must be one of {TRANSITIONS} but is {piece.transition!r}")
        length = count - piece.trim_start - piece.trim_end
        if min(piece.trim_start, piece.trim_end) < 0 or length < 1:
            raise ValueError(f"Shot {number}: `trim_start` + `trim_end` must leave at least one of its {count} "
                             f"frames but are {piece.trim_start} + {piece.trim_end}")
        start = end
        if piece.transition == "crossfade" and starts:
            if min(length, lengths[-1]) < crossfade_frames:
                raise ValueError(f"Shot {number}: a crossfade of {crossfade_frames} frames needs that many frames in "
                                 f"it and in shot {number - 1} after trims, but they have {length} and {lengths[-1]}")
            start = end - crossfade_frames
        starts.append(start)
        lengths.append(length)
        end = start + length
    return CutTimeline(tuple(starts), tuple(lengths), end)


def cut_videos(
    pieces: Sequence[CutPiece],
    out_path: str | Path,
    *,
    crossfade_frames: int = DEFAULT_CROSSFADE_FRAMES,
    metadata: dict | None = None,
) -> Path:
    """Join `pieces` into one H.264 yuv420p mp4 at `out_path`, written atomically; returns the path.

    Every video must share the first one's size and frame rate. The result's frame count is checked against
    plan_cut, so a rounding slip in the editing library cannot pass unnoticed.
    """
    from moviepy import CompositeVideoClip, VideoFileClip, vfx

    infos = [read_video_info(piece.video) for piece in pieces]
    for number, info in enumerate(infos[1:], start=2):
        if (info.width, info.height) != (infos[0].width, infos[0].height) or abs(info.fps - infos[0].fps) > 1e-6:
            raise ValueError(f"Shot {number}'s take is {info.width}x{info.height} at {info.fps:g} fps but shot 1's "
                             f"is {infos[0].width}x{infos[0].height} at {infos[0].fps:g} fps; re-render it to match")
    timeline = plan_cut([info.num_frames for info in infos], pieces, crossfade_frames)
    fps = infos[0].fps
    sources = [VideoFileClip(str(piece.video), audio=False) for piece in pieces]
    try:
        layers = []
        for index, (source, piece) in enumerate(zip(sources, pieces)):
            first = piece.trim_start
            clip = source.subclipped(first / fps, (first + timeline.lengths[index]) / fps)
            if piece.transition == "crossfade" and index:
                clip = clip.with_effects([vfx.CrossFadeIn(crossfade_frames / fps)])
            layers.append(clip.with_start(timeline.starts[index] / fps))
        # moviepy writes int(duration * fps) frames; half a frame more keeps float error from losing the last one.
        composite = CompositeVideoClip(layers).with_duration((timeline.total_frames + 0.5) / fps)
        params = list(_ENCODER_PARAMS)
        if metadata is not None:
            params += ["-metadata", f"{METADATA_KEY}={json.dumps(metadata, separators=(',', ':'))}"]
        with _atomic_mp4(out_path) as temporary:
            composite.write_videofile(str(temporary), fps=fps, codec="libx264", audio=False, logger=None,
                                      ffmpeg_params=params)
            written = read_video_info(temporary).num_frames
            if written != timeline.total_frames:
                raise RuntimeError(f"the cut has {written} frames but should have {timeline.total_frames}")
    finally:
        for source in sources:
            source.close()
    return Path(out_path)


def split_video_frames(video: str | Path, frame_counts: Sequence[int]) -> list[np.ndarray]:
    """A multi-shot video's frames as one uint8 (T, H, W, 3) array per shot, from each shot's frame count."""
    frames, _ = read_video_frames(video)
    if sum(frame_counts) != len(frames):
        raise ValueError(f"`frame_counts` must add up to the video's {len(frames)} frames but are {list(frame_counts)}")
    edges = np.cumsum(frame_counts)[:-1]
    return np.split(frames, edges)


@contextlib.contextmanager
def _atomic_mp4(path: str | Path) -> Iterator[Path]:
    """A hidden temporary .mp4 beside `path`, renamed onto it only once complete (as core.video_io's writers do)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp.mp4")
    try:
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
