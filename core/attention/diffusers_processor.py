"""Kelp's attention backends (dense, flex, sage, adaptive sparse) inside diffusers' Wan transformers.

`KelpWanAttnProcessor` replaces the self-attention processor of each block of a `WanTransformer3DModel`
(Wan 2.1 / 2.2); cross-attention to the text (and I2V image) stays with diffusers' own processor. Use
`wan_attention(transformer, backend, state)` around a pipeline call:

    controller = SparsityController(SparsitySettings(target_recall=0.9))
    with wan_attention(pipe.transformer, "sparse", controller):
        for step ...: controller.set_step(step); pipe.transformer(...)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from diffusers.models.transformers.transformer_wan import WanAttnProcessor, _get_qkv_projections

from core.attention.dispatch import attention, available_backends


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on (B, L, H, D): pairs (even, odd) of channels turned by the pair's angle."""
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2).type_as(x)


class KelpWanAttnProcessor(WanAttnProcessor):
    """Self-attention through `core.attention.dispatch.attention`; layer `layer` asks `state.for_layer` (e.g. a
    SparsityController) for its per-call context. Cross-attention and masked calls go to diffusers' processor."""

    def __init__(self, layer: int, backend: str = "dense", state: Any = None):
        super().__init__()
        if backend not in available_backends():
            raise ValueError(f"`backend` must be one of {available_backends()}, got {backend!r}")
        if backend == "sparse" and state is None:
            raise ValueError("the 'sparse' backend needs `state`, a SparsityController, got None")
        self.layer, self.backend, self.state = layer, backend, state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if encoder_hidden_states is not None or attention_mask is not None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))  # (B, L, H, D)
        if rotary_emb is not None:
            query, key = _rotate(query, *rotary_emb), _rotate(key, *rotary_emb)
        context = self.state.for_layer(self.layer, 0) if self.state is not None else None  # no text in the sequence
        out = attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
                        backend=self.backend, context=context)  # (B, H, L, D)
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


@contextmanager
def wan_attention(transformer, backend: str = "dense", state: Any = None) -> Iterator[None]:
    """Route the self-attention of every block of a diffusers WanTransformer3DModel through Kelp's backend,
    and give the blocks their previous processors back afterwards."""
    blocks = getattr(transformer, "blocks", None)
    if blocks is None or not all(hasattr(block, "attn1") for block in blocks):
        raise ValueError(f"`transformer` must be a diffusers WanTransformer3DModel, got {type(transformer).__name__}")
    previous = [block.attn1.processor for block in blocks]
    for index, block in enumerate(blocks):
        block.attn1.set_processor(KelpWanAttnProcessor(index, backend, state))
    try:
        yield
    finally:
        for block, processor in zip(blocks, previous):
            block.attn1.set_processor(processor)
