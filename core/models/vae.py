"""Kelp's causal video VAE: diffusers' `AutoencoderKLWan` built from Kelp presets, plus encode and streaming decode.

Pixels are (B, 3, F, H, W) in [-1, 1] with F = 1 + 4k; latents are normalized (B, z, 1 + (F-1)//4, H/8, W/8).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm, unpatchify
from torch import nn

from core.cancellation import check_cancel
from core.models.causal_conv import use_first_frame_conv
from core.memory import run_offload_hook

TEMPORAL_FACTOR = 4  # pixel frames per latent frame, after the first frame which is coded alone
SPATIAL_FACTOR = 8  # pixels per latent cell along height and width
NORMS = ("rms", "group")  # VAEConfig.norm: see FrameGroupNorm
DEFAULT_TILE_OVERLAP = 128  # pixels two neighbouring decode tiles share: twice the upsampling stages' reach

# Wan 2.1's published per-channel latent statistics (diffusers' AutoencoderKLWan defaults).
_WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
_WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


def spatial_factor(patch_size: int | None, num_stages: int) -> int:
    """Pixels per latent cell of an AutoencoderKLWan: the patch, then a halving per stage after the first."""
    return (patch_size or 1) * 2 ** (num_stages - 1)


@dataclass(frozen=True)
class VAEConfig:
    """The size of one AutoencoderKLWan; fields map 1:1 onto its constructor arguments."""

    base_dim: int  # channels of the first encoder / last decoder stage; cost at full resolution grows with its square
    z_dim: int  # latent channels
    num_res_blocks: int  # residual blocks per encoder stage (the decoder has one more per stage)
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)  # channel multiplier per stage; each stage after the first halves space
    attn_scales: tuple[float, ...] = ()  # resolutions (1.0, 0.5, ...) with extra attention; Wan uses none
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # which stage transitions halve time (sic, diffusers)
    # Wan 2.2's layout: parameter-free shortcuts around every down/up block (space-to-depth averages, duplication),
    # so an untrained block starts as a plain resampler and the time stages start by averaging/repeating frames.
    is_residual: bool = False
    patch_size: int | None = None  # pixels folded into channels before the first conv (Wan 2.2: 2); None: none
    norm: str = "rms"  # "rms": Wan's own norm (published weights); "group": per-frame GroupNorm (Kelp's presets)
    latents_mean: tuple[float, ...] | None = None  # per-channel latent mean for normalization; None: zeros
    latents_std: tuple[float, ...] | None = None  # per-channel latent std for normalization; None: ones

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"`norm` must be one of {NORMS}, got {self.norm!r}")
        for name in ("base_dim", "z_dim", "num_res_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1, got {getattr(self, name)}")
        # encode/decode chunk time by 4 and space by 8 whatever the config says, so the config must agree.
        if self.patch_size is not None and self.patch_size not in (1, 2, 4, 8):
            raise ValueError(f"`patch_size` must be None, 1, 2, 4 or 8, got {self.patch_size}")
        if spatial_factor(self.patch_size, len(self.dim_mult)) != SPATIAL_FACTOR:
            raise ValueError(
                f"`patch_size` {self.patch_size} times 2 per stage after the first of `dim_mult` {self.dim_mult} "
                f"must give {SPATIAL_FACTOR}x spatial compression"
            )
        if len(self.temperal_downsample) != len(self.dim_mult) - 1 or sum(self.temperal_downsample) != 2:
            raise ValueError(
                f"`temperal_downsample` must have {len(self.dim_mult) - 1} entries (one per stage transition), 2 of "
                f"them True (4x temporal compression), got {self.temperal_downsample}"
            )
        for name in ("latents_mean", "latents_std"):
            stats = getattr(self, name)
            if stats is not None and len(stats) != self.z_dim:
                raise ValueError(f"`{name}` must have z_dim={self.z_dim} entries, got {len(stats)}")
        if self.latents_std is not None and min(self.latents_std) <= 0:
            raise ValueError(f"`latents_std` must be positive, got {self.latents_std}")

    def to_diffusers_kwargs(self) -> dict:  # `norm` is not a diffusers argument: build_vae applies it
        """Keyword arguments for `AutoencoderKLWan(...)`: lists (JSON-friendly in config.json), statistics filled in."""
        return {
            "base_dim": self.base_dim,
            "z_dim": self.z_dim,
            "dim_mult": list(self.dim_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_scales": list(self.attn_scales),
            "temperal_downsample": list(self.temperal_downsample),
            "is_residual": self.is_residual,
            "patch_size": self.patch_size,
            # a patchified VAE's convs see and make the folded pixels: 3 colours x patch x patch channels
            "in_channels": 3 * (self.patch_size or 1) ** 2,
            "out_channels": 3 * (self.patch_size or 1) ** 2,
            "latents_mean": list(self.latents_mean) if self.latents_mean is not None else [0.0] * self.z_dim,
            "latents_std": list(self.latents_std) if self.latents_std is not None else [1.0] * self.z_dim,
        }


VAE_PRESETS: dict[str, VAEConfig] = {
    # Unit tests: 0.64M parameters; a 9-frame 32x32 round trip takes tens of milliseconds on 2 CPU cores.
    "tiny": VAEConfig(base_dim=8, z_dim=4, num_res_blocks=1, norm="group"),
    # The bundled CPU model: 2.7M parameters in Wan 2.2's residual layout. The 2x2 patch fold makes the first stage
    # run at half size and the shortcuts make every block start as a plain resampler: on toy-world images it reached
    # 27.5 dB by step 1200 where the same-size Wan 2.1 layout (3.2M, no shortcuts, full-size first stage) had
    # 23.1 dB, at 0.6x its time per step. Channel widths stay multiples of 32, which oneDNN runs much faster.
    "small": VAEConfig(
        base_dim=32, z_dim=16, num_res_blocks=1, dim_mult=(1, 2, 2), temperal_downsample=(True, True),
        is_residual=True, patch_size=2, norm="group",
    ),
    # Wan 2.1's own layout (127M parameters) so its published weights load unchanged.
    "wan2.1": VAEConfig(
        base_dim=96, z_dim=16, num_res_blocks=2, latents_mean=_WAN21_LATENTS_MEAN, latents_std=_WAN21_LATENTS_STD
    ),
}


class FrameGroupNorm(nn.Module):
    """GroupNorm over channels and space of each frame on its own: causal in time, like the norm it replaces.

    Wan's RMS norm scales each pixel's channel vector to unit length without removing the per-channel mean. Trained
    from scratch at Kelp's small sizes, a common offset then grows in every block after the first optimizer step,
    swamps the image-dependent part, and the decoder stops depending on its latent (flat output, ~16.7 dB, even
    when overfitting 4 images); GroupNorm removes that offset by construction. Every group holds
    CHANNELS_PER_GROUP channels, as in Stable Diffusion's VAE (32 groups of 128 channels): with one channel a
    group (instance norm) a flat region normalises to the same zeros whatever its colour, and a VAE trained so
    got shapes right but hues wrong (a per-image colour fit added 4.7 dB). Parameter names and shapes are the RMS
    norm's (`gamma`, optional `bias`), so a checkpoint's keys do not depend on the norm.
    """

    CHANNELS_PER_GROUP = 4

    def __init__(self, rms: WanRMS_norm, eps: float = 1e-6):
        super().__init__()
        channels = rms.gamma.shape[0] if rms.channel_first else rms.gamma.shape[-1]
        if not rms.channel_first:
            raise ValueError("FrameGroupNorm replaces channel-first norms only")
        groups = max(1, min(32, channels // self.CHANNELS_PER_GROUP))
        while channels % groups:
            groups -= 1
        self.groups = groups
        self.eps = eps
        self.gamma = rms.gamma
        self.bias = rms.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:  # (B, C, T, H, W): each frame alone
            b, c, t, h, w = x.shape
            frames = x.transpose(1, 2).reshape(b * t, c, h, w)
            normed = F.group_norm(frames.float(), self.groups, eps=self.eps).to(x.dtype)
            normed = normed.reshape(b, t, c, h, w).transpose(1, 2)
        else:  # (B, C, H, W) inside the attention blocks
            normed = F.group_norm(x.float(), self.groups, eps=self.eps).to(x.dtype)
        return normed * self.gamma + self.bias



def _use_group_norm(vae: AutoencoderKLWan) -> AutoencoderKLWan:
    for name, module in list(vae.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, WanRMS_norm):
                setattr(module, child_name, FrameGroupNorm(child))
    vae.register_to_config(kelp_norm="group")  # saved in config.json; load_vae_folder reads it back
    return vae


def build_vae(config: VAEConfig | str) -> AutoencoderKLWan:
    """A randomly initialised VAE in eval mode; `config` is a VAEConfig or a VAE_PRESETS name."""
    if isinstance(config, str):
        if config not in VAE_PRESETS:
            raise ValueError(f"`config` must be one of {sorted(VAE_PRESETS)}, got {config!r}")
        config = VAE_PRESETS[config]
    vae = use_first_frame_conv(AutoencoderKLWan(**config.to_diffusers_kwargs()))
    if config.norm == "group":
        _use_group_norm(vae)
    return vae.eval()


def vae_from_config(config: dict) -> AutoencoderKLWan:
    """A randomly initialised VAE from a saved config (as `vae.config` or config.json holds it), with Kelp's
    first-frame convolutions and the norm named by its `kelp_norm` (Wan's RMS norm when absent)."""
    norm = config.get("kelp_norm", "rms")
    if norm not in NORMS:
        raise ValueError(f"`kelp_norm` must be one of {NORMS}, got {norm!r}")
    kwargs = {k: v for k, v in config.items() if not k.startswith("_") and k != "kelp_norm"}
    vae = use_first_frame_conv(AutoencoderKLWan(**kwargs))
    return _use_group_norm(vae) if norm == "group" else vae


def load_vae_folder(folder: str | Path) -> AutoencoderKLWan:
    """A VAE saved with `save_pretrained` (safetensors only), with the norm it was trained with."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    norm = config.get("kelp_norm", "rms")
    if norm not in NORMS:
        raise ValueError(f"{str(folder / 'config.json')!r}: `kelp_norm` must be one of {NORMS}, got {norm!r}")
    if norm == "rms":
        return use_first_frame_conv(AutoencoderKLWan.from_pretrained(folder, use_safetensors=True))
    vae = vae_from_config(config)
    from safetensors.torch import load_file

    weights = sorted(folder.glob("*.safetensors"))
    if len(weights) != 1:
        raise ValueError(f"{str(folder)!r} must hold one .safetensors file, found {[w.name for w in weights]}")
    vae.load_state_dict(load_file(weights[0]), strict=True)
    return vae.eval()


def latent_shape(num_frames: int, height: int, width: int, z_dim: int) -> tuple[int, int, int, int]:
    """(z, T, h, w) of the latents of a (3, num_frames, height, width) clip."""
    _check_video_size(num_frames, height, width)
    if z_dim < 1:
        raise ValueError(f"`z_dim` must be at least 1, got {z_dim}")
    return z_dim, 1 + (num_frames - 1) // TEMPORAL_FACTOR, height // SPATIAL_FACTOR, width // SPATIAL_FACTOR


def encode_video(
    vae: AutoencoderKLWan, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Normalized latents (B, z, 1 + (F-1)//4, H/8, W/8) of `video` (B, 3, F, H, W) in [-1, 1].

    The posterior's mode unless `sample`. Runs without autograd: Kelp's VAE is always frozen.
    """
    _check_supported(vae)
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"`video` must be (B, 3, F, H, W), got shape {tuple(video.shape)}")
    _, _, num_frames, height, width = video.shape
    _check_video_size(num_frames, height, width, name="video")
    with torch.no_grad():
        posterior = vae.encode(video.to(device=vae.device, dtype=vae.dtype)).latent_dist
        mu = posterior.sample(generator=generator) if sample else posterior.mode()  # (B, z, T, h, w)
    mu = mu.float()  # latents are float32 whatever the VAE's precision
    mean, std = latent_stats(vae, mu)  # (1, z, 1, 1, 1) each
    return (mu - mean) / std  # (B, z, T, h, w)


def iter_decode(
    vae: AutoencoderKLWan,
    latents: torch.Tensor,
    chunk_frames: int = 1,
    cancel=None,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield pixel chunks (B, 3, f, H, W) in [-1, 1] from normalized latents (B, z, T, h, w), `chunk_frames` at a time.

    Latent frame 0 gives 1 pixel frame and each later one 4, so a chunk of c latent frames gives 4c pixel frames
    (4c - 3 for the first). The causal feature cache carries context between chunks, so memory does not grow with
    clip length. `cancel` (has is_set()) is checked before each chunk. Not re-entrant: the cache lives on `vae`.

    `tile_size` (pixels, a multiple of 8) decodes in overlapping spatial tiles (core.models.vae_tiling): working
    memory then follows the tile, not the frame, but the whole clip is decoded before the first chunk is yielded,
    into host memory (on a GPU the clip would be the largest buffer), so tiled chunks are CPU tensors.
    `tile_overlap` (pixels shared by neighbouring tiles) defaults to DEFAULT_TILE_OVERLAP, at most half the tile.
    """
    # Validate here, not in the generator, so bad arguments fail at the call rather than at the first next().
    tile_overlap = _checked_decode_arguments(vae, latents, chunk_frames, tile_size, tile_overlap)
    if tile_size is not None:
        return _decode_tiled_chunks(vae, latents, chunk_frames, cancel, tile_size, tile_overlap)
    return _decode_chunks(vae, latents, chunk_frames, cancel)


def _checked_decode_arguments(vae, latents, chunk_frames, tile_size, tile_overlap) -> int | None:
    """Raise ValueError naming a bad argument; returns the tile overlap to use (None without tiles)."""
    _check_supported(vae)
    if latents.ndim != 5 or latents.shape[1] != vae.config.z_dim:
        raise ValueError(f"`latents` must be (B, {vae.config.z_dim}, T, h, w), got shape {tuple(latents.shape)}")
    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
        raise ValueError(f"`chunk_frames` must be a positive int, got {chunk_frames!r}")
    if tile_size is None:
        return None
    from core.models.vae_tiling import check_tiling

    if tile_overlap is None and isinstance(tile_size, int):
        tile_overlap = default_tile_overlap(tile_size)
    check_tiling(tile_size, tile_overlap)
    return tile_overlap


def default_tile_overlap(tile_size: int) -> int:
    """DEFAULT_TILE_OVERLAP pixels, or at most half of a smaller tile (a multiple of SPATIAL_FACTOR)."""
    return min(DEFAULT_TILE_OVERLAP, tile_size // 2 // SPATIAL_FACTOR * SPATIAL_FACTOR)


def decode_latents(
    vae: AutoencoderKLWan,
    latents: torch.Tensor,
    chunk_frames: int = 1,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
) -> torch.Tensor:
    """Pixels (B, 3, F, H, W) in [-1, 1] from normalized latents (B, z, T, h, w); F = 1 + 4(T - 1).

    `tile_size` / `tile_overlap`: as in iter_decode. The clip is decoded into one buffer: the chunks are not
    concatenated at the end, which would hold the clip twice.
    """
    tile_overlap = _checked_decode_arguments(vae, latents, chunk_frames, tile_size, tile_overlap)
    if tile_size is not None:
        return _decode_tiled(vae, latents, chunk_frames, None, tile_size, tile_overlap)
    clip, filled = None, 0
    for chunk in _decode_chunks(vae, latents, chunk_frames, None):  # (B, 3, f, H, W)
        if clip is None:
            num_frames = 1 + TEMPORAL_FACTOR * (latents.shape[2] - 1)
            clip = chunk.new_empty((*chunk.shape[:2], num_frames, *chunk.shape[3:]))
        clip[:, :, filled:filled + chunk.shape[2]] = chunk
        filled += chunk.shape[2]
    return clip


def _decode_tiled(vae, latents, chunk_frames: int, cancel, tile_size: int, tile_overlap: int,
                  out_device=None, out_dtype=torch.float32) -> torch.Tensor:
    from core.models.vae_tiling import decode_tiled

    run_offload_hook(vae)
    z = _vae_scale(vae, latents)  # (B, z, T, h, w)
    return decode_tiled(vae, z, tile_size, tile_overlap, chunk_frames, cancel, out_device, out_dtype)  # (B, 3, F, H, W)


def _decode_tiled_chunks(vae, latents, chunk_frames: int, cancel, tile_size: int, tile_overlap: int):
    """The clip waits in host memory as float16 (half of float32; still finer than 8-bit frames); chunks are
    float32 copies."""
    from core.models.vae_tiling import pixel_frames

    pixels = _decode_tiled(vae, latents, chunk_frames, cancel, tile_size, tile_overlap, "cpu", torch.float16)
    num_latent = latents.shape[2]
    for start in range(0, num_latent, chunk_frames):
        first, last = pixel_frames(start, min(start + chunk_frames, num_latent))
        yield pixels[:, :, first:last].float()


def _decode_chunks(vae: AutoencoderKLWan, latents: torch.Tensor, chunk_frames: int, cancel) -> Iterator[torch.Tensor]:
    run_offload_hook(vae)  # the decoder is called directly, so a model-offload hook on `vae` would not fire
    z = _vae_scale(vae, latents)  # (B, z, T, h, w)
    num_latent = z.shape[2]
    vae.clear_cache()
    try:
        for start in range(0, num_latent, chunk_frames):
            check_cancel(cancel)
            stop = min(start + chunk_frames, num_latent)
            # Wan's decoder must see latent frame 0 alone: on the first call each time-upsampling layer only marks
            # its cache ("Rep") and skips doubling time for every frame it is given, so a first call with 2 latent
            # frames would yield 2 pixel frames instead of 1 + 4. Later calls take any number of frames.
            calls = [(0, 1), (1, stop)] if start == 0 else [(start, stop)]
            pieces = []
            for a, b in calls:
                if a == b:
                    continue
                # no_grad per call, never around the yield: a context held across yields would leak to the caller.
                with torch.no_grad():
                    # post_quant_conv is a 1x1x1 conv, so applying it per chunk equals applying it to all of z.
                    x = vae.post_quant_conv(z[:, :, a:b])  # (B, z, b - a, h, w)
                    vae._conv_idx = [0]
                    out = vae.decoder(x, feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=a == 0)
                    pieces.append(decoder_pixels(vae, out))  # (B, 3, f, H, W)
            yield torch.clamp(torch.cat(pieces, dim=2).float(), min=-1.0, max=1.0)  # (B, 3, f, H, W)
    finally:
        # Runs on exhaustion, cancellation, errors and an abandoned generator alike: drop the cached activations.
        vae.clear_cache()


def _vae_scale(vae: AutoencoderKLWan, latents: torch.Tensor) -> torch.Tensor:
    """Normalized latents in the VAE's own scale, on its device and in its dtype (un-normalized in float32)."""
    z = latents.to(device=vae.device, dtype=torch.float32)
    mean, std = latent_stats(vae, z)  # (1, z, 1, 1, 1) each
    return (z * std + mean).to(vae.dtype)


def latent_stats(vae: AutoencoderKLWan, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`vae`'s latent mean and std, (1, z, 1, 1, 1) each, on `like`'s device and in its dtype: normalized latents are
    (raw - mean) / std."""
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean, device=like.device, dtype=like.dtype).view(shape)
    std = torch.tensor(vae.config.latents_std, device=like.device, dtype=like.dtype).view(shape)
    return mean, std


def _check_supported(vae: AutoencoderKLWan) -> None:
    # Wan 2.2's published VAE compresses 16x in space; the shapes in this module assume 8x (and 4x in time).
    factor = spatial_factor(vae.config.patch_size, len(vae.config.dim_mult))
    if factor != SPATIAL_FACTOR or sum(vae.config.temperal_downsample) != 2:
        raise ValueError(
            f"`vae` must compress {SPATIAL_FACTOR}x in space and 4x in time, got {factor}x (patch_size="
            f"{vae.config.patch_size}, dim_mult={vae.config.dim_mult}) and temperal_downsample="
            f"{vae.config.temperal_downsample}"
        )


def decoder_pixels(vae: AutoencoderKLWan, out: torch.Tensor) -> torch.Tensor:
    """The decoder's output (B, 3*p*p, f, H/p, W/p) as pixels (B, 3, f, H, W): unfolds a patchified VAE's patches."""
    patch = vae.config.patch_size
    return unpatchify(out, patch) if patch is not None and patch > 1 else out


def _check_video_size(num_frames: int, height: int, width: int, name: str | None = None) -> None:
    where = f" of `{name}`" if name else ""
    if num_frames < 1 or (num_frames - 1) % TEMPORAL_FACTOR:
        raise ValueError(
            f"`num_frames`{where} must be 1 + {TEMPORAL_FACTOR}k (1, 5, 9, ...): the first frame is coded alone, "
            f"then {TEMPORAL_FACTOR} at a time; got {num_frames}"
        )
    for side, value in (("height", height), ("width", width)):
        if value < SPATIAL_FACTOR or value % SPATIAL_FACTOR:
            raise ValueError(f"`{side}`{where} must be a positive multiple of {SPATIAL_FACTOR}, got {value}")
