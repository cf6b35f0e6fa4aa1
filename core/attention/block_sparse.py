"""Block-sparse attention: each query block attends only to the key blocks its pattern keeps.

Tokens are grouped into blocks of `block_size` in sequence order; a pattern is a bool tensor
(B, H, n_blocks, n_blocks), True where a query block attends to a key block. The sequence is padded to
a multiple of the block size and padded keys are masked out, so padding never changes a result.
Two kernels compute the same thing: a block gather (fast on CPU) and FlexAttention with a BlockMask.
"""

from __future__ import annotations

import importlib.util
import math
from functools import cache
from typing import Callable

import torch
import torch.nn.functional as F

# Elements of one gathered key (or value) chunk: small enough to stay in cache-friendly, reused memory.
# Measured on a 2-core CPU at 16K tokens: 2M floats (8 MB) per chunk runs ~2x faster than one big gather.
GATHER_CHUNK_ELEMENTS = 2 * 1024 * 1024
FLEX_TILE = 128  # compiled FlexAttention's default query and key tile on CUDA


def num_blocks(length: int, block_size: int) -> int:
    return math.ceil(length / block_size)


def pad_to_blocks(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """x (B, H, L, D) -> (B, H, Lp, D) with zeros appended so Lp is a multiple of block_size."""
    extra = num_blocks(x.shape[2], block_size) * block_size - x.shape[2]
    return F.pad(x, (0, 0, 0, extra)) if extra else x


def check_pattern(q: torch.Tensor, pattern: torch.Tensor, block_size: int) -> None:
    batch, heads, length, _ = q.shape
    blocks = num_blocks(length, block_size)
    if pattern.dtype != torch.bool or pattern.dim() != 4:
        raise ValueError(f"`pattern` must be a 4D bool tensor, got {pattern.dtype} of shape {tuple(pattern.shape)}")
    if pattern.shape[2:] != (blocks, blocks) or pattern.shape[0] not in (1, batch) or pattern.shape[1] not in (1, heads):
        raise ValueError(
            f"`pattern` must have shape ({batch}, {heads}, {blocks}, {blocks}) for {length} tokens in blocks of "
            f"{block_size}, got {tuple(pattern.shape)}"
        )


def as_4d_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A bool mask broadcastable to (B, H, Lq, Lk), given with 2 to 4 dimensions, as 4 dimensions."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise ValueError(f"`mask` must be a bool tensor (True where a query may attend), got {mask.dtype}")
    if not 2 <= mask.dim() <= 4:
        raise ValueError(f"`mask` must have 2 to 4 dimensions, got shape {tuple(mask.shape)}")
    return mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))


# ---------------------------------------------------------------------------------------------------
# Block gather: per query block, gather its kept key blocks and run SDPA on them
# ---------------------------------------------------------------------------------------------------


def _gathered_mask(mask, key_padded: bool, length: int, block_size: int, rows, heads, blocks, kept):
    """The (1, G, bs or 1, n * bs) bool mask of G query blocks over their n gathered key blocks, or None.

    rows: (G,) flat (batch, head, query block) ids; kept: (G, n) key block ids.
    """
    if mask is None and not key_padded:
        return None
    offsets = torch.arange(block_size, device=kept.device)
    key_tokens = (kept[:, :, None] * block_size + offsets).flatten(1)[:, None, :]  # (G, 1, n*bs)
    valid = key_tokens < length
    if mask is None:
        return valid[None]
    batch_index, head_index, query_block = rows // (heads * blocks), rows // blocks % heads, rows % blocks
    pick_b = batch_index if mask.shape[0] > 1 else torch.zeros_like(batch_index)
    pick_h = head_index if mask.shape[1] > 1 else torch.zeros_like(head_index)
    if mask.shape[2] > 1:
        query_tokens = (query_block[:, None] * block_size + offsets).clamp(max=length - 1)[:, :, None]  # (G, bs, 1)
    else:
        query_tokens = torch.zeros(rows.shape[0], 1, 1, dtype=torch.long, device=rows.device)
    key_pick = key_tokens.clamp(max=length - 1) if mask.shape[3] > 1 else torch.zeros_like(key_tokens)
    picked = mask[pick_b[:, None, None], pick_h[:, None, None], query_tokens, key_pick]  # (G, bs or 1, n*bs)
    return (picked & valid)[None]


def gather_block_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: torch.Tensor, block_size: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """q, k, v (B, H, L, D); pattern (B or 1, H or 1, n, n) bool; mask bool, broadcastable to (B, H, L, L).

    Query blocks are grouped by how many key blocks they keep, so Python loops over distinct counts and
    memory-bounded chunks, never over single blocks. Query blocks that keep nothing output zeros.
    """
    check_pattern(q, pattern, block_size)
    mask = as_4d_mask(mask)
    batch, heads, length, dim = q.shape
    blocks = num_blocks(length, block_size)
    key_padded = blocks * block_size != length
    q_blocks = pad_to_blocks(q, block_size).reshape(-1, block_size, dim)  # (B*H*n, bs, D)
    k_blocks = pad_to_blocks(k, block_size).reshape(-1, block_size, dim)
    v_blocks = pad_to_blocks(v, block_size).reshape(-1, block_size, v.shape[-1])
    pattern = pattern.expand(batch, heads, blocks, blocks).reshape(-1, blocks)  # (B*H*n, n)
    counts = pattern.sum(-1)  # (B*H*n,)
    kept_first = torch.sort(pattern.to(torch.uint8), dim=-1, descending=True, stable=True).indices  # (B*H*n, n)
    first_key_block = torch.arange(pattern.shape[0], device=q.device) // blocks * blocks  # this (b, h)'s block 0

    out = q_blocks.new_zeros(q_blocks.shape[0], block_size, v.shape[-1])
    key_buffer = k_blocks.new_empty(0)
    value_buffer = v_blocks.new_empty(0)
    for count in torch.unique(counts).tolist():
        if count == 0:
            continue
        rows = torch.nonzero(counts == count).flatten()
        chunk = max(1, GATHER_CHUNK_ELEMENTS // (count * block_size * dim))
        for start in range(0, rows.shape[0], chunk):
            part = rows[start:start + chunk]
            kept = kept_first[part, :count]  # (G, count) key block ids within (b, h)
            flat = (first_key_block[part, None] + kept).flatten()
            size = flat.shape[0] * block_size
            if key_buffer.numel() < size * dim:  # reused buffers: fresh big allocations cost page faults
                key_buffer = k_blocks.new_empty(size * dim)
                value_buffer = v_blocks.new_empty(size * v.shape[-1])
            keys = torch.index_select(k_blocks, 0, flat, out=key_buffer[: size * dim].view(-1, block_size, dim))
            values = torch.index_select(
                v_blocks, 0, flat, out=value_buffer[: size * v.shape[-1]].view(-1, block_size, v.shape[-1])
            )
            group = part.shape[0]
            attn_mask = _gathered_mask(mask, key_padded, length, block_size, part, heads, blocks, kept)
            out[part] = F.scaled_dot_product_attention(
                q_blocks[part][None],  # (1, G, bs, D): 4D keeps SDPA on its fused CPU kernel
                keys.view(1, group, count * block_size, dim),
                values.view(1, group, count * block_size, -1),
                attn_mask=attn_mask,
            )[0]
    out = out.view(batch, heads, blocks * block_size, -1)
    return out[:, :, :length]


# ---------------------------------------------------------------------------------------------------
# FlexAttention with a BlockMask built from the same pattern
# ---------------------------------------------------------------------------------------------------


@cache
def flex_attention_installed() -> bool:
    return importlib.util.find_spec("torch.nn.attention.flex_attention") is not None


# Compiled FlexAttention specialises on sequence length and head dim. A studio that generates many clip sizes (or a
# benchmark's grid of sizes) would pass dynamo's default recompile limit (8), after which flex_attention runs
# eagerly: the whole L x L score matrix at once.
FLEX_RECOMPILE_LIMIT = 64


@cache
def _compiled_flex_attention() -> Callable:
    import torch._dynamo
    from torch.nn.attention.flex_attention import flex_attention

    for name in ("recompile_limit", "cache_size_limit"):  # the name in newer and in older PyTorch
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(FLEX_RECOMPILE_LIMIT, getattr(torch._dynamo.config, name)))
    return torch.compile(flex_attention, dynamic=False)


def flex_can_run(q: torch.Tensor, eager_on_cpu: bool = False) -> bool:
    """FlexAttention serves CUDA calls (compiled); on CPU only when asked for, in eager mode (slow)."""
    if not flex_attention_installed():
        return False
    return q.is_cuda or (eager_on_cpu and q.device.type == "cpu")


def _mask_mod(pattern: torch.Tensor, mask: torch.Tensor | None, length: int, block_size: int):
    """Token-level rule consistent with the BlockMask: eager FlexAttention applies only this rule, and
    the compiled kernel applies it on partial blocks."""
    last = length - 1

    def mask_mod(b, h, q_idx, kv_idx):
        allowed = (kv_idx < length) & pattern[b, h, q_idx // block_size, kv_idx // block_size]
        if mask is not None:
            allowed = allowed & mask[
                b if mask.shape[0] > 1 else 0,
                h if mask.shape[1] > 1 else 0,
                q_idx.clamp(max=last) if mask.shape[2] > 1 else 0,
                kv_idx.clamp(max=last) if mask.shape[3] > 1 else 0,
            ]
        return allowed

    return mask_mod


def _kv_blocks(pattern: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pattern (B, H, n, n) -> counts (B, H, n) and kept key block ids first (B, H, n, n), as int32."""
    order = torch.sort(pattern.to(torch.uint8), dim=-1, descending=True, stable=True).indices
    return pattern.sum(-1).to(torch.int32), order.to(torch.int32)


def block_coverage(mask: torch.Tensor, length: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For a bool token mask broadcastable to (B, H, L, L): per query block and key block (B|1, H|1, n|1, n|1),
    whether the mask lets any of the block's queries attend to any of its keys, and whether it lets all.

    Keys past `length` (padding) count as masked; padded query rows repeat the last real row, so a block's answer
    is its real rows' answer (padded rows' outputs are dropped).
    """
    mask = as_4d_mask(mask)
    blocks = num_blocks(length, block_size)
    extra = blocks * block_size - length
    if extra and mask.shape[2] > 1:
        mask = torch.cat([mask, mask[:, :, -1:].expand(-1, -1, extra, -1)], dim=2)
    if extra and mask.shape[3] > 1:
        mask = torch.cat([mask, mask.new_zeros(*mask.shape[:3], extra)], dim=3)
    query_blocks = blocks if mask.shape[2] > 1 else 1
    key_blocks = blocks if mask.shape[3] > 1 else 1
    grouped = mask.reshape(*mask.shape[:2], query_blocks, -1, key_blocks, mask.shape[3] // key_blocks)
    return grouped.any(dim=5).any(dim=3), grouped.all(dim=5).all(dim=3)


def flex_block_mask(pattern: torch.Tensor, mask: torch.Tensor | None, length: int, block_size: int):
    """The FlexAttention `BlockMask` for `pattern` (B, H, n, n) and a token `mask`: kept blocks the mask fully
    allows are "full" (the compiled kernel skips the token rule there), blocks it fully forbids are dropped, and
    only the rest (and the padded last key block) evaluate the token rule element by element."""
    from torch.nn.attention.flex_attention import BlockMask

    mask = as_4d_mask(mask)
    blocks = num_blocks(length, block_size)
    padded_length = blocks * block_size
    kept = pattern
    fully_allowed = torch.ones(blocks, blocks, dtype=torch.bool, device=pattern.device)
    fully_allowed[:, -1] = padded_length == length  # padded keys: the rule masks them
    if mask is not None:
        any_allowed, all_allowed = block_coverage(mask, length, block_size)
        kept = kept & any_allowed
        fully_allowed = fully_allowed & all_allowed
    full = kept & fully_allowed
    return BlockMask.from_kv_blocks(
        *_kv_blocks(kept & ~full),
        *_kv_blocks(full),
        BLOCK_SIZE=block_size,
        mask_mod=_mask_mod(pattern, mask, length, block_size),
        seq_lengths=(padded_length, padded_length),
    )


def flex_block_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: torch.Tensor, block_size: int,
    mask: torch.Tensor | None = None, block_mask=None,
) -> torch.Tensor:
    """Same contract as `gather_block_attention`, through FlexAttention (compiled on CUDA, eager on CPU).

    block_mask: from `reusable_block_mask` for the same pattern and mask, for callers that reuse one pattern over
    many calls (building it costs a few small kernels per call)."""
    from torch.nn.attention.flex_attention import flex_attention

    check_pattern(q, pattern, block_size)
    batch, heads, length, _ = q.shape
    if block_mask is None:
        blocks = num_blocks(length, block_size)
        block_mask = flex_block_mask(pattern.expand(batch, heads, blocks, blocks), mask, length, block_size)
    extra = {}
    if q.is_cuda:
        run = _compiled_flex_attention()
        if block_size % FLEX_TILE:  # the kernel's tiles must divide the mask's blocks (its default tile is 128)
            tile = math.gcd(block_size, FLEX_TILE)
            extra["kernel_options"] = {"BLOCK_M": tile, "BLOCK_N": tile}
    else:
        run = flex_attention
    out = run(pad_to_blocks(q, block_size), pad_to_blocks(k, block_size), pad_to_blocks(v, block_size),
              block_mask=block_mask, **extra)
    return out[:, :, :length]


# ---------------------------------------------------------------------------------------------------
# Kernel choice
# ---------------------------------------------------------------------------------------------------

BLOCK_SPARSE_KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "gather": gather_block_attention,
    "flex": flex_block_attention,
}


def resolve_kernel(q: torch.Tensor, kernel: str = "auto") -> str:
    """The block-sparse kernel that serves `q`: "auto" is FlexAttention on CUDA when installed, else the gather."""
    if kernel == "auto":
        return "flex" if flex_can_run(q) else "gather"
    if kernel not in BLOCK_SPARSE_KERNELS:
        raise ValueError(f"`kernel` must be 'auto' or one of {sorted(BLOCK_SPARSE_KERNELS)}, got {kernel!r}")
    if kernel == "flex" and not flex_can_run(q, eager_on_cpu=True):
        raise ValueError(f"`kernel` 'flex' cannot run on {q.device}: FlexAttention is not available there")
    return kernel


def reusable_block_mask(q: torch.Tensor, pattern: torch.Tensor, block_size: int, mask: torch.Tensor | None = None,
                        kernel: str = "auto"):
    """What `block_sparse_attention` can reuse across calls with this pattern and mask: the FlexAttention
    `BlockMask` when `kernel` resolves to FlexAttention for `q`, else None (the gather prepares per call)."""
    if resolve_kernel(q, kernel) != "flex":
        return None
    batch, heads, length, _ = q.shape
    blocks = num_blocks(length, block_size)
    return flex_block_mask(pattern.expand(batch, heads, blocks, blocks), mask, length, block_size)


def block_sparse_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: torch.Tensor, block_size: int,
    mask: torch.Tensor | None = None, kernel: str = "auto", block_mask=None,
) -> torch.Tensor:
    """q, k, v (B, H, L, D) -> (B, H, L, D), attending only where `pattern` (B, H, n, n) and `mask` allow.

    kernel: "auto" (FlexAttention on CUDA when installed, the block gather otherwise), "gather" or "flex".
    block_mask: from `reusable_block_mask` for the same pattern and mask, when calls repeat them.
    """
    kernel = resolve_kernel(q, kernel)
    if kernel == "flex":
        return flex_block_attention(q, k, v, pattern, block_size, mask, block_mask=block_mask)
    return BLOCK_SPARSE_KERNELS[kernel](q, k, v, pattern, block_size, mask)
