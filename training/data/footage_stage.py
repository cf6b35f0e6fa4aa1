"""The `footage` training data source (fine-tuning on your own clips and images), cut to one stage's size.

training.data.footage buckets clips by aspect ratio and keeps short videos as shorter clips; a training stage needs
every item at exactly its (frames, height, width), so this keeps only the clips of that size, fitted to one bucket.
"""

from __future__ import annotations

from pathlib import Path

from training.data.footage import FootageDataset


class StageFootage:
    """Items {"video", "caption"} of the clips of `num_frames` frames at width x height found under `folder`."""

    def __init__(self, folder: str | Path, *, width: int, height: int, num_frames: int, fps: float,
                 max_clips_per_video: int):
        self.footage = FootageDataset(folder, fps=fps, num_frames=num_frames, buckets=[(width, height)],
                                      max_clips_per_video=max_clips_per_video)
        self.indices = [i for i, clip in enumerate(self.footage.clips) if clip.num_frames == num_frames]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        item = self.footage[self.indices[index]]
        return {"video": item["video"], "caption": item["caption"]}  # (3, F, H, W) in [-1, 1]


def footage_dataset(*, width: int, height: int, num_frames: int, seed: int, folder: str, fps: float = 8.0,
                    max_clips_per_video: int = 8) -> StageFootage:
    """Dataset factory (training.datasets): `folder` and `fps` come from the recipe's [data] options."""
    del seed  # the clips are fixed; the trainer's stream shuffles them
    return StageFootage(folder, width=width, height=height, num_frames=num_frames, fps=fps,
                        max_clips_per_video=max_clips_per_video)
