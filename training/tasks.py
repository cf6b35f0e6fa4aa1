"""What the transformer is trained on: dataset items turned into latents, captions and given frames, per task.

One model serves every task, told apart only by which latent frames are given (core/conditioning.py):
T2V gives none, I2V frame 0, first+last frames 0 and T-1, extension the first k, and a multi-shot sample is
several shots (each its own clip for the VAE) concatenated in time with a caption per shot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.models.vae import SPATIAL_FACTOR, TEMPORAL_FACTOR, encode_video
from training.datasets import item_video

SINGLE_SHOT_TASKS = ("t2v", "i2v", "first_last", "extend")
# The engine fills the frames between a first and a last image with mid-grey uint8 127 before encoding.
_MID_GREY = 127 / 127.5 - 1

logger = logging.getLogger(__name__)


@dataclass
class DiTBatch:
    latents: torch.Tensor  # (B, C, T, h, w) clean normalized latents
    condition_latents: torch.Tensor  # (B, C, T, h, w) clean latents of the given frames, zeros elsewhere
    condition_mask: torch.Tensor  # (B, 1, T, h, w) 1 on given latent frames
    text: torch.Tensor  # (B, L, D) caption embeddings, shot after shot
    text_mask: torch.Tensor  # (B, L) bool
    tasks: list[str]  # per sample
    shot_latent_frames: list[int] | None = None  # multi-shot layout; None: one shot
    text_lengths: list[int] | None = None
    foreground: torch.Tensor | None = None  # (B, 1, T, h, w) the items' "foreground" on the latent grid, 0 if none

    def to(self, device) -> "DiTBatch":
        move = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return DiTBatch(**{**vars(self), **move})


def draw_task(ratios: dict[str, float], generator: torch.Generator) -> str:
    """A task name drawn with probability proportional to its ratio."""
    names = [name for name, ratio in ratios.items() if ratio > 0]
    weights = torch.tensor([ratios[name] for name in names], dtype=torch.float64)
    return names[int(torch.multinomial(weights, 1, generator=generator))]


def given_latent_frames(task: str, latent_frames: int, generator: torch.Generator) -> list[int]:
    """Indices of the latent frames a task gives the model."""
    if task == "i2v":
        return [0]
    if task == "first_last":
        return [0, latent_frames - 1]
    if task == "extend":
        count = int(torch.randint(1, latent_frames, (1,), generator=generator))  # 1 .. T-1 context frames
        return list(range(count))
    return []


def first_last_window(video: torch.Tensor) -> torch.Tensor:
    """The clip the engine encodes for a first+last request: the two end frames, mid-grey between. (3, F, H, W)"""
    window = torch.full_like(video, _MID_GREY)
    window[:, 0], window[:, -1] = video[:, 0], video[:, -1]
    return window


class CaptionEmbeddings:
    """Caption -> (L, D) text embeddings, computed once per caption and kept in memory.

    Each caption is encoded alone: padding in a shared call changes the numbers slightly, and a cache whose
    contents depended on which captions arrived together would break bit-exact resume.
    """

    def __init__(self, encoder):
        self.encoder = encoder
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        if caption not in self._cache:
            encoded = self.encoder.encode([caption])
            self._cache[caption] = (encoded.embeddings[0].cpu(), encoded.mask[0].cpu())  # (L, D), (L,)
        return self._cache[caption]

    def stack(self, captions: list[str], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, D) and (B, L) for `captions`, padded to `length` (default: the longest)."""
        pairs = [self.get(c) for c in captions]
        length = length or max(e.shape[0] for e, _ in pairs)
        text = torch.stack([F.pad(e, (0, 0, 0, length - e.shape[0])) for e, _ in pairs])
        mask = torch.stack([F.pad(m, (0, length - m.shape[0]), value=False) for _, m in pairs])
        return text, mask


class BatchBuilder:
    """Encodes items with the frozen VAE and text encoder and applies each sample's task.

    `items` may be any sequence, e.g. training.datasets.LazyItems, which renders an item only when it is read: with
    `cache_latents`, an item whose latents and outline (captions, shot lengths) are cached is never read again, so
    epochs after the first over a finite dataset cost no rendering.
    """

    def __init__(self, *, vae, text_encoder, caption_dropout: float, cache_latents: bool):
        self.vae = vae
        self.captions = CaptionEmbeddings(text_encoder)
        self.caption_dropout = caption_dropout
        self.cache_latents = cache_latents
        self._latents: dict[tuple, torch.Tensor] = {}
        self._outlines: dict[tuple, dict] = {}
        self._foregrounds: dict[tuple, torch.Tensor] = {}  # (1, T, h, w) per key whose item gave "foreground"

    def clear_cache(self) -> None:
        """Forget cached latents and outlines (call when the data changes, e.g. at a new stage)."""
        self._latents.clear()
        self._outlines.clear()
        self._foregrounds.clear()

    def single(self, items: Sequence[dict], keys: list, tasks: list[str], size: tuple[int, int, int],
               generator: torch.Generator) -> DiTBatch:
        """A batch of one-shot samples; `keys` identify items for the latent cache, size is (frames, h, w)."""
        outlines = [self._outline(items, keys, i) for i in range(len(keys))]
        latents = torch.stack(self._encode(items.__getitem__, keys, size))  # (B, C, T, h, w)
        foreground = torch.stack(self._foregrounds_of(keys, latents))  # (B, 1, T, h, w)
        masks = torch.zeros_like(latents[:, :1])  # (B, 1, T, h, w)
        for sample, task in enumerate(tasks):
            masks[sample, :, given_latent_frames(task, latents.shape[2], generator)] = 1
        condition = latents.clone()
        # First+last: the engine encodes [first, mid-grey..., last], so the last latent frame is not the clip's.
        windowed = [i for i, task in enumerate(tasks) if task == "first_last" and outlines[i]["has_video"]]
        if windowed:
            def window(j: int) -> dict:
                i = windowed[j]
                return {"video": first_last_window(item_video(items[i], f"dataset item {keys[i]}", *size))}

            condition[windowed] = torch.stack(self._encode(window, [(*keys[i], "first_last") for i in windowed], size))
        text, text_mask = self.captions.stack([self._dropped(outline["caption"], generator) for outline in outlines])
        return DiTBatch(latents, condition * masks, masks, text, text_mask, tasks, foreground=foreground)

    def multishot(self, items: Sequence[dict], keys: list, size: tuple[int, int, int],
                  generator: torch.Generator) -> DiTBatch:
        """A batch of multi-shot samples, T2V: each shot encoded as its own clip, latents joined in time.

        The model takes one shot layout per call, so items whose shot lengths differ from the first are left out.
        """
        _, height, width = size
        outlines = [self._outline(items, keys, i) for i in range(len(keys))]
        layout = outlines[0]["shot_frames"]
        kept = [i for i, outline in enumerate(outlines) if outline["shot_frames"] == layout]
        if len(kept) < len(keys):
            logger.warning("left out %d multi-shot items whose shot lengths differ from %s", len(keys) - len(kept),
                           layout)
        shot_keys = [[(*keys[i], shot) for i in kept] for shot in range(len(layout))]
        shots = [torch.stack(self._encode(lambda j, shot=shot: items[kept[j]]["shots"][shot],
                                          shot_keys[shot], (frames, height, width)))
                 for shot, frames in enumerate(layout)]  # per shot (B, C, T_i, h, w)
        latents = torch.cat(shots, dim=2)  # (B, C, sum T_i, h, w)
        foreground = torch.cat([torch.stack(self._foregrounds_of(keys_of_shot, latents_of_shot))
                                for keys_of_shot, latents_of_shot in zip(shot_keys, shots)], dim=2)
        captions = []
        for i in kept:
            drop = self._drop(generator)  # all shots together, like the engine's per-shot negative prompt
            captions.append(["" if drop else caption for caption in outlines[i]["shot_captions"]])
        # Like the engine: every shot's caption padded to the encoder's max_length, so shots never shift each other.
        length = self.captions.encoder.max_length
        per_shot = [self.captions.stack(list(shot_captions), length) for shot_captions in zip(*captions)]
        text = torch.cat([t for t, _ in per_shot], dim=1)  # (B, shots * L, D)
        text_mask = torch.cat([m for _, m in per_shot], dim=1)
        shot_latent_frames = [1 + (frames - 1) // 4 for frames in layout]
        return DiTBatch(latents, torch.zeros_like(latents), torch.zeros_like(latents[:, :1]), text, text_mask,
                        ["multishot"] * len(kept), shot_latent_frames, [length] * len(layout), foreground)

    def prefill(self, item: dict, key, size: tuple[int, int, int], first_last: bool) -> None:
        """Cache an item's outline, latents and caption embeddings ahead of use: the values its first batch would.

        `first_last`: also its first+last window's latents, for stages that draw that task. The item goes through
        the batch path itself (a throwaway batch of one), so the cache is filled by the one code that reads it.
        """
        if not self.cache_latents:
            raise ValueError("`prefill` needs a BatchBuilder made with cache_latents=True")
        if "shots" in item:
            self.multishot([item], [key], size, torch.Generator())
        else:
            self.single([item], [key], ["first_last" if first_last else "t2v"], size, torch.Generator())

    def _outline(self, items: Sequence[dict], keys: list, i: int) -> dict:
        """What a batch needs of item i besides its pixels: captions, shot lengths; kept with the latent cache."""
        if self.cache_latents and keys[i] in self._outlines:
            return self._outlines[keys[i]]
        item = items[i]
        if "shots" in item:
            outline = {"shot_frames": _shot_frames(item), "shot_captions": [shot["caption"] for shot in item["shots"]]}
        else:
            outline = {"caption": item["caption"], "has_video": "video" in item}
        if self.cache_latents:
            self._outlines[keys[i]] = outline
        return outline

    def _encode(self, fetch: Callable[[int], dict], keys: list, size: tuple[int, int, int]) -> list[torch.Tensor]:
        """Normalized latents (C, T, h, w) per key: cached, given by the item `fetch(i)`, or encoded now.

        An item is fetched only when its latents are not cached. Uncached clips are encoded in one batch. Cached
        clips are encoded one per call, so a cached value does not depend on which clips shared its batch (after a
        resume the cache refills in a different order).
        """
        out: list[torch.Tensor | None] = [None] * len(keys)
        videos = {}
        for i, key in enumerate(keys):
            if self.cache_latents and key in self._latents:
                out[i] = self._latents[key]
                continue
            item = fetch(i)
            if "latents" in item:
                out[i] = item["latents"].float()
            else:
                videos[i] = item_video(item, f"dataset item {key}", *size)
            if item.get("foreground") is not None:
                self._foregrounds[key] = latent_grid_coverage(item["foreground"], f"dataset item {key}", size)
        groups = [[i] for i in videos] if self.cache_latents else [list(videos)]
        for group in filter(None, groups):
            encoded = encode_video(self.vae, torch.stack([videos[i] for i in group]))  # (b, C, T, h, w)
            for i, latents in zip(group, encoded.cpu()):
                out[i] = latents
                if self.cache_latents:
                    self._latents[keys[i]] = latents
        return out

    def _foregrounds_of(self, keys: list, latents: torch.Tensor) -> list[torch.Tensor]:
        """Per key, its item's foreground on the latent grid (1, T, h, w), zeros where the item gave none.

        Without the latent cache a map is used once and forgotten, like the item it came from.
        """
        maps = [self._foregrounds.get(key) for key in keys]
        if not self.cache_latents:
            for key in keys:
                self._foregrounds.pop(key, None)
        return [torch.zeros_like(z[:1]) if m is None else m for m, z in zip(maps, latents)]

    def _drop(self, generator: torch.Generator) -> bool:
        return bool(torch.rand(1, generator=generator) < self.caption_dropout)

    def _dropped(self, caption: str, generator: torch.Generator) -> str:
        return "" if self._drop(generator) else caption


def latent_grid_coverage(foreground, where: str, size: tuple[int, int, int]) -> torch.Tensor:
    """Pixel coverage (F, H, W) in [0, 1] -> (1, T, h, w) on the VAE's latent grid, as the VAE groups pixels.

    Latent frame 0 codes pixel frame 0 alone and each later one the next TEMPORAL_FACTOR frames; each latent cell
    codes a SPATIAL_FACTOR-pixel square. A cell's value is the most any of its pixels is covered, so the edges of a
    shape count fully.
    """
    frames, height, width = size
    coverage = torch.as_tensor(foreground).float()
    if tuple(coverage.shape) != (frames, height, width):
        raise ValueError(f"{where}: `foreground` must be ({frames}, {height}, {width}) for this stage, "
                         f"got {tuple(coverage.shape)}")
    first = F.max_pool2d(coverage[:1], SPATIAL_FACTOR)  # (1, h, w)
    rest = F.max_pool3d(coverage[None, 1:], (TEMPORAL_FACTOR, SPATIAL_FACTOR, SPATIAL_FACTOR))[0]  # (k, h, w)
    return torch.cat([first, rest])[None]  # (1, 1 + k, h, w)


def _shot_frames(item: dict) -> list[int]:
    """Pixel frames per shot of a multi-shot item (videos are (3, F, H, W) tensors or (F, H, W, 3) arrays)."""
    return [shot["video"].shape[1] if torch.is_tensor(shot["video"]) else len(shot["video"]) for shot in item["shots"]]
