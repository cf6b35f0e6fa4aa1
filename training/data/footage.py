"""Fine-tuning data from a user's own footage: a map-style Dataset of bucketed 1 + 4k-frame clips.

Import everything from here; the pieces live in footage_scan / footage_clips / footage_buckets / footage_cache.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from core.conditioning import frames_to_video_tensor
from training.data.footage_buckets import (
    DEFAULT_BUCKETS,
    BucketBatchSampler,
    check_buckets,
    make_buckets,
    nearest_bucket,
)
from training.data.footage_cache import CachedFootage, cache_footage
from training.data.footage_clips import MIN_VIDEO_FRAMES, FootageClip, plan_clips, read_clip_frames
from training.data.footage_scan import FootageFile, FootageScan, scan_footage

__all__ = [
    "DEFAULT_BUCKETS", "MIN_VIDEO_FRAMES", "BucketBatchSampler", "CachedFootage", "FootageClip", "FootageDataset",
    "FootageFile", "FootageScan", "cache_footage", "make_buckets", "nearest_bucket", "scan_footage",
]  # fmt: skip


class FootageDataset(Dataset):
    """Clips of every video and image under `folder`, each item
    {"video": float (3, F, H, W) in [-1, 1], "caption": str, "source": str, "start_s": float}.

    The constructor scans and probes the files but decodes nothing: an item's frames are read when it is
    requested, so long videos never sit in memory. A file that is damaged or changed after the scan raises
    a ValueError naming it when its item is read (cache_footage reports and skips those). Files that give
    no clip, with the reason, are in `skipped`.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        fps: float = 8.0,
        num_frames: int = 17,
        buckets: Sequence[tuple[int, int]] = DEFAULT_BUCKETS,
        max_clips_per_video: int | None = None,
        default_caption: str | None = None,
    ):
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not 0 < fps < float("inf"):
            raise ValueError(f"`fps` must be a positive number, got {fps!r}")
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1 or (num_frames - 1) % 4:
            raise ValueError(f"`num_frames` must be 1 + 4k (1, 5, 9, 17, ...), got {num_frames!r}")
        if max_clips_per_video is not None and (
            isinstance(max_clips_per_video, bool) or not isinstance(max_clips_per_video, int) or max_clips_per_video < 1
        ):
            raise ValueError(f"`max_clips_per_video` must be None or a positive int, got {max_clips_per_video!r}")
        self.fps = float(fps)
        self.num_frames = num_frames
        self.buckets = check_buckets(buckets)
        self.scan = scan_footage(folder, default_caption=default_caption)
        self.folder = self.scan.folder
        self.clips: list[FootageClip] = []
        self.skipped: list[tuple[Path, str]] = list(self.scan.skipped)
        for file in self.scan.files:
            planned = plan_clips(
                file, fps=self.fps, num_frames=num_frames, buckets=self.buckets, max_clips=max_clips_per_video
            )
            if isinstance(planned, str):
                self.skipped.append((file.path, planned))
            else:
                self.clips.extend(planned)

    @property
    def bucket_keys(self) -> list[tuple[int, int, int]]:
        """(width, height, frames) per item, for BucketBatchSampler."""
        return [clip.bucket_key for clip in self.clips]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        video = frames_to_video_tensor(read_clip_frames(clip))[0]  # (3, F, H, W) in [-1, 1]
        return {"video": video.to(torch.float32), "caption": clip.caption, "source": str(clip.source),
                "start_s": clip.start_s}
