"""The one attention entry point: every attention call in Kelp's models goes through `attention()`.

Backends register here with a capability check (as in diffusers' attention_dispatch): dense SDPA,
FlexAttention, SageAttention when installed on CUDA, and Kelp's adaptive block-sparse attention.
A backend that cannot serve a call hands it to dense SDPA.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from typing import Any, Callable

import torch
import torch.nn.functional as F

from core.attention.block_sparse import flex_block_attention, flex_can_run, num_blocks


@dataclass(frozen=True)
class AttentionBackend:
    name: str
    run: Callable[..., torch.Tensor]  # (q, k, v, mask, context) -> out, all (B, H, L, D)
    can_run: Callable[[torch.Tensor, torch.Tensor | None], bool]  # (q, mask) -> bool


_BACKENDS: dict[str, AttentionBackend] = {}


def register_backend(backend: AttentionBackend) -> None:
    _BACKENDS[backend.name] = backend


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def _dense_sdpa(q, k, v, mask, context) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _dense_flex(q, k, v, mask, context) -> torch.Tensor:
    block_size = 128
    blocks = num_blocks(q.shape[2], block_size)
    every_block = torch.ones(1, 1, blocks, blocks, dtype=torch.bool, device=q.device)
    return flex_block_attention(q, k, v, every_block, block_size, mask)


@cache
def sageattention_installed() -> bool:
    return importlib.util.find_spec("sageattention") is not None


def _sage(q, k, v, mask, context) -> torch.Tensor:
    from sageattention import sageattn

    return sageattn(q, k, v, tensor_layout="HND", is_causal=False)


def _sage_can_run(q: torch.Tensor, mask: torch.Tensor | None) -> bool:
    return q.is_cuda and mask is None and q.dtype in (torch.float16, torch.bfloat16) and sageattention_installed()


def _sparse(q, k, v, mask, context) -> torch.Tensor:
    if not callable(context):
        raise ValueError(
            "the 'sparse' attention backend needs `context` from `SparsityController.for_layer(layer)`, "
            f"got {context!r}"
        )
    return context(q, k, v, mask)


register_backend(AttentionBackend(name="dense", run=_dense_sdpa, can_run=lambda q, mask: True))
register_backend(AttentionBackend(name="flex", run=_dense_flex, can_run=lambda q, mask: flex_can_run(q)))
register_backend(AttentionBackend(name="sage", run=_sage, can_run=_sage_can_run))
register_backend(AttentionBackend(name="sparse", run=_sparse, can_run=lambda q, mask: True))


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    backend: str = "dense",
    context: Any = None,
) -> torch.Tensor:
    """Scaled dot-product attention.

    q, k, v: (B, H, L, D). mask: bool, broadcastable to (B, H, Lq, Lk), True where a query may attend.
    context: per-call state a backend needs (for 'sparse': a `LayerSparsity`); others ignore it.
    Falls back to dense SDPA when the chosen backend cannot serve this call.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"`backend` must be one of {available_backends()}, got {backend!r}")
    chosen = _BACKENDS[backend]
    if not chosen.can_run(q, mask):
        chosen = _BACKENDS["dense"]
    return chosen.run(q, k, v, mask, context)
