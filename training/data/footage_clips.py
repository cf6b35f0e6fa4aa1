"""Cut scanned footage into training clips (frames picked by timestamp at the target fps) and decode one clip.

A clip is only a plan (source frame numbers and a bucket) until `read_clip_frames` decodes it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import imageio_ffmpeg
import numpy as np
from PIL import Image, UnidentifiedImageError

from core.conditioning import fit_image
from training.data.footage_buckets import nearest_bucket
from training.data.footage_scan import FootageFile

MIN_VIDEO_FRAMES = 5  # the shortest 1 + 4k clip that still holds motion (two latent frames)
_TEMPORAL_FACTOR = 4  # the VAE codes the first frame alone, then 4 at a time


@dataclass(frozen=True)
class FootageClip:
    """One training clip: which source frames to decode and the (width, height) bucket to fit them to."""

    source: Path
    kind: Literal["video", "image"]
    caption: str
    start_s: float  # time of the clip's first frame in the source
    frame_indices: tuple[int, ...]  # source frame numbers in clip order, repeats allowed when upsampling fps
    source_fps: float | None  # None for images
    width: int
    height: int

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)

    @property
    def bucket_key(self) -> tuple[int, int, int]:
        """(width, height, frames): clips with equal keys stack into one batch."""
        return self.width, self.height, self.num_frames


def plan_clips(
    file: FootageFile,
    *,
    fps: float,
    num_frames: int,
    buckets: Sequence[tuple[int, int]],
    max_clips: int | None,
) -> list[FootageClip] | str:
    """The clips of one file, or why it gives none.

    Videos are resampled to `fps` and cut into back-to-back windows of `num_frames`; the tail that does
    not fill a window is dropped. A video shorter than one window gives one clip of the longest 1 + 4k
    frames it holds, if that is at least MIN_VIDEO_FRAMES. `max_clips` keeps that many windows spread
    evenly over the video. An image is one 1-frame clip.
    """
    width, height = nearest_bucket(file.width, file.height, buckets)
    if file.kind == "image":
        return [FootageClip(file.path, "image", file.caption, 0.0, (0,), None, width, height)]

    # Target frame j shows at j / fps; it takes the source frame on screen then (the last one started).
    available = max(1, math.ceil(file.duration_s * fps - 1e-9))
    if available >= num_frames:
        length, count = num_frames, available // num_frames
    elif available >= MIN_VIDEO_FRAMES:
        length, count = 1 + (available - 1) // _TEMPORAL_FACTOR * _TEMPORAL_FACTOR, 1
    else:
        return (f"too short: {available} frame(s) at {fps:g} fps ({file.duration_s:.2f} s); "
                f"a clip needs at least {MIN_VIDEO_FRAMES}")
    windows = range(count)
    if max_clips is not None and count > max_clips:
        windows = [k * count // max_clips for k in range(max_clips)]
    clips = []
    for window in windows:
        first = window * length
        indices = tuple(
            min(file.num_frames - 1, math.floor(j * file.fps / fps + 1e-9)) for j in range(first, first + length)
        )
        clips.append(FootageClip(file.path, "video", file.caption, first / fps, indices, file.fps, width, height))
    return clips


def read_clip_frames(clip: FootageClip) -> np.ndarray:
    """uint8 (F, H, W, 3) frames of `clip`, fitted to its bucket; ValueError naming the file if it cannot be read."""
    if clip.kind == "image":
        try:
            with Image.open(clip.source) as image:
                return np.asarray(fit_image(image, clip.width, clip.height))[None]  # (1, H, W, 3)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise ValueError(f"cannot read image {clip.source}: {err}") from err
    return _read_video_frames(clip)


def _read_video_frames(clip: FootageClip) -> np.ndarray:
    # core.video_io.read_video_frames decodes from the start and holds every frame, so a clip ten minutes
    # into a video would decode and keep ten minutes; this seeks, and keeps only the picked frames.
    first, last = clip.frame_indices[0], clip.frame_indices[-1]
    wanted = Counter(i - first for i in clip.frame_indices)  # a count above 1 repeats a frame (upsampled fps)
    # Seek half a frame early so that rounding in the container's timestamps cannot skip frame `first`;
    # ffmpeg decodes from the keyframe before and drops frames before this time.
    seek = ["-ss", f"{(first - 0.5) / clip.source_fps:.6f}"] if first else []
    # passthrough: one output frame per decoded frame, as read_video_info counted them; no duplicates or drops.
    reader = imageio_ffmpeg.read_frames(
        str(clip.source), input_params=seek, output_params=["-map", "0:v:0", "-fps_mode", "passthrough"]
    )
    frames: list[np.ndarray] = []
    try:
        source_width, source_height = next(reader)["size"]
        for offset, buffer in enumerate(reader):
            if offset in wanted:
                pixels = np.frombuffer(buffer, np.uint8).reshape(source_height, source_width, 3)
                fitted = np.asarray(fit_image(Image.fromarray(pixels), clip.width, clip.height))  # (H, W, 3)
                frames.extend([fitted] * wanted[offset])
            if offset >= last - first:
                break
    except (OSError, RuntimeError, StopIteration) as err:
        raise ValueError(f"cannot decode video {clip.source} (clip at {clip.start_s:.3f} s): {err}") from err
    finally:
        reader.close()  # stops ffmpeg when the clip ends before the video does
    if len(frames) != clip.num_frames:
        raise ValueError(
            f"video {clip.source} ended before source frame {last} (clip at {clip.start_s:.3f} s); "
            f"it is damaged or changed since it was scanned"
        )
    return np.stack(frames)  # (F, H, W, 3)
