"""Adaptive block sparsity after AdaSpa: search each layer's and head's block pattern at a few denoising
steps, then reuse it.

At a search step the exact share of attention mass between every query block and key block is computed
(softmax normalised by each row's log-sum-exp of the same step, chunked over query blocks so the L x L
matrix never exists at once); per head and query block, the fewest key blocks that cover the target
recall are kept, plus the diagonal block and the blocks of the leading (text) tokens. Attention is
nearly static across steps, so the pattern serves every step until the next search.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from core.attention.block_sparse import (
    BLOCK_SPARSE_KERNELS,
    as_4d_mask,
    block_sparse_attention,
    num_blocks,
    reusable_block_mask,
)

DEFAULT_TARGET_RECALL = 0.9
# Attention scores computed at once in a search: on a CPU 8 MB, cache-sized; on a GPU 512 MB, so that each chunk's
# matmuls fill the device (at 75K tokens and 12 heads, 128 query rows a chunk instead of 64-row slivers).
SCORE_CHUNK_ELEMENTS = 2 * 1024 * 1024
CUDA_SCORE_CHUNK_ELEMENTS = 128 * 1024 * 1024


@dataclass(frozen=True)
class DeviceThresholds:
    """Where the block-sparse kernel pays on a kind of device, measured by bench/attention.py against dense SDPA."""

    min_tokens: int  # shorter sequences run dense
    min_sparsity: float  # a layer whose pattern skips less runs dense until its next search


# CPU (2-core VM, block gather): from 4K tokens at 85% sparsity 2.5x+, and about even with dense near half the
# blocks skipped. CUDA (H200, compiled FlexAttention against the flash kernel): never faster at 16K tokens or less;
# at 32K 0.82-0.86x with half the blocks skipped, 1.3x with three quarters.
DEVICE_THRESHOLDS = {
    "cpu": DeviceThresholds(min_tokens=4096, min_sparsity=0.5),
    "cuda": DeviceThresholds(min_tokens=32768, min_sparsity=0.75),
}


def device_thresholds(device: torch.device | str) -> DeviceThresholds:
    """The thresholds for `device`; devices not measured (mps, xpu, ...) get the CPU's."""
    return DEVICE_THRESHOLDS.get(torch.device(device).type, DEVICE_THRESHOLDS["cpu"])


@dataclass(frozen=True)
class SparsitySettings:
    target_recall: float | None = None  # share of each query block's attention mass to keep (default 0.9)
    sparsity: float | None = None  # instead: share of key blocks to drop per query block (fixed budget)
    block_size: int = 64  # tokens per block, in sequence order: video blocks are runs of (frame, row, col)
    # Steps count model calls (sampling steps; Heun makes two calls a step).
    warmup_steps: int = 2  # the first steps run dense: the pattern is not settled at pure noise
    search_steps: tuple[int, ...] = (2, 10)  # steps that search a fresh pattern; the others reuse it
    keep_leading_tokens: bool = True  # always keep the key blocks of the leading (text) tokens
    # Shorter sequences run dense: there sparse attention does not pay. None: the device's DEVICE_THRESHOLDS.
    min_tokens: int | None = None
    # A layer whose searched pattern skips a smaller share of its blocks runs dense until the next search (the block
    # kernel would be slower than dense SDPA). None: the device's DEVICE_THRESHOLDS.
    min_sparsity: float | None = None
    kernel: str = "auto"  # block-sparse kernel: "auto", "gather" or "flex"

    def __post_init__(self):
        if self.target_recall is not None and self.sparsity is not None:
            raise ValueError(
                f"give `target_recall` or `sparsity`, not both; got {self.target_recall} and {self.sparsity}"
            )
        if self.target_recall is None and self.sparsity is None:
            object.__setattr__(self, "target_recall", DEFAULT_TARGET_RECALL)
        if self.target_recall is not None and not 0 < self.target_recall <= 1:
            raise ValueError(f"`target_recall` must be in (0, 1], got {self.target_recall}")
        if self.sparsity is not None and not 0 <= self.sparsity < 1:
            raise ValueError(f"`sparsity` must be in [0, 1), got {self.sparsity}")
        if self.block_size < 16 or self.block_size % 16:
            raise ValueError(f"`block_size` must be a positive multiple of 16, got {self.block_size}")
        if self.warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be >= 0, got {self.warmup_steps}")
        object.__setattr__(self, "search_steps", tuple(sorted(set(self.search_steps))))
        if any(step < self.warmup_steps for step in self.search_steps):
            raise ValueError(
                f"`search_steps` must not fall in the {self.warmup_steps} warm-up steps, got {self.search_steps}"
            )
        if self.min_tokens is not None and self.min_tokens < 0:
            raise ValueError(f"`min_tokens` must be >= 0, got {self.min_tokens}")
        if self.min_sparsity is not None and not 0 <= self.min_sparsity < 1:
            raise ValueError(f"`min_sparsity` must be in [0, 1), got {self.min_sparsity}")
        if self.kernel != "auto" and self.kernel not in BLOCK_SPARSE_KERNELS:
            raise ValueError(f"`kernel` must be 'auto' or one of {sorted(BLOCK_SPARSE_KERNELS)}, got {self.kernel!r}")


# ---------------------------------------------------------------------------------------------------
# Search: exact block scores and block selection
# ---------------------------------------------------------------------------------------------------


def block_attention_mass(
    q: torch.Tensor, k: torch.Tensor, block_size: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """q, k (B, H, L, D) -> (B, H, n, n) fp32: for each query block and key block, the sum over the block's
    queries of the softmax attention they give the key block. Rows of the full matrix sum to 1, so a
    query block's masses sum to its number of queries. Computed a chunk of query blocks at a time."""
    return attention_with_block_mass(q, k, None, block_size, mask)[1]


def search_score_dtype(q: torch.Tensor) -> torch.dtype:
    """Scores of a search in float32, except half-precision inputs on CUDA: there float32 matmuls and float32
    score chunks made a search cost 30-70 dense calls on an H200 (bench/attention.py). Sums stay float32."""
    return q.dtype if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) else torch.float32


def attention_with_block_mass(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None, block_size: int, mask: torch.Tensor | None = None,
    score_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Dense attention output (B, H, L, Dv) (None without v) and the block masses of `block_attention_mass`
    from one pass over the scores: a search step gets its exact output for one extra matmul.

    score_dtype: the precision of the scores (default `search_score_dtype(q)`). With half-precision scores the
    output comes from SDPA (a fused kernel) instead of the scores, whose rounding it would carry."""
    mask = as_4d_mask(mask)
    batch, heads, length, _ = q.shape
    blocks = num_blocks(length, block_size)
    whole = length // block_size  # key blocks without padding; a shorter last one is summed apart
    score_dtype = score_dtype or search_score_dtype(q)
    half_scores = score_dtype != torch.float32
    keys = k.to(score_dtype) * q.shape[-1] ** -0.5  # (B, H, L, D)
    values = v.float() if v is not None and not half_scores else None  # (B, H, L, Dv)
    chunk_elements = CUDA_SCORE_CHUNK_ELEMENTS if q.is_cuda else SCORE_CHUNK_ELEMENTS
    rows_per_chunk = max(1, chunk_elements // (batch * heads * length * block_size)) * block_size
    buffer = keys.new_empty(batch * heads * length * rows_per_chunk)  # reused: fresh big tensors cost page faults
    masses, outputs = [], []
    for start in range(0, length, rows_per_chunk):
        stop = min(start + rows_per_chunk, length)
        # Scores key-major, (B, H, L, r): measured ~1.7x faster on CPU than (B, H, r, L) for small head dims.
        scores = buffer[: batch * heads * length * (stop - start)].view(batch, heads, length, stop - start)
        torch.matmul(keys, q[:, :, start:stop].to(score_dtype).transpose(-1, -2), out=scores)
        if mask is not None:
            allowed = mask[:, :, start:stop] if mask.shape[2] > 1 else mask
            scores.masked_fill_(~allowed.transpose(-1, -2), float("-inf"))
        row_max = scores.amax(dim=-2, keepdim=True)  # (B, H, 1, r)
        scores.sub_(torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))).exp_()
        key_blocks = scores[:, :, : whole * block_size].unflatten(2, (whole, block_size))
        block_sums = key_blocks.sum(3, dtype=torch.float32)  # (B, H, n, r)
        if whole < blocks:
            block_sums = torch.cat([block_sums, scores[:, :, whole * block_size:].sum(2, keepdim=True,
                                                                                     dtype=torch.float32)], dim=2)
        # Dividing by the row sums is the softmax's normalisation by the row's log-sum-exp.
        row_sums = block_sums.sum(2, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)  # (B, H, 1, r)
        if values is not None:
            out = torch.matmul(scores.transpose(-1, -2), values)  # (B, H, r, Dv)
            outputs.append((out / row_sums.transpose(2, 3)).to(v.dtype))
        probs = (block_sums / row_sums).transpose(2, 3)
        probs = F.pad(probs, (0, 0, 0, -(stop - start) % block_size))  # (B, H, r', n): query rows to whole blocks
        masses.append(probs.unflatten(2, (-1, block_size)).sum(3))  # (B, H, r'/bs, n)
    if v is None:
        out = None
    elif half_scores:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:
        out = torch.cat(outputs, dim=2)
    return out, torch.cat(masses, dim=2)


def always_kept_blocks(blocks: int, block_size: int, leading_tokens: int, device=None) -> torch.Tensor:
    """(n, n) bool: the diagonal, and every key block holding one of the first `leading_tokens` tokens."""
    kept = torch.eye(blocks, dtype=torch.bool, device=device)
    kept[:, : num_blocks(leading_tokens, block_size)] = True
    return kept


def select_blocks(
    mass: torch.Tensor, forced: torch.Tensor, target_recall: float | None = None, sparsity: float | None = None
) -> torch.Tensor:
    """mass (B, H, n, n), forced (n, n) bool -> pattern (B, H, n, n) bool.

    target_recall: per query block row, the forced blocks and then the fewest heaviest blocks whose mass
    reaches the target share of the row (head-adaptive). sparsity: the forced blocks, topped up with the
    heaviest to keep (1 - sparsity) of the row's blocks.
    """
    if (target_recall is None) == (sparsity is None):
        raise ValueError(f"give exactly one of `target_recall` and `sparsity`, got {target_recall} and {sparsity}")
    forced = forced.expand_as(mass)
    ranked = mass.masked_fill(forced, float("inf"))  # forced blocks first, their mass counts toward recall
    order = torch.argsort(ranked, dim=-1, descending=True)
    if target_recall is not None:
        if target_recall >= 1:
            return torch.ones_like(forced)
        sorted_mass = mass.gather(-1, order)
        mass_before = sorted_mass.cumsum(-1) - sorted_mass
        keep_sorted = mass_before < target_recall * mass.sum(-1, keepdim=True)
    else:
        budget = max(1, math.ceil((1 - sparsity) * mass.shape[-1] - 1e-9))  # 1e-9: (1 - 0.85) * 20 > 3
        keep_sorted = torch.arange(mass.shape[-1], device=mass.device) < budget
        keep_sorted = keep_sorted.expand_as(mass)
    pattern = torch.zeros_like(forced).scatter(-1, order, keep_sorted)
    return pattern | forced


# ---------------------------------------------------------------------------------------------------
# The controller the pipeline owns for one generation
# ---------------------------------------------------------------------------------------------------


@dataclass
class LayerStats:
    sparsity: torch.Tensor  # (H,) share of (query block, key block) pairs dropped, over batch and rows
    recall: torch.Tensor  # (H,) share of attention mass the kept blocks hold at the search step
    searched_at: int  # the step of the search
    runs_dense: bool = False  # the pattern skips less than `min_sparsity`: the layer attends densely until the next search


@dataclass
class SparsityController:
    """Decides per step and layer between dense attention (warm-up), a search and reuse of the cached
    pattern. The pipeline makes one per generation, hands it to the model and calls `set_step` before
    each model call; the model asks `for_layer` for each attention layer's context.

    Within one generation a layer's token mask (text padding, shot layout) is the same at every step, so the
    FlexAttention `BlockMask` built at a layer's first reuse serves every reuse until its next search."""

    settings: SparsitySettings = field(default_factory=SparsitySettings)
    step: int | None = None
    searches: int = 0  # searches run so far, all layers together
    search_seconds: float = 0.0  # time spent searching (block scores and selection)
    patterns: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (B, H, n, n)
    stats: dict[int, LayerStats] = field(default_factory=dict)  # layer -> the latest search's statistics
    block_masks: dict[int, object] = field(default_factory=dict)  # layer -> its pattern's BlockMask (None: gather)
    block_masks_built: int = 0  # BlockMasks built so far (each reused until the layer's next search)
    device: str | None = None  # the device type of the latest call, whose thresholds apply

    def set_step(self, step: int) -> None:
        if step < 0:
            raise ValueError(f"`step` must be >= 0, got {step}")
        self.step = step

    def for_layer(self, layer: int, leading_tokens: int = 0) -> LayerSparsity:
        """The context the `sparse` attention backend needs for one layer; `leading_tokens` are the text
        tokens at the start of the joint sequence."""
        return LayerSparsity(self, layer, leading_tokens)

    def min_tokens(self, device: torch.device | str | None = None) -> int:
        """The settings' min_tokens, or the device's threshold when they leave it to the device."""
        given = self.settings.min_tokens
        return given if given is not None else device_thresholds(device or self.device or "cpu").min_tokens

    def min_sparsity(self, device: torch.device | str | None = None) -> float:
        given = self.settings.min_sparsity
        return given if given is not None else device_thresholds(device or self.device or "cpu").min_sparsity

    def mode(self, layer: int, batch: int, heads: int, length: int, device: torch.device | str = "cpu") -> str:
        """'dense', 'search' or 'reuse' for this layer at the current step, for a sequence on `device`."""
        if self.step is None:
            raise ValueError("`step` is not set: call `set_step` before running the model")
        if length < self.min_tokens(device) or self.step < self.settings.warmup_steps:
            return "dense"
        blocks = num_blocks(length, self.settings.block_size)
        cached = self.patterns.get(layer)
        if cached is None or cached.shape != (batch, heads, blocks, blocks):
            return "search"  # no pattern yet, or a new sequence shape
        if self.step in self.settings.search_steps and self.stats[layer].searched_at != self.step:
            return "search"  # a sampler may call the model twice in a step: search once
        return "dense" if self.stats[layer].runs_dense else "reuse"

    def attend(self, layer: int, leading_tokens: int, q, k, v, mask) -> torch.Tensor:
        batch, heads, length, _ = q.shape
        self.device = q.device.type
        mode = self.mode(layer, batch, heads, length, q.device)
        if mode == "reuse":
            return self._reuse(layer, q, k, v, mask)
        if mode == "search":  # attends densely: the exact output comes with the scores of the search
            return self._search(layer, leading_tokens, q, k, v, mask)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def _reuse(self, layer: int, q, k, v, mask) -> torch.Tensor:
        pattern, block_size, kernel = self.patterns[layer], self.settings.block_size, self.settings.kernel
        if layer not in self.block_masks:
            self.block_masks[layer] = reusable_block_mask(q, pattern, block_size, mask, kernel)
            self.block_masks_built += self.block_masks[layer] is not None
        return block_sparse_attention(q, k, v, pattern, block_size, mask, kernel=kernel,
                                      block_mask=self.block_masks[layer])

    def _search(self, layer: int, leading_tokens: int, q, k, v, mask) -> torch.Tensor:
        start = time.perf_counter()
        settings = self.settings
        blocks = num_blocks(q.shape[2], settings.block_size)
        out, mass = attention_with_block_mass(q, k, v, settings.block_size, mask)  # (B, H, L, Dv), (B, H, n, n)
        forced = always_kept_blocks(blocks, settings.block_size,
                                    leading_tokens if settings.keep_leading_tokens else 0, q.device)
        pattern = select_blocks(mass, forced, settings.target_recall, settings.sparsity)
        self.patterns[layer] = pattern
        self.block_masks.pop(layer, None)  # built from the new pattern at the next reuse
        kept_mass = (mass * pattern).sum(dim=(0, 2, 3))
        self.stats[layer] = LayerStats(
            sparsity=1 - pattern.float().mean(dim=(0, 2, 3)).cpu(),
            recall=(kept_mass / mass.sum(dim=(0, 2, 3)).clamp_min(1e-30)).cpu(),
            searched_at=self.step,
            runs_dense=float(1 - pattern.float().mean()) < self.min_sparsity(q.device),
        )
        self.searches += 1
        self.search_seconds += time.perf_counter() - start  # includes the dense output of the step
        return out


@dataclass(frozen=True)
class LayerSparsity:
    """One layer's handle on the controller: what the DiT passes to `attention(..., context=...)`."""

    controller: SparsityController
    layer: int
    leading_tokens: int = 0

    def __call__(self, q, k, v, mask) -> torch.Tensor:
        return self.controller.attend(self.layer, self.leading_tokens, q, k, v, mask)
