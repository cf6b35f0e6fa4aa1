"""Encode footage clips to VAE latents and captions to text embeddings once, as safetensors files on disk.

A file's name is a hash of everything its contents depend on, so a re-run reuses what is still valid and
re-encodes what changed (the source file, the clip window, bucket, fps, VAE weights or text encoder).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from core.models.vae import encode_video
from training.data.footage_clips import FootageClip

CACHE_VERSION = 1  # bump when what is stored, or how it is computed, changes
_TEXT_BATCH = 32  # captions per text-encoder call


@dataclass(frozen=True)
class CachedClip:
    """Where one clip's latents and caption embeddings are stored."""

    latents_path: Path
    text_path: Path
    caption: str
    source: str
    start_s: float
    bucket_key: tuple[int, int, int]  # (width, height, frames) of the pixels the latents came from


@dataclass(frozen=True)
class CacheStats:
    """What one cache_footage call did."""

    encoded_clips: int = 0
    reused_clips: int = 0
    encoded_captions: int = 0
    reused_captions: int = 0


class CachedFootage(Dataset):
    """Items {"latents": (C, T, h, w), "text": (L, D), "text_mask": (L,) bool, "caption": str, "source": str,
    "start_s": float}; L is the text encoder's max_length, padded with zeros and False, so items stack."""

    def __init__(
        self,
        clips: Sequence[CachedClip],
        skipped: Sequence[tuple[Path, str]] = (),
        stats: CacheStats = CacheStats(),
    ):
        self.clips = list(clips)
        self.skipped = list(skipped)  # clips whose file could not be decoded, with the reason
        self.stats = stats

    @property
    def bucket_keys(self) -> list[tuple[int, int, int]]:
        """(width, height, frames) per item, for BucketBatchSampler."""
        return [clip.bucket_key for clip in self.clips]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        text = load_file(clip.text_path)
        return {"latents": load_file(clip.latents_path)["latents"], "text": text["text"],
                "text_mask": text["text_mask"], "caption": clip.caption, "source": clip.source,
                "start_s": clip.start_s}


def cache_footage(
    dataset, vae, text_encoder, cache_dir: str | Path, *, vae_id: str | None = None, content_hash: bool = False
) -> CachedFootage:
    """Encode every clip of `dataset` (a FootageDataset) with `vae` and every caption with `text_encoder`
    into `cache_dir`, skipping what is cached already.

    `vae_id` names the VAE weights; None hashes them. Source files are known by path, size and mtime, or
    by a hash of their bytes if `content_hash` (slower: reads every file on every run). A clip whose file
    fails to decode is left out and reported in the result's `skipped`. Files from earlier settings stay
    in `cache_dir` until deleted by hand.
    """
    if vae_id is not None and (not isinstance(vae_id, str) or not vae_id):
        raise ValueError(f"`vae_id` must be None or a non-empty string, got {vae_id!r}")
    cache_dir = Path(cache_dir)
    latents_dir, text_dir = cache_dir / "latents", cache_dir / "text"
    latents_dir.mkdir(parents=True, exist_ok=True)
    text_dir.mkdir(parents=True, exist_ok=True)
    vae_id = vae_id if vae_id is not None else module_fingerprint(vae)
    text_id = _text_encoder_id(text_encoder)
    source_ids: dict[Path, str] = {}
    clips: list[CachedClip] = []
    skipped: list[tuple[Path, str]] = []
    seen_captions: set[str] = set()
    to_encode: dict[str, Path] = {}  # caption -> its text file, for those not cached yet
    stats = {"encoded_clips": 0, "reused_clips": 0, "encoded_captions": 0, "reused_captions": 0}

    for index, clip in enumerate(dataset.clips):
        try:
            if clip.source not in source_ids:
                source_ids[clip.source] = _source_id(clip.source, content_hash)
        except OSError as err:
            skipped.append((clip.source, f"cannot read file: {err.strerror or err}"))
            continue
        key = _digest({"source": source_ids[clip.source], "frames": clip.frame_indices, "fps": dataset.fps,
                       "size": [clip.width, clip.height], "vae": vae_id})
        latents_path = latents_dir / f"{key}.safetensors"
        if _is_complete(latents_path, ("latents",)):
            stats["reused_clips"] += 1
        else:
            try:
                video = dataset[index]["video"]  # (3, F, H, W)
            except ValueError as err:
                skipped.append((clip.source, str(err)))
                continue
            latents = encode_video(vae, video[None])[0]  # (C, T, h, w)
            _save_atomic({"latents": latents.float().cpu().contiguous()}, latents_path, _describe(clip))
            stats["encoded_clips"] += 1
        text_path = text_dir / f"{_digest({'caption': clip.caption, 'encoder': text_id})}.safetensors"
        if clip.caption not in seen_captions:
            seen_captions.add(clip.caption)
            if _is_complete(text_path, ("text", "text_mask")):
                stats["reused_captions"] += 1
            else:
                to_encode[clip.caption] = text_path
        clips.append(CachedClip(latents_path, text_path, clip.caption, str(clip.source), clip.start_s,
                                clip.bucket_key))

    captions = list(to_encode)
    for start in range(0, len(captions), _TEXT_BATCH):
        batch = captions[start:start + _TEXT_BATCH]
        encoded = text_encoder.encode(batch)  # embeddings (B, l, D), mask (B, l)
        length = min(encoded.embeddings.shape[1], text_encoder.max_length)
        for i, caption in enumerate(batch):
            text = torch.zeros(text_encoder.max_length, encoded.embeddings.shape[2])  # (L, D)
            mask = torch.zeros(text_encoder.max_length, dtype=torch.bool)  # (L,)
            text[:length] = encoded.embeddings[i, :length].float().cpu()
            mask[:length] = encoded.mask[i, :length].cpu()
            _save_atomic({"text": text, "text_mask": mask}, to_encode[caption], {"caption": caption})
        stats["encoded_captions"] += len(batch)
    return CachedFootage(clips, skipped, CacheStats(**stats))


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's config (if it has one) and every tensor in its state dict."""
    digest = hashlib.sha256()
    config = {k: v for k, v in dict(getattr(module, "config", {}) or {}).items() if not k.startswith("_")}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _text_encoder_id(text_encoder) -> str:
    # The weights are not hashed: MiniLM loads them lazily, and its name, path and dtype pin them.
    parts = ("name", "max_length", "dim", "model_path", "dtype")
    return json.dumps({p: str(getattr(text_encoder, p, None)) for p in parts}, sort_keys=True)


def _source_id(path: Path, content_hash: bool) -> str:
    """What identifies the file's current contents: its path plus size and mtime, or a hash of its bytes."""
    if content_hash:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return f"{path}|sha256:{digest.hexdigest()}"
    stat = path.stat()
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def _digest(fields: dict) -> str:
    text = json.dumps({"cache_version": CACHE_VERSION, **fields}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _describe(clip: FootageClip) -> dict[str, str]:
    """Readable safetensors metadata, for a person looking into the cache."""
    return {"source": str(clip.source), "start_s": f"{clip.start_s:.6f}", "caption": clip.caption,
            "frames": ",".join(map(str, clip.frame_indices))}


def _is_complete(path: Path, keys: tuple[str, ...]) -> bool:
    """Whether `path` is a readable safetensors file holding `keys`; a damaged file is re-encoded."""
    if not path.is_file():
        return False
    try:
        return set(keys) <= set(load_file(path))
    except (SafetensorError, OSError):
        return False


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write to a hidden temp file beside `path`, then rename: a crash never leaves a half-written cache file."""
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp")
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
