"""The one attention entry point: every attention call in Kelp's models goes through `attention()`.

Backends register here with a capability check; the sparse and fused kernels of later work plug in
beside the dense one without touching the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AttentionBackend:
    name: str
    run: Callable[..., torch.Tensor]  # (q, k, v, mask) -> out, all (B, H, L, D)
    can_run: Callable[[torch.Tensor, torch.Tensor | None], bool]  # (q, mask) -> bool


_BACKENDS: dict[str, AttentionBackend] = {}


def register_backend(backend: AttentionBackend) -> None:
    _BACKENDS[backend.name] = backend


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def _dense_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


register_backend(AttentionBackend(name="dense", run=_dense_sdpa, can_run=lambda q, mask: True))


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    backend: str = "dense",
) -> torch.Tensor:
    """Scaled dot-product attention.

    q, k, v: (B, H, L, D). mask: bool, broadcastable to (B, H, Lq, Lk), True where a query may attend.
    Falls back to dense SDPA when the chosen backend cannot serve this call.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"`backend` must be one of {available_backends()}, got {backend!r}")
    chosen = _BACKENDS[backend]
    if not chosen.can_run(q, mask):
        chosen = _BACKENDS["dense"]
    return chosen.run(q, k, v, mask)
