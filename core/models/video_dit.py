"""Kelp's video diffusion transformer: a hybrid-stream MM-DiT that predicts flow-matching velocity.

Design (Seaweed-7B, Seedance 1.0): text and video tokens attend jointly; the first blocks keep separate
text and video weights ("dual stream"), the later ones share weights over the concatenated sequence
to save parameters. AdaLN-Zero timestep modulation, RMS QK-norm, 3D RoPE for video with a 1D text
position on every axis (MM-RoPE), and one model for every task: the given clean latent frames and a
binary mask are concatenated to the noisy latent along channels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.attention import FeedForward
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn

from core.attention.dispatch import attention
from core.models.shot_layout import attention_mask, build_layout


# ---------------------------------------------------------------------------------------------------
# Rotary position embedding
# ---------------------------------------------------------------------------------------------------


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Split a head's channels over (time, row, column); each part even. Time gets the remainder."""
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """positions (L, 3) -> cos, sin (L, head_dim / 2), one frequency band per axis."""
    angles = []
    for axis, dim in enumerate(rope_axis_dims(head_dim)):
        freqs = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)  # (dim/2,)
        angles.append(positions[:, axis, None].double() * freqs[None])  # (L, dim/2)
    angle = torch.cat(angles, dim=-1)  # (L, head_dim/2)
    return angle.cos().float(), angle.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, L, D): rotate channel pairs (2i, 2i+1) by the angle of token and pair."""
    pairs = x.float().unflatten(-1, (-1, 2))  # (B, H, L, D/2, 2)
    real, imag = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1)
    return rotated.flatten(-2).to(x.dtype)


# ---------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]  # x (B, L, D); shift, scale (B, D)


class AdaLNModulation(nn.Module):
    """temb (B, D) -> `chunks` tensors (B, D); zero-initialised so every block starts as identity."""

    def __init__(self, dim: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(dim, chunks * dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(nn.functional.silu(temb)).chunk(self.chunks, dim=-1)


class StreamProjections(nn.Module):
    """Q/K/V with per-head RMS norm for one stream. Names follow diffusers so LoRA targets carry over."""

    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.norm_q = nn.RMSNorm(dim // heads, eps=eps)
        self.norm_k = nn.RMSNorm(dim // heads, eps=eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        split = lambda t: rearrange(t, "b l (h d) -> b h l d", h=self.heads)  # noqa: E731
        q = self.norm_q(split(self.to_q(x)))  # (B, H, L, Dh)
        k = self.norm_k(split(self.to_k(x)))
        v = split(self.to_v(x))
        return q, k, v


def joint_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask, backend: str,
    context=None,
) -> torch.Tensor:
    cos, sin = rope
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    out = attention(q, k, v, mask, backend=backend, context=context)  # (B, H, L, Dh)
    return rearrange(out, "b h l d -> b l (h d)")


class DualStreamBlock(nn.Module):
    """Separate text and video weights, one joint attention over [text; video]."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.video_mod = AdaLNModulation(dim, 6)
        self.text_mod = AdaLNModulation(dim, 6)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm1_context = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = StreamProjections(dim, heads, eps)
        self.attn_context = StreamProjections(dim, heads, eps)
        self.to_out = nn.Linear(dim, dim)
        self.to_add_out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm2_context = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, mult=mlp_ratio, activation_fn="gelu-approximate")
        self.ff_context = FeedForward(dim, mult=mlp_ratio, activation_fn="gelu-approximate")

    def forward(self, text, video, temb, rope, mask, backend: str, context=None):
        v_shift1, v_scale1, v_gate1, v_shift2, v_scale2, v_gate2 = self.video_mod(temb)
        t_shift1, t_scale1, t_gate1, t_shift2, t_scale2, t_gate2 = self.text_mod(temb)
        num_text = text.shape[1]
        tq, tk, tv = self.attn_context(modulate(self.norm1_context(text), t_shift1, t_scale1))
        vq, vk, vv = self.attn(modulate(self.norm1(video), v_shift1, v_scale1))
        joint = [torch.cat(pair, dim=2) for pair in ((tq, vq), (tk, vk), (tv, vv))]  # (B, H, L, Dh)
        out = joint_attention(*joint, rope, mask, backend, context)  # (B, L, D)
        text = text + t_gate1[:, None] * self.to_add_out(out[:, :num_text])
        video = video + v_gate1[:, None] * self.to_out(out[:, num_text:])
        text = text + t_gate2[:, None] * self.ff_context(modulate(self.norm2_context(text), t_shift2, t_scale2))
        video = video + v_gate2[:, None] * self.ff(modulate(self.norm2(video), v_shift2, v_scale2))
        return text, video


class SharedStreamBlock(nn.Module):
    """One set of weights for the concatenated [text; video] sequence."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.mod = AdaLNModulation(dim, 6)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = StreamProjections(dim, heads, eps)
        self.to_out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, mult=mlp_ratio, activation_fn="gelu-approximate")

    def forward(self, x, temb, rope, mask, backend: str, context=None):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.mod(temb)
        out = joint_attention(*self.attn(modulate(self.norm1(x), shift1, scale1)), rope, mask, backend, context)
        x = x + gate1[:, None] * self.to_out(out)
        return x + gate2[:, None] * self.ff(modulate(self.norm2(x), shift2, scale2))


# ---------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------


class KelpVideoTransformer(ModelMixin, ConfigMixin, PeftAdapterMixin):
    """Predicts the flow-matching velocity of a noisy video latent given text and optional given frames.

    Inputs are latents from Kelp's causal VAE; one call can hold several shots (see `shot_layout`).
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["DualStreamBlock", "SharedStreamBlock"]
    _skip_layerwise_casting_patterns = ["patch_embed", "text_embed", "norm", "shot_embed", "time_"]
    _repeated_blocks = ["DualStreamBlock", "SharedStreamBlock"]

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 16,
        patch_size: tuple[int, int] = (2, 2),
        dim: int = 256,
        num_heads: int = 4,
        num_dual_layers: int = 2,
        num_shared_layers: int = 6,
        mlp_ratio: float = 4.0,
        text_dim: int = 384,
        max_shots: int = 8,
        rope_theta: float = 10000.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        if dim % num_heads or (dim // num_heads) % 2:
            raise ValueError(f"`dim` must split into `num_heads` heads of even size, got {dim} and {num_heads}")
        self.gradient_checkpointing = False
        patch_h, patch_w = patch_size
        in_features = (2 * latent_channels + 1) * patch_h * patch_w  # noisy + given frames + mask
        self.patch_embed = nn.Linear(in_features, dim)
        self.text_embed = nn.Sequential(
            nn.LayerNorm(text_dim), nn.Linear(text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.shot_embed = nn.Embedding(max_shots, dim)
        nn.init.zeros_(self.shot_embed.weight)  # a one-shot request starts exactly like no shot embedding
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(256, dim)
        self.dual_blocks = nn.ModuleList(
            DualStreamBlock(dim, num_heads, mlp_ratio, norm_eps) for _ in range(num_dual_layers)
        )
        self.shared_blocks = nn.ModuleList(
            SharedStreamBlock(dim, num_heads, mlp_ratio, norm_eps) for _ in range(num_shared_layers)
        )
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.out_mod = AdaLNModulation(dim, 2)
        self.proj_out = nn.Linear(dim, latent_channels * patch_h * patch_w)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        self.attention_backend = "dense"  # runtime setting, not part of the saved config
        # Runtime per-generation attention state (e.g. a SparsityController): its for_layer(index,
        # leading_tokens) gives each block's attention call its context.
        self.attention_state = None

    def _run_block(self, block, *args):
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, *args)
        return block(*args)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        condition_latents: torch.Tensor | None = None,
        condition_mask: torch.Tensor | None = None,
        shot_latent_frames: list[int] | None = None,
        text_lengths: list[int] | None = None,
        return_dict: bool = True,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """
        hidden_states: noisy latent (B, C, T, H, W). timestep: (B,) in [0, 1000].
        encoder_hidden_states: (B, Lt, text_dim), the shots' captions one after another;
        encoder_attention_mask: (B, Lt) bool. condition_latents: (B, C, T, H, W) clean given frames
        (zeros elsewhere); condition_mask: (B, 1, T, H, W), 1 where a frame is given.
        shot_latent_frames / text_lengths: per shot, summing to T and Lt (default: one shot).
        """
        batch, channels, frames, height, width = hidden_states.shape
        patch_h, patch_w = self.config.patch_size
        if height % patch_h or width % patch_w:
            raise ValueError(f"latent size must be divisible by patch {self.config.patch_size}, got {height}x{width}")
        if condition_latents is None:
            condition_latents = torch.zeros_like(hidden_states)
        if condition_mask is None:
            condition_mask = hidden_states.new_zeros(batch, 1, frames, height, width)
        num_text = encoder_hidden_states.shape[1]
        shot_latent_frames = shot_latent_frames or [frames]
        text_lengths = text_lengths or [num_text]
        if sum(shot_latent_frames) != frames or sum(text_lengths) != num_text:
            raise ValueError(
                f"shots must cover the latent and the text: `shot_latent_frames` {shot_latent_frames} vs {frames} "
                f"frames, `text_lengths` {text_lengths} vs {num_text} tokens"
            )
        if len(shot_latent_frames) > self.config.max_shots:
            raise ValueError(f"at most {self.config.max_shots} shots, got {len(shot_latent_frames)}")
        if encoder_attention_mask is None:
            encoder_attention_mask = torch.ones(batch, num_text, dtype=torch.bool, device=hidden_states.device)

        grid_h, grid_w = height // patch_h, width // patch_w
        layout = build_layout(shot_latent_frames, grid_h, grid_w, text_lengths)
        mask = attention_mask(layout, encoder_attention_mask)
        rope = rope_cos_sin(layout.positions.to(hidden_states.device), self.config.dim // self.config.num_heads,
                            self.config.rope_theta)  # 2 x (L, Dh/2)
        shot_emb = self.shot_embed(layout.shot_ids.to(hidden_states.device))  # (L, D)

        x = torch.cat([hidden_states, condition_latents.to(hidden_states.dtype), condition_mask.to(hidden_states.dtype)], 1)
        x = rearrange(x, "b c t (h ph) (w pw) -> b (t h w) (c ph pw)", ph=patch_h, pw=patch_w)  # (B, Lv, Cin)
        video = self.patch_embed(x) + shot_emb[num_text:]  # (B, Lv, D)
        text = self.text_embed(encoder_hidden_states.to(video.dtype)) + shot_emb[:num_text]  # (B, Lt, D)
        temb = self.time_embed(self.time_proj(timestep.flatten()).to(video.dtype))  # (B, D)
        backend, state = self.attention_backend, self.attention_state
        contexts = [None if state is None else state.for_layer(index, num_text)
                    for index in range(len(self.dual_blocks) + len(self.shared_blocks))]

        for block, context in zip(self.dual_blocks, contexts):
            text, video = self._run_block(block, text, video, temb, rope, mask, backend, context)
        x = torch.cat([text, video], dim=1)  # (B, L, D)
        for block, context in zip(self.shared_blocks, contexts[len(self.dual_blocks):]):
            x = self._run_block(block, x, temb, rope, mask, backend, context)

        shift, scale = self.out_mod(temb)
        out = self.proj_out(modulate(self.norm_out(x[:, num_text:]), shift, scale))  # (B, Lv, C*ph*pw)
        out = rearrange(out, "b (t h w) (c ph pw) -> b c t (h ph) (w pw)", t=frames, h=grid_h, w=grid_w,
                        ph=patch_h, pw=patch_w)  # (B, C, T, H, W)
        if not return_dict:
            return (out,)
        return Transformer2DModelOutput(sample=out)


# ---------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerConfig:
    latent_channels: int = 16  # channels of the VAE latent
    patch_size: tuple[int, int] = (2, 2)  # latent pixels per token (row, column); time is not patched
    dim: int = 256  # width of every token
    num_heads: int = 4  # attention heads; dim / num_heads is the head size
    num_dual_layers: int = 2  # early blocks with separate text and video weights
    num_shared_layers: int = 6  # later blocks with weights shared by both streams
    mlp_ratio: float = 4.0  # MLP hidden width / dim
    text_dim: int = 384  # width of the text encoder's token embeddings
    max_shots: int = 8  # shots one request may hold
    rope_theta: float = 10000.0  # RoPE base
    norm_eps: float = 1e-6  # epsilon of the QK RMS norms

    def build(self) -> KelpVideoTransformer:
        return KelpVideoTransformer(**asdict(self))


TRANSFORMER_PRESETS: dict[str, TransformerConfig] = {
    # Unit tests: a few thousand parameters, milliseconds per step.
    "tiny": TransformerConfig(latent_channels=4, dim=32, num_heads=2, num_dual_layers=1, num_shared_layers=1),
    # The bundled CPU model: ~12M parameters, 128x128 clips in seconds on a laptop.
    "small": TransformerConfig(latent_channels=16, dim=256, num_heads=4, num_dual_layers=2, num_shared_layers=6),
    # GPU presets, not trained by Kelp yet: sizes for training runs on real hardware.
    "base": TransformerConfig(latent_channels=16, dim=1536, num_heads=12, num_dual_layers=4, num_shared_layers=26),
    "large": TransformerConfig(latent_channels=16, dim=3072, num_heads=24, num_dual_layers=6, num_shared_layers=30),
}
