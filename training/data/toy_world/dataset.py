"""Torch datasets over the toy world: item i is always the same clip, rendered on demand.

Videos come as float tensors (3, F, H, W) in [-1, 1], the layout Kelp's VAE encodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from training.data.toy_world.clips import toy_clip, toy_shots
from training.data.toy_world.render import object_coverage
from training.data.toy_world.sampling import sample_truth
from training.data.toy_world.shots import sample_shots


def clip_seed(seed: int, index: int) -> int:
    """The toy-world seed of item `index` of a dataset seeded `seed` (independent streams per item)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames -> float32 (3, T, H, W) in [-1, 1]."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)  # (3, T, H, W)
    return video.float().div_(127.5).sub_(1.0)


class ToyWorldDataset(Dataset):
    """`length` toy clips; item i is toy_clip(clip_seed(seed, i), ...) as {"video", "caption", "truth",
    "foreground"}, the last its objects' pixel coverage (F, H, W) in [0, 1] (training.datasets)."""

    def __init__(
        self,
        seed: int,
        length: int,
        *,
        width: int = 128,
        height: int = 128,
        num_frames: int = 17,
        fps: float = 8.0,
        kind: str | None = None,
        held_out: bool = False,
    ) -> None:
        if length < 1:
            raise ValueError(f"`length` must be at least 1 but is {length!r}")
        self.seed, self.length = seed, length
        self.clip_args: dict[str, Any] = dict(width=width, height=height, num_frames=num_frames, fps=fps, kind=kind, held_out=held_out)
        sample_truth(clip_seed(seed, 0), **self.clip_args)  # bad arguments fail here, not in a worker

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} clips")
        clip = toy_clip(clip_seed(self.seed, index % self.length), **self.clip_args)
        return {"video": frames_to_tensor(clip.frames), "caption": clip.caption, "truth": clip.truth,
                "foreground": torch.from_numpy(object_coverage(clip.truth))}


class ToyShotsDataset(Dataset):
    """`length` multi-shot samples as {"shots": [{"video": (3, F_i, H, W), "caption", "truth", "foreground"}, ...],
    "subject"}: the layout training.datasets documents for multi-shot items."""

    def __init__(self, seed: int, length: int, **shot_args: Any) -> None:
        if length < 1:
            raise ValueError(f"`length` must be at least 1 but is {length!r}")
        self.seed, self.length, self.shot_args = seed, length, shot_args
        sample_shots(clip_seed(seed, 0), **shot_args)  # bad arguments fail here, not in a worker

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        sample = toy_shots(clip_seed(self.seed, index % self.length), **self.shot_args)
        shots = [{"video": frames_to_tensor(s.frames), "caption": s.caption, "truth": s.truth,
                  "foreground": torch.from_numpy(object_coverage(s.truth))} for s in sample.shots]
        return {"shots": shots, "subject": sample.subject}


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch ToyWorldDataset items: videos stacked (B, 3, F, H, W), captions and truths as lists."""
    return {
        "video": torch.stack([item["video"] for item in items]),
        "caption": [item["caption"] for item in items],
        "truth": [item["truth"] for item in items],
    }


def build_dataset(
    *,
    width: int,
    height: int,
    num_frames: int,
    seed: int = 0,
    multi_shot: bool = False,
    length: int = 100_000,
    kind: str | None = None,
    held_out: bool = False,
) -> Dataset | None:
    """The trainer's factory (training.datasets): toy clips of this size, or with `multi_shot` two
    shots splitting `num_frames`' latent frames between them (None below 5 frames, too short to split)."""
    if not multi_shot:
        return ToyWorldDataset(seed, length, width=width, height=height, num_frames=num_frames, kind=kind, held_out=held_out)
    if num_frames < 5:
        return None
    latent = 1 + (num_frames - 1) // 4  # the VAE codes 1 + 4k frames as 1 + k latent frames
    shot_frames = tuple(1 + 4 * (count - 1) for count in ((latent + 1) // 2, latent // 2))
    shot_kind = kind if kind in ("shape", "digit", "photo") else None
    return ToyShotsDataset(seed, length, width=width, height=height, shot_frames=shot_frames, kind=shot_kind)
