"""Tiled decoding for Kelp's causal VAE: working memory follows the tile size, not the frame size.

The latent-resolution stage (conv_in and the mid block, whose attention spans the frame) runs on whole frames: it
is small. The upsampling stages then run tile by tile, each tile through the whole clip a chunk of latent frames at
a time with its own causal cache (the stages after the last time upsampling two frames at a time), into one output
buffer, blended with linear ramps across the overlaps. A tile's pixels are exact where the tile extends past them
by the upsampling stages' reach (~70 pixels): half the overlap on each side.

Kelp's FrameGroupNorm normalises each frame with statistics of the whole frame, which a tile cannot see. So for
such VAEs the statistics are gathered first, in the decoder's order, without ever running a whole frame through
the upsampled stages: the norms before the last time upsampling take theirs on whole frames at low resolution (in
the pass that runs the mid block), and then each later norm gets one pass in which every tile runs through the
clip up to that norm and adds the moments of its own cells (the tiles' own cells cover the frame once). The tiles
are then decoded with those statistics. Memory follows the tile; the price is time, up to one more tiled decode
per norm (five for the bundled VAE). Wan's per-pixel RMS norm needs no such passes.

diffusers' `AutoencoderKLWan.tiled_decode` is not reused: it keeps every tile's whole-clip output before
blending, runs the mid-block attention per tile and lets each tile normalise with its own GroupNorm statistics.
"""

from __future__ import annotations

import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import CACHE_T

from core.cancellation import check_cancel
from core.models.vae import SPATIAL_FACTOR, TEMPORAL_FACTOR, FrameGroupNorm, decoder_pixels


# Frames per call in the stages after the last time upsampling. One would hold the least, but oneDNN's CPU conv3d
# runs ~8x slower for a single output frame than for two (measured on x86, 32 channels, 192x192).
FULL_RATE_SLICE = 2


def check_tiling(tile_size, tile_overlap) -> None:
    """tile_size: pixels (multiple of 8); tile_overlap: pixels (multiple of 8) shared by neighbouring tiles."""
    for name, value in (("tile_size", tile_size), ("tile_overlap", tile_overlap)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value % SPATIAL_FACTOR:
            raise ValueError(f"`{name}` must be a non-negative multiple of {SPATIAL_FACTOR} pixels, got {value!r}")
    if tile_size < 2 * SPATIAL_FACTOR or tile_overlap > tile_size // 2:
        raise ValueError(
            f"`tile_size` must be at least {2 * SPATIAL_FACTOR} and `tile_overlap` at most half of it, "
            f"got {tile_size} and {tile_overlap}"
        )


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Overlapping [start, stop) spans of at most `tile` covering range(length); the last one ends at `length`."""
    if length <= tile:
        return [(0, length)]
    starts = list(range(0, length - tile, tile - overlap)) + [length - tile]
    return [(start, start + tile) for start in starts]


def blend_weights(spans: list[tuple[int, int]], index: int, scale: int) -> torch.Tensor:
    """1-D weights (pixels) of span `index`: 1 inside, ramping down across its overlaps with its neighbours."""
    start, stop = spans[index]
    weights = torch.ones((stop - start) * scale)
    if index > 0:
        ramp = (spans[index - 1][1] - start) * scale
        weights[:ramp] = (torch.arange(ramp) + 0.5) / ramp
    if index + 1 < len(spans):
        ramp = (stop - spans[index + 1][0]) * scale
        down = (torch.arange(ramp, 0, -1) - 0.5) / ramp
        weights[len(weights) - ramp:] = torch.minimum(weights[len(weights) - ramp:], down)
    return weights


def chunk_bounds(num_latent: int, chunk_frames: int) -> list[tuple[int, int]]:
    """Latent frame ranges decoded per call: frame 0 alone (Wan's time upsampling needs it), then `chunk_frames`."""
    return [(0, 1)] + [(a, min(a + chunk_frames, num_latent)) for a in range(1, num_latent, chunk_frames)]


def pixel_frames(start: int, stop: int) -> tuple[int, int]:
    """Pixel frames [a, b) that latent frames [start, stop) decode to."""
    first = lambda k: 0 if k == 0 else 1 + TEMPORAL_FACTOR * (k - 1)  # noqa: E731
    return first(start), first(stop)


class _PassDone(Exception):
    """Raised where a statistics pass has what it came for: the rest of that piece of the decoder is not computed."""


class FrameStatistics:
    """Whole-frame GroupNorm statistics per norm and frame, then used by every tile. Installed on FrameGroupNorm
    instances as their forward.

    Passes fill them in the decoder's order. In a whole-frame pass (`whole`), a norm without statistics takes its own,
    as an untiled decode would. In a tile pass, the first norm without statistics is the pass's target: each tile
    adds the moments of its own cells (`core`, which tile the frame) and stops there, and `finish_pass` merges them.
    Every other norm normalises with the statistics already known, so a tile computes what a whole frame would.
    """

    def __init__(self):
        self.known: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # norm -> per frame (mean, var), (B, G)
        self.frames: dict[int, int] = {}  # norm -> frames it has seen in this tile (or in the whole-frame pass)
        self.whole = True
        self.target: int | None = None
        self.core: tuple[int, int, int, int, int, int] | None = None  # rows, columns (latent cells), tile h, w
        self.moments: list[tuple[float, torch.Tensor, torch.Tensor]] = []  # per frame (count, mean, M2), float64

    def start_pass(self, whole: bool) -> None:
        self.whole, self.target, self.moments, self.frames = whole, None, [], {}

    def start_tile(self, core: tuple[int, int, int, int, int, int]) -> None:
        self.core, self.frames = core, {}

    def finish_pass(self) -> bool:
        """Store the target's statistics; False when the pass met no norm without them (nothing left to gather)."""
        if self.target is None:
            return False
        self.known[self.target] = [(mean.float(), (m2 / count).float()) for count, mean, m2 in self.moments]
        return True

    def __call__(self, norm: FrameGroupNorm, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape  # (B, C, t, h, w)
        groups = x.float().reshape(b, norm.groups, c // norm.groups, t, h, w)
        key, first = id(norm), self.frames.get(id(norm), 0)
        self.frames[key] = first + t
        known = self.known.get(key, [])
        if len(known) >= first + t:
            mean = torch.stack([m for m, _ in known[first:first + t]], dim=-1)  # (B, G, t)
            var = torch.stack([v for _, v in known[first:first + t]], dim=-1)
        elif self.whole:  # a whole frame: its own statistics, kept for the tiles
            var, mean = torch.var_mean(groups, dim=(2, 4, 5), correction=0)  # (B, G, t)
            known.extend((mean[:, :, i], var[:, :, i]) for i in range(t))
            self.known[key] = known
        else:
            self._add_core_moments(key, groups, first)
            raise _PassDone
        shape = (b, norm.groups, 1, t, 1, 1)
        normed = (groups - mean.view(shape)) * torch.rsqrt(var.view(shape) + norm.eps)
        return normed.reshape(b, c, t, h, w).to(x.dtype) * norm.gamma + norm.bias

    def _add_core_moments(self, key: int, groups: torch.Tensor, first: int) -> None:
        """Merge the moments of this tile's own cells into the pass's per-frame moments (Chan et al.'s update)."""
        if self.target not in (None, key):
            raise RuntimeError("a tile pass met two norms without statistics: the passes are out of order")
        self.target = key
        r0, r1, c0, c1, tile_h, tile_w = self.core
        scale_h, scale_w = groups.shape[-2] // tile_h, groups.shape[-1] // tile_w  # layer pixels per latent cell
        cells = groups[..., r0 * scale_h:r1 * scale_h, c0 * scale_w:c1 * scale_w]  # (B, G, C/G, t, ch, cw)
        count = float(cells.shape[2] * cells.shape[4] * cells.shape[5])
        var, mean = torch.var_mean(cells, dim=(2, 4, 5), correction=0)  # (B, G, t)
        for i in range(groups.shape[3]):
            tile_mean, tile_m2 = mean[:, :, i].double(), var[:, :, i].double() * count
            if first + i == len(self.moments):
                self.moments.append((count, tile_mean, tile_m2))
                continue
            n, m, m2 = self.moments[first + i]
            total, delta = n + count, tile_mean - m
            self.moments[first + i] = (total, m + delta * count / total, m2 + tile_m2 + delta.square() * n * count / total)


def _cached_conv(conv, x: torch.Tensor, cache: list, index: list[int]) -> torch.Tensor:
    """A causal conv fed by the feature cache, as WanDecoder3d does for conv_in and conv_out."""
    i = index[0]
    keep = x[:, :, -CACHE_T:].clone()
    if keep.shape[2] < CACHE_T and cache[i] is not None:
        keep = torch.cat([cache[i][:, :, -1:].to(keep.device), keep], dim=2)
    out = conv(x, cache[i])
    cache[i], index[0] = keep, i + 1
    return out


def _full_rate_start(decoder) -> int:
    """Index of the first up block after the last time upsampling: from there on the chunk can be cut in time
    (the causal caches carry what each piece needs from the last)."""
    temporal = [i for i, block in enumerate(decoder.up_blocks) if _upsampler_mode(block) == "upsample3d"]
    return temporal[-1] + 1 if temporal else 0


def _resampler(block):
    """An up block's resampling module or None: Wan 2.1's up blocks hold `upsamplers`, Wan 2.2's residual ones
    `upsampler`."""
    resample = getattr(block, "upsampler", None)
    if resample is None and getattr(block, "upsamplers", None) is not None:
        resample = block.upsamplers[0]
    return resample


def _upsampler_mode(block) -> str | None:
    """"upsample3d", "upsample2d" or None."""
    resample = _resampler(block)
    return None if resample is None else resample.mode


def _upsample(decoder, x: torch.Tensor, cache: list, index: list[int], first_chunk: bool, head: bool = True):
    """The up blocks (and with `head` the output conv) on low features x (B, C, t, h, w); the stages at full frame
    rate run FULL_RATE_SLICE frames at a time (the same result with fewer activations). Returns pixel chunks; a
    statistics pass stops each piece where it has what it came for."""
    split = _full_rate_start(decoder)
    try:
        for up_block in decoder.up_blocks[:split]:
            x = up_block(x, feat_cache=cache, feat_idx=index, first_chunk=first_chunk)
    except _PassDone:
        return []
    resume, frames = index[0], []
    for f in range(0, x.shape[2], FULL_RATE_SLICE):
        index[0] = resume
        y = x[:, :, f:f + FULL_RATE_SLICE]
        try:
            for up_block in decoder.up_blocks[split:]:
                y = up_block(y, feat_cache=cache, feat_idx=index, first_chunk=first_chunk)
            y = decoder.nonlinearity(decoder.norm_out(y))
        except _PassDone:
            continue
        if head:
            frames.append(_cached_conv(decoder.conv_out, y, cache, index))  # (B, 3, f, H, W)
    return frames


def _stop_pass(*_):
    raise _PassDone


def _stream_whole_frames(vae, z: torch.Tensor, bounds, cancel, record: bool) -> torch.Tensor:
    """conv_in and the mid block over whole frames, causally by chunk: (B, z, T, h, w) -> (B, C, T, h, w). With
    `record`, the up blocks before the last time upsampling run too, on whole frames, so that their FrameGroupNorms
    take their statistics; the pass stops before that upsampling (whose output frames are the first large ones)."""
    decoder, cache, pieces = vae.decoder, [None] * vae._cached_conv_counts["decoder"], []
    split = _full_rate_start(decoder)
    stop = _resampler(decoder.up_blocks[split - 1]).register_forward_pre_hook(_stop_pass) if record and split else None
    try:
        for start, stop_frame in bounds:
            check_cancel(cancel)
            index = [0]
            with torch.no_grad():
                x = _cached_conv(decoder.conv_in, vae.post_quant_conv(z[:, :, start:stop_frame]), cache, index)
                x = decoder.mid_block(x, feat_cache=cache, feat_idx=index)
                pieces.append(x)
                if record:
                    _upsample(decoder, x, cache, index, first_chunk=start == 0, head=False)
    finally:
        if stop is not None:
            stop.remove()
    return torch.cat(pieces, dim=2)


def _own_cells(spans: list[tuple[int, int]], index: int) -> tuple[int, int]:
    """The cells [a, b) of span `index`, relative to its start, that no other span claims: the spans' own cells
    tile the axis, split halfway across each overlap."""
    start, stop = spans[index]
    a = start if index == 0 else (spans[index - 1][1] + start) // 2
    b = stop if index + 1 == len(spans) else (stop + spans[index + 1][0]) // 2
    return a - start, b - start


def _gather_tile_statistics(vae, low: torch.Tensor, bounds, spans_h, spans_w, statistics: FrameStatistics, cancel):
    """One pass per norm still without statistics, in the decoder's order: every tile runs through the clip up to
    that norm (with its own causal cache) and adds the moments of its own cells. Memory follows the tile; each pass
    costs up to one more tiled decode."""
    decoder = vae.decoder
    while True:
        statistics.start_pass(whole=False)
        for i, (h0, h1) in enumerate(spans_h):
            for j, (w0, w1) in enumerate(spans_w):
                statistics.start_tile((*_own_cells(spans_h, i), *_own_cells(spans_w, j), h1 - h0, w1 - w0))
                cache, tile = [None] * vae._cached_conv_counts["decoder"], low[..., h0:h1, w0:w1]
                for start, stop in bounds:
                    check_cancel(cancel)
                    with torch.no_grad():
                        _upsample(decoder, tile[:, :, start:stop], cache, [0], first_chunk=start == 0, head=False)
        if not statistics.finish_pass():
            return


def _decode_tile(vae, low: torch.Tensor, bounds, cancel):
    """Yield (latent start, latent stop, pixels (B, 3, f, h*8, w*8)) of one tile, with its own causal cache."""
    decoder, cache = vae.decoder, [None] * vae._cached_conv_counts["decoder"]
    for start, stop in bounds:
        check_cancel(cancel)
        with torch.no_grad():
            frames = _upsample(decoder, low[:, :, start:stop], cache, [0], first_chunk=start == 0)
        yield start, stop, decoder_pixels(vae, torch.cat(frames, dim=2))


def decode_tiled(
    vae, z: torch.Tensor, tile_size: int, tile_overlap: int, chunk_frames: int = 1, cancel=None,
    out_device: torch.device | str | None = None, out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Pixels (B, 3, F, H, W) in [-1, 1] from latents `z` (B, z, T, h, w) in the VAE's own scale (not normalized),
    in `out_dtype` whatever the VAE's precision.

    The blended clip is the one buffer whose size follows the clip rather than the tile. `out_device` holds it
    (default: z's device): on a GPU, "cpu" keeps it in host memory, so that the GPU holds a tile's work alone.
    `out_dtype` float16 halves it: each pixel is the sum of at most a few weighted tile values, and float16's 11 bits
    are finer than the 8 bits a video frame keeps (see test_vae_tiling)."""
    check_tiling(tile_size, tile_overlap)
    if out_dtype not in (torch.float32, torch.float16):
        raise ValueError(f"`out_dtype` must be torch.float32 or torch.float16, got {out_dtype!r}")
    batch, _, num_latent, height, width = z.shape
    tile, overlap = tile_size // SPATIAL_FACTOR, tile_overlap // SPATIAL_FACTOR  # latent cells
    spans_h, spans_w = tile_spans(height, tile, overlap), tile_spans(width, tile, overlap)
    bounds = chunk_bounds(num_latent, chunk_frames)
    tiled_norms = [m for part in (vae.decoder.up_blocks, vae.decoder.norm_out) for m in part.modules()
                   if isinstance(m, FrameGroupNorm)]
    share = bool(tiled_norms) and (len(spans_h) > 1 or len(spans_w) > 1)
    statistics = FrameStatistics()
    if share:
        for norm in tiled_norms:
            norm.forward = lambda x, norm=norm: statistics(norm, x)  # an instance attribute, removed below
    num_frames = pixel_frames(0, num_latent)[1]
    out_device = torch.device(out_device) if out_device is not None else z.device
    out = torch.zeros(batch, 3, num_frames, height * SPATIAL_FACTOR, width * SPATIAL_FACTOR, device=out_device,
                      dtype=out_dtype)
    tiles = [(i, j) for i in range(len(spans_h)) for j in range(len(spans_w))]
    pixel_rows = [slice(h0 * SPATIAL_FACTOR, h1 * SPATIAL_FACTOR) for h0, h1 in spans_h]
    pixel_cols = [slice(w0 * SPATIAL_FACTOR, w1 * SPATIAL_FACTOR) for w0, w1 in spans_w]
    ramps = {(i, j): blend_weights(spans_h, i, SPATIAL_FACTOR)[:, None] * blend_weights(spans_w, j, SPATIAL_FACTOR)
             for i, j in tiles}  # (th*8, tw*8)
    total_weight = torch.zeros(height * SPATIAL_FACTOR, width * SPATIAL_FACTOR)
    for i, j in tiles:
        total_weight[pixel_rows[i], pixel_cols[j]] += ramps[i, j]
    try:
        low = _stream_whole_frames(vae, z, bounds, cancel, record=share)  # (B, C, T, h, w)
        if share:
            _gather_tile_statistics(vae, low, bounds, spans_h, spans_w, statistics, cancel)
            statistics.start_pass(whole=False)
        for i, j in tiles:
            (h0, h1), (w0, w1), rows, cols = spans_h[i], spans_w[j], pixel_rows[i], pixel_cols[j]
            statistics.start_tile((*_own_cells(spans_h, i), *_own_cells(spans_w, j), h1 - h0, w1 - w0))
            # Each tile's share of its pixels, normalised up front: the buffer only ever adds finished values.
            weight = (ramps[i, j] / total_weight[rows, cols]).to(out_device)
            for start, stop, pixels in _decode_tile(vae, low[..., h0:h1, w0:w1], bounds, cancel):
                a, b = pixel_frames(start, stop)
                out[:, :, a:b, rows, cols] += (pixels.to(out_device, torch.float32) * weight).to(out_dtype)
    finally:
        if share:
            for norm in tiled_norms:
                del norm.forward
    return out.clamp_(-1.0, 1.0)  # in place: a long clip's buffer is large
