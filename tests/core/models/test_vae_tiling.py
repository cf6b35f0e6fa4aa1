"""Tiled VAE decoding matches the untiled decode (PSNR >= 40 dB), for Wan's RMS norm and Kelp's FrameGroupNorm, and
for the residual, patch-folded layout of the bundled model."""

import pytest
import torch

from core.models.vae import VAEConfig, build_vae, decode_latents, iter_decode
from core.models.vae_tiling import blend_weights, check_tiling, decode_tiled, tile_spans


def tiny_vae(norm: str, residual: bool = False):
    torch.manual_seed(0)
    if residual:  # Wan 2.2's blocks with parameter-free shortcuts, RGB folded 2x2 into channels
        return build_vae(VAEConfig(base_dim=8, z_dim=4, num_res_blocks=1, dim_mult=(1, 2, 2),
                                   temperal_downsample=(True, True), is_residual=True, patch_size=2, norm=norm))
    return build_vae(VAEConfig(base_dim=8, z_dim=4, num_res_blocks=1, norm=norm))


def latents(frames: int, height: int, width: int) -> torch.Tensor:
    return torch.randn(1, 4, frames, height, width, generator=torch.Generator().manual_seed(1))  # (1, z, T, h, w)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return (10 * torch.log10(4 / (a - b).pow(2).mean())).item()  # pixels in [-1, 1]: peak-to-peak 2


def test_spans_cover_the_axis_and_blend_to_one():
    spans = tile_spans(40, 16, 8)
    assert spans[0][0] == 0 and spans[-1][1] == 40 and all(b - a == 16 for a, b in spans)
    assert all(nxt[0] < cur[1] for cur, nxt in zip(spans, spans[1:]))  # neighbours overlap
    assert tile_spans(10, 16, 8) == [(0, 10)]
    weights = [blend_weights(spans, i, 1) for i in range(len(spans))]
    total = torch.zeros(40)
    for (a, b), w in zip(spans, weights):
        total[a:b] += w
    assert torch.allclose(total, torch.ones(40))  # linear ramps across equal overlaps sum to one


@pytest.mark.parametrize("norm, residual", [("rms", False), ("group", False), ("group", True)])
def test_tiled_decode_matches_untiled(norm, residual):
    vae, z = tiny_vae(norm, residual), latents(2, 16, 32)  # 128 x 256 pixels: two tiles side by side
    reference = decode_latents(vae, z)
    tiled = decode_latents(vae, z, tile_size=192, tile_overlap=96)
    assert tiled.shape == reference.shape
    assert psnr(tiled, reference) >= 40
    # Without overlap the tile borders are plainly wrong: the bound above is not met by accident.
    assert psnr(decode_tiled(vae, z, 128, 0), reference) < 35


def test_frame_within_one_tile_decodes_as_untiled_and_chunks_line_up():
    vae, z = tiny_vae("group"), latents(3, 4, 4)
    reference = list(iter_decode(vae, z, chunk_frames=2))
    tiled = list(iter_decode(vae, z, chunk_frames=2, tile_size=64, tile_overlap=16))
    assert [c.shape for c in tiled] == [c.shape for c in reference]
    assert psnr(torch.cat(tiled, 2), torch.cat(reference, 2)) > 90  # same maths, one tile


def test_uneven_tiles_where_three_overlap_still_blend_to_the_untiled_clip():
    """44 cells in tiles of 20 overlapping by 10: the last tile is pulled back to end at the edge, so three tiles
    share some pixels and the ramps alone do not sum to one there; the weights are normalised before blending."""
    assert tile_spans(44, 20, 10) == [(0, 20), (10, 30), (20, 40), (24, 44)]
    vae, z = tiny_vae("rms", residual=True), latents(2, 8, 44)
    assert psnr(decode_latents(vae, z, tile_size=160, tile_overlap=80), decode_latents(vae, z)) >= 40


def test_streamed_tiles_wait_in_half_precision_within_a_fraction_of_a_video_level():
    """The engine's tiled iter_decode keeps the clip as float16 (half the bytes of decode_latents' float32):
    its chunks are float32 and differ from the float32 clip by far less than one 8-bit level (2/255)."""
    vae, z = tiny_vae("group", residual=True), latents(3, 8, 40)
    reference = decode_latents(vae, z, tile_size=160, tile_overlap=80)
    chunks = list(iter_decode(vae, z, tile_size=160, tile_overlap=80))
    streamed = torch.cat(chunks, dim=2)
    assert all(chunk.dtype == torch.float32 for chunk in chunks) and streamed.shape == reference.shape
    assert 0 < (streamed - reference).abs().max().item() <= 2 / 255 / 4  # rounded, but a quarter level at most
    assert decode_tiled(vae, z, 160, 80, out_dtype=torch.float16).dtype == torch.float16
    with pytest.raises(ValueError, match="out_dtype"):
        decode_tiled(vae, z, 160, 80, out_dtype=torch.bfloat16)


def test_default_decode_is_unchanged():
    vae, z = tiny_vae("group"), latents(2, 4, 4)
    assert torch.equal(decode_latents(vae, z), decode_latents(vae, z, tile_size=None))


@pytest.mark.parametrize("size, overlap", [(12, 0), (64, 40), (True, 0), (64, -8), (8, 0)])
def test_bad_tiling_is_refused(size, overlap):
    with pytest.raises(ValueError, match="tile_"):
        check_tiling(size, overlap)
    with pytest.raises(ValueError, match="tile_"):
        iter_decode(tiny_vae("rms"), latents(1, 4, 4), tile_size=size, tile_overlap=overlap)


def test_group_norm_statistics_are_whole_frame_over_a_grid_of_tiles():
    """3 x 3 tiles: each FrameGroupNorm gets its frame's statistics from the tiles' own cells, pass by pass."""
    vae, z = tiny_vae("group", residual=True), latents(3, 40, 40)  # 320 x 320 pixels
    reference = decode_latents(vae, z)
    assert psnr(decode_latents(vae, z, tile_size=160, tile_overlap=80), reference) >= 45


def test_upsampled_stages_never_see_a_whole_frame():
    """Memory follows the tile: after the latent-resolution stage, no layer (the statistics passes included) runs on
    more than a tile."""
    vae, z = tiny_vae("group", residual=True), latents(3, 40, 40)
    decoder, widths = vae.decoder, []
    split = next(i for i, block in reversed(list(enumerate(decoder.up_blocks))) if block.upsampler is not None
                 and block.upsampler.mode == "upsample3d") + 1
    layers = [decoder.up_blocks[split - 1].upsampler, *decoder.up_blocks[split:], decoder.norm_out, decoder.conv_out]
    hooks = [layer.register_forward_pre_hook(lambda _, args: widths.append(args[0].shape[-1])) for layer in layers]
    try:
        decode_latents(vae, z, tile_size=160, tile_overlap=80)  # tiles of 20 latent cells in a 40-cell frame
    finally:
        for hook in hooks:
            hook.remove()
    scale = vae.config.scale_factor_spatial // vae.config.patch_size  # decoder pixels per latent cell at the top
    assert widths and max(widths) <= 20 * scale  # a whole frame would be 40 * scale wide


@pytest.mark.gpu
def test_tiled_streaming_on_cuda_keeps_the_clip_in_host_memory():
    """On a GPU the engine's tiled decode blends the clip in host memory: the GPU's peak follows the tile, far under
    the clip's size, and the chunks equal decode_latents' tiled clip."""
    vae, z = tiny_vae("group", residual=True).cuda(), latents(9, 40, 40).cuda()  # 33 frames of 320 x 320
    reference = decode_latents(vae, z, tile_size=160, tile_overlap=80).cpu()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    chunks = list(iter_decode(vae, z, tile_size=160, tile_overlap=80))
    peak = torch.cuda.max_memory_allocated() - before
    assert all(chunk.device.type == "cpu" for chunk in chunks)
    torch.testing.assert_close(torch.cat(chunks, dim=2), reference, atol=2 / 255 / 4, rtol=0)  # float16 in between
    assert peak < reference.numel() * 4 / 2  # the float32 clip alone would be twice this
