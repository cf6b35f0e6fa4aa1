"""Training data by name: a registry of dataset factories, the built-in `synthetic` dataset, and sharded streams.

A factory is called as `factory(width=, height=, num_frames=, seed=, **recipe_options)` and returns a map-style
dataset (`len()` and `[index]`) whose items are
    {"video": float (3, F, H, W) in [-1, 1] or uint8 (F, H, W, 3), "caption": str}, or
    {"latents": normalized VAE latents (C, T, h, w), "caption": str} (already encoded), or
    {"shots": [{"video", "caption"}, ...]} for multi-shot training (shots are separate clips: a cut between each).
A clip may also give "foreground": float (F, H, W) in [0, 1], how much of each pixel is the subject; a recipe's
`flow.foreground_weight` makes the loss count those places more (training.flow_matching.foreground_weights).
A factory that also takes `multi_shot: bool` is asked for a second, multi-shot dataset when a stage draws the
multishot task; it returns None if it has none at that size. Registering a dataset is one line:
    DATASETS["toy_world"] = "training.data.toy_world:build_dataset"   # "module:attribute", imported on use
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import torch

from core.conditioning import frames_to_video_tensor

DATASETS: dict[str, Callable[..., Any] | str] = {
    "synthetic": "training.datasets:synthetic_squares",
    "toy_world": "training.data.toy_world:build_dataset",
    "footage": "training.data.footage_stage:footage_dataset",  # options: folder, fps, max_clips_per_video
}


def register_dataset(name: str, factory: Callable[..., Any] | str) -> None:
    DATASETS[name] = factory


def dataset_factory(name: str) -> Callable[..., Any]:
    if name not in DATASETS:
        raise ValueError(f"`data.source` must be one of {sorted(DATASETS)}, got {name!r}")
    factory = DATASETS[name]
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        factory = getattr(importlib.import_module(module), attribute)
    return factory


def build_dataset(name: str, *, width: int, height: int, num_frames: int, seed: int, multi_shot: bool = False,
                  options: dict | None = None):
    """The dataset `name` at this size; with `multi_shot`, its multi-shot dataset or None if it has none."""
    factory = dataset_factory(name)
    kwargs = dict(options or {}, width=width, height=height, num_frames=num_frames, seed=seed)
    if multi_shot:
        if "multi_shot" not in inspect.signature(factory).parameters:
            return None
        kwargs["multi_shot"] = True
    dataset = factory(**kwargs)
    if dataset is not None and len(dataset) < 1:
        raise ValueError(f"`data.source` {name!r} gave an empty dataset at {width}x{height}, {num_frames} frames")
    return dataset


def item_video(item: dict, where: str, frames: int, height: int, width: int) -> torch.Tensor:
    """An item's clip as float (3, F, H, W) in [-1, 1], checked against the stage's size."""
    video = item.get("video")
    if isinstance(video, np.ndarray):
        video = frames_to_video_tensor(video)[0]  # uint8 (F, H, W, 3) -> (3, F, H, W)
    if not isinstance(video, torch.Tensor) or tuple(video.shape) != (3, frames, height, width):
        shape = tuple(getattr(video, "shape", ())) or type(video).__name__
        raise ValueError(f"{where}: `video` must be (3, {frames}, {height}, {width}) for this stage, got {shape}")
    return video.float()


class LazyItems(Sequence):
    """dataset[indices[j]] for each j, fetched on first read and kept: the items of one micro-batch.

    The trainer hands these to training.tasks.BatchBuilder, which reads an item only when its cache lacks it, so a
    batch of cached clips renders nothing.
    """

    def __init__(self, dataset, indices: list[int]):
        self.dataset, self.indices = dataset, list(indices)
        self._fetched: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Any:
        if position not in self._fetched:
            self._fetched[position] = self.dataset[self.indices[position]]
        return self._fetched[position]


class ShardedStream:
    """An endless, resumable stream of dataset indices for one process.

    Global position g covers permutation g // n (seeded by `seed` and that epoch), entry g % n; process `rank` of
    `world_size` takes every world_size-th position, so processes see disjoint indices within an epoch. The only
    state is `position` (micro-batch slots consumed by this process), which checkpoints store.
    """

    def __init__(self, length: int, *, seed: int, rank: int = 0, world_size: int = 1, position: int = 0):
        self.length, self.seed, self.rank, self.world_size = length, seed, rank, world_size
        self.position = position
        self._epoch, self._order = -1, None

    def take(self, count: int) -> list[int]:
        indices = []
        for _ in range(count):
            global_position = self.position * self.world_size + self.rank
            epoch, offset = divmod(global_position, self.length)
            if epoch != self._epoch:
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._epoch, self._order = epoch, torch.randperm(self.length, generator=generator).tolist()
            indices.append(self._order[offset])
            self.position += 1
        return indices


# ---------------------------------------------------------------------------------------------------
# synthetic: coloured squares moving over a plain background, for tests and smoke runs
# ---------------------------------------------------------------------------------------------------

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230), "yellow": (235, 210, 40),
           "white": (240, 240, 240), "purple": (150, 60, 200)}  # fmt: skip
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
BACKGROUNDS = {"black": (10, 10, 10), "grey": (110, 110, 110)}


class SyntheticSquares:
    """`length` clips of a square moving in a straight line, captioned "a red square moving left on grey".

    Item i is a pure function of (seed, i): colour, direction, size, start point and speed come from a numpy
    generator seeded with both. With `multi_shot`, items are two shots of the same square (the subject kept
    across the cut) moving in different directions, splitting `num_frames`' latent frames between them.
    """

    def __init__(self, *, width: int, height: int, num_frames: int, seed: int = 0, length: int = 256,
                 multi_shot: bool = False):
        self.width, self.height, self.num_frames, self.seed = width, height, num_frames, seed
        self.length, self.multi_shot = length, multi_shot

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"`index` must be in [0, {self.length}), got {index}")
        rng = np.random.default_rng([self.seed, index])
        colour, background = rng.choice(list(COLOURS)), rng.choice(list(BACKGROUNDS))
        size = int(rng.integers(max(4, self.height // 6), max(5, self.height // 3)))
        directions = list(rng.permutation(list(DIRECTIONS)))
        if not self.multi_shot:
            frames = self._render(rng, colour, background, directions[0], size, self.num_frames)
            return {"video": frames, "caption": f"a {colour} square moving {directions[0]} on {background}"}
        latent = 1 + (self.num_frames - 1) // 4
        shot_latents = (latent + 1) // 2, latent // 2
        return {"shots": [
            {"video": self._render(rng, colour, background, direction, size, 1 + 4 * (count - 1)),
             "caption": f"a {colour} square on {background}. it moves {direction}"}
            for direction, count in zip(directions, shot_latents)
        ]}  # fmt: skip

    def _render(self, rng, colour: str, background: str, direction: str, size: int, frames: int) -> torch.Tensor:
        dx, dy = DIRECTIONS[direction]
        speed = float(rng.uniform(0.5, 1.5)) * min(self.width, self.height) / 32
        x0 = float(rng.uniform(0, self.width - size))
        y0 = float(rng.uniform(0, self.height - size))
        video = np.empty((frames, self.height, self.width, 3), dtype=np.uint8)
        video[:] = BACKGROUNDS[background]
        for t in range(frames):
            # Bounce off the edges so the square stays in view however long the clip.
            x = int(round(_bounce(x0 + dx * speed * t, self.width - size)))
            y = int(round(_bounce(y0 + dy * speed * t, self.height - size)))
            video[t, y:y + size, x:x + size] = COLOURS[colour]
        return frames_to_video_tensor(video)[0]  # (3, F, H, W) in [-1, 1]


def synthetic_squares(*, width: int, height: int, num_frames: int, seed: int = 0, length: int = 256,
                      multi_shot: bool = False) -> SyntheticSquares | None:
    """The `synthetic` factory: None for multi-shot at 1 frame, which cannot be split into shots."""
    if multi_shot and num_frames < 5:
        return None
    return SyntheticSquares(width=width, height=height, num_frames=num_frames, seed=seed, length=length,
                            multi_shot=multi_shot)


def _bounce(position: float, limit: int) -> float:
    period = 2 * max(limit, 1)
    position = position % period
    return position if position <= limit else period - position
