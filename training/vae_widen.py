"""Widen a trained VAE's decoder without changing what it computes (Net2Net-style), so decoder-only training can
start from the trained decoder with more channels instead of from scratch.

Every decoder width is a multiple of `decoder_base_dim` (diffusers' `AutoencoderKLWan` scales all decoder stages
by it), so each old width C maps to one new width C' and one channel map: channel c' < C is channel c', and each
extra group of FrameGroupNorm.CHANNELS_PER_GROUP channels copies a whole old group, so every group's statistics
(and the normalisation) stay the same. A layer reading widened channels splits each old weight among the copies
of its input channel with random shares that sum to one: the sum is unchanged, and copies that differ in their
outgoing weights get different gradients, so they do not stay copies (equal shares would keep them identical
for good and add no capacity). The single-head attention of the middle block keeps its logits by zeroing the
query rows of the copies and scaling the others for the larger softmax scale. The encoder, `quant_conv` and
`post_quant_conv` are not touched, so the latents, and a DiT trained on them, stay valid.
"""

from __future__ import annotations

import math

import torch
from diffusers import AutoencoderKLWan

from core.models.vae import FrameGroupNorm, vae_from_config

GROUP = FrameGroupNorm.CHANNELS_PER_GROUP


def channel_map(old: int, new: int) -> torch.Tensor:
    """For each of `new` channels, the old channel it copies: itself below `old`, then whole groups in turn."""
    if old % GROUP or new % GROUP or new < old:
        raise ValueError(f"channel counts must be multiples of {GROUP} with new >= old, got {old} -> {new}")
    index = torch.arange(new)
    extra = index[old:]
    groups = old // GROUP
    index[old:] = ((extra // GROUP - groups) % groups) * GROUP + extra % GROUP
    return index


def _split_shares(mapping: torch.Tensor, old: int, generator: torch.Generator) -> torch.Tensor:
    """Per new input channel, a random share in (0, 1) such that the copies of each old channel sum to 1."""
    raw = 0.5 + torch.rand(mapping.numel(), generator=generator, dtype=torch.float64)  # in [0.5, 1.5): no tiny share
    totals = torch.zeros(old, dtype=torch.float64).index_add_(0, mapping, raw)
    return raw / totals[mapping]


def _widen_tensor(
    tensor: torch.Tensor, maps: dict[int, torch.Tensor], shares: dict[int, torch.Tensor], *, read_axis: int | None,
    blocks: int = 1, new_shape: torch.Size,
) -> torch.Tensor:
    """`tensor` with axis 0 (made of `blocks` stacked blocks) and `read_axis` widened by the channel maps keyed by
    their old sizes; the read axis is weighted by the split shares."""
    out = tensor
    old_rows = out.shape[0] // blocks
    if new_shape[0] != out.shape[0]:
        rows = maps[old_rows]
        out = torch.cat([block.index_select(0, rows) for block in out.split(old_rows)], dim=0)
    if read_axis is not None and new_shape[read_axis] != out.shape[read_axis]:
        old_cols = out.shape[read_axis]
        out = out.index_select(read_axis, maps[old_cols])
        view = [1] * out.ndim
        view[read_axis] = -1
        out = out * shares[old_cols].view(view)
    if out.shape != new_shape:
        raise ValueError(f"cannot widen a tensor of shape {tuple(tensor.shape)} to {tuple(new_shape)}")
    return out


def widen_decoder(vae: AutoencoderKLWan, decoder_base_dim: int, *, seed: int = 0) -> AutoencoderKLWan:
    """A new VAE whose decoder is `decoder_base_dim` wide and decodes as `vae` does (to float rounding); the rest of
    `vae` is copied unchanged."""
    config = dict(vae.config)
    old_base = config.get("decoder_base_dim") or config["base_dim"]
    if not isinstance(decoder_base_dim, int) or decoder_base_dim < old_base or decoder_base_dim % GROUP:
        raise ValueError(f"`decoder_base_dim` must be a multiple of {GROUP} and at least the decoder's present "
                         f"width {old_base}, got {decoder_base_dim!r}")
    widths = {old_base * m: decoder_base_dim * m for m in set(config["dim_mult"])}
    if max(widths.values()) > 32 * GROUP:  # FrameGroupNorm caps groups at 32: wider groups would normalise anew
        raise ValueError(f"`decoder_base_dim` {decoder_base_dim} makes groups of more than {GROUP} channels")
    wide = vae_from_config({**config, "decoder_base_dim": decoder_base_dim})
    generator = torch.Generator().manual_seed(seed)
    maps = {old: channel_map(old, new) for old, new in widths.items()}
    old_state, new_state = vae.state_dict(), wide.state_dict()
    state = {}
    for name, target in new_state.items():
        source = old_state[name]
        if source.shape == target.shape:
            state[name] = source.clone()
            continue
        read_axis = 1 if name.endswith(".weight") and source.ndim > 1 else None  # conv weights: (out, in, ...)
        # Random draws in the order of the version that trained vae-small-decoder-wide.toml, so that it reruns
        # bit for bit: shares for every width, but for to_qkv only those of its input channels.
        if ".to_qkv." not in name:
            shares = {old: _split_shares(mapping, old, generator) for old, mapping in maps.items()}
        else:
            old_in = source.shape[1] if read_axis else None
            shares = {old_in: _split_shares(maps[old_in], old_in, generator)} if old_in else {}
        # the upsampler's time conv makes [frame 0; frame 1] channels, the attention's to_qkv [q; k; v]
        blocks = 2 if ".time_conv." in name else 3 if ".to_qkv." in name else 1
        widened = _widen_tensor(source.double(), maps, shares, read_axis=read_axis, blocks=blocks,
                                new_shape=target.shape)
        if ".to_qkv." in name:
            _keep_attention_logits(widened, old=source.shape[0] // 3)
        state[name] = widened.to(source.dtype)
    wide.load_state_dict(state, strict=True)
    if vae.dtype != wide.dtype:
        wide = wide.to(dtype=vae.dtype)
    return wide.to(device=vae.device).train(vae.training)


def _keep_attention_logits(qkv: torch.Tensor, old: int) -> None:
    """In place on the widened [q; k; v] rows of the middle block's single-head attention: the copies' query rows
    zero and the others scaled by sqrt(C'/C), so q.k / sqrt(C') over the wider channels is the old q.k / sqrt(C)."""
    new = qkv.shape[0] // 3
    with torch.no_grad():
        qkv[:old] *= math.sqrt(new / old)
        qkv[old:new] = 0
