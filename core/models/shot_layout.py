"""Where every token of a (multi-shot) request sits: 3D positions, shot ids, and who may attend to whom.

A request is a sequence of shots. Tokens are laid out as [text of shot 0, text of shot 1, ...,
video of shot 0, video of shot 1, ...]. Following Seedance's multi-shot MM-RoPE, text tokens get a
1D position written on all three axes, and video tokens a 3D (time, row, column) position whose time
carries a per-shot offset. Attention is *shot-causal*: a token of shot i sees the text of shot i only,
and the video of shots 0..i. So every shot sees the subject as drawn in earlier shots (consistency
across cuts), while a later shot's caption can never change an earlier shot (re-rendering shot 2
leaves shot 1 as it was).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SHOT_TIME_GAP = 2  # empty latent frames between shots on the time axis: a cut is not a continuation
TEXT_POSITIONS = 256  # text tokens take positions 0..255; video time starts after them, whatever the padding


@dataclass(frozen=True)
class TokenLayout:
    positions: torch.Tensor  # (L, 3) float: (time, row, column) per token
    shot_ids: torch.Tensor  # (L,) long
    is_text: torch.Tensor  # (L,) bool
    num_text: int  # the first num_text tokens are text
    num_shots: int


def build_layout(
    shot_latent_frames: list[int], grid_height: int, grid_width: int, text_lengths: list[int]
) -> TokenLayout:
    """Positions and shot ids for text tokens (text_lengths[i] for shot i) and video tokens
    (shot_latent_frames[i] frames of grid_height x grid_width patches for shot i)."""
    if len(shot_latent_frames) != len(text_lengths) or not shot_latent_frames:
        raise ValueError(
            f"`shot_latent_frames` and `text_lengths` must be non-empty and of equal length, "
            f"got {shot_latent_frames} and {text_lengths}"
        )
    if max(text_lengths) > TEXT_POSITIONS:
        raise ValueError(f"`text_lengths` must be at most {TEXT_POSITIONS} tokens a shot, got {text_lengths}")
    text_pos, text_shot = [], []
    for shot, length in enumerate(text_lengths):
        index = torch.arange(length, dtype=torch.float32)
        text_pos.append(index[:, None].expand(length, 3))  # (Lt, 3): same 1D position on every axis
        text_shot.append(torch.full((length,), shot, dtype=torch.long))

    video_pos, video_shot = [], []
    time_offset = TEXT_POSITIONS
    rows = torch.arange(grid_height, dtype=torch.float32)
    cols = torch.arange(grid_width, dtype=torch.float32)
    for shot, frames in enumerate(shot_latent_frames):
        times = torch.arange(frames, dtype=torch.float32) + time_offset
        grid = torch.stack(torch.meshgrid(times, rows, cols, indexing="ij"), dim=-1)  # (T, h, w, 3)
        video_pos.append(grid.reshape(-1, 3))
        video_shot.append(torch.full((grid.shape[0] * grid_height * grid_width,), shot, dtype=torch.long))
        time_offset += frames + SHOT_TIME_GAP

    num_text = sum(text_lengths)
    positions = torch.cat(text_pos + video_pos)  # (L, 3)
    shot_ids = torch.cat(text_shot + video_shot)  # (L,)
    is_text = torch.zeros(positions.shape[0], dtype=torch.bool)
    is_text[:num_text] = True
    return TokenLayout(positions, shot_ids, is_text, num_text, len(shot_latent_frames))


def attention_mask(layout: TokenLayout, text_mask: torch.Tensor) -> torch.Tensor | None:
    """Boolean mask broadcastable to (B, heads, L, L), True where a query may attend; None if all may.

    text_mask: (B, num_text) bool, False for padding tokens of the text encoder.
    """
    batch = text_mask.shape[0]
    video_valid = torch.ones(batch, layout.positions.shape[0] - layout.num_text, dtype=torch.bool, device=text_mask.device)
    key_valid = torch.cat([text_mask.bool(), video_valid], dim=1)  # (B, L)
    if layout.num_shots == 1:
        if bool(key_valid.all()):
            return None  # lets SDPA pick its fastest kernel
        return key_valid[:, None, None, :]  # (B, 1, 1, L)
    shot = layout.shot_ids.to(text_mask.device)
    is_text = layout.is_text.to(text_mask.device)
    same_shot = shot[:, None] == shot[None, :]  # (L, L)
    earlier_or_same = shot[None, :] <= shot[:, None]  # key shot <= query shot
    allowed = torch.where(is_text[None, :], same_shot, earlier_or_same)  # (L, L)
    return (allowed[None] & key_valid[:, None, :])[:, None]  # (B, 1, L, L)
