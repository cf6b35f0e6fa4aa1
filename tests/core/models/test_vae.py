"""Kelp's causal VAE, tiny, in both layouts (Wan 2.1's, and Wan 2.2's residual one with a patch fold that the
bundled model uses): shapes, causality, chunked decoding, cancellation and save/load."""

import inspect
import threading

import pytest
import torch
from diffusers import AutoencoderKLWan

from core.cancellation import GenerationCancelled
from core.models.vae import (
    VAE_PRESETS,
    FrameGroupNorm,
    VAEConfig,
    build_vae,
    decode_latents,
    encode_video,
    iter_decode,
    latent_shape,
    load_vae_folder,
)


TINY_RESIDUAL = VAEConfig(base_dim=8, z_dim=4, num_res_blocks=1, dim_mult=(1, 2, 2), temperal_downsample=(True, True),
                          is_residual=True, patch_size=2, norm="group")  # the "small" preset's layout, smaller


@pytest.fixture(scope="module", params=["tiny", TINY_RESIDUAL], ids=["wan2.1-layout", "residual-patch2"])
def vae(request):
    torch.manual_seed(0)
    return build_vae(request.param)


def clip(frames: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, frames, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1  # (1, 3, F, 32, 32)


def latents(frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 4, frames, 4, 4, generator=torch.Generator().manual_seed(seed))  # (B, z, T, 4, 4)


def reference_decode(vae, normalized: torch.Tensor) -> torch.Tensor:
    """diffusers' own decode of Kelp-normalized latents."""
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        return vae.decode(normalized * std + mean).sample


@pytest.mark.parametrize("frames, latent_frames", [(1, 1), (9, 3)])
def test_round_trip_shapes(vae, frames, latent_frames):
    z = encode_video(vae, clip(frames))
    assert z.shape == (1, 4, latent_frames, 4, 4)
    assert z.shape[1:] == latent_shape(frames, 32, 32, z_dim=4)
    assert decode_latents(vae, z).shape == (1, 3, frames, 32, 32)


def test_encoding_is_causal(vae):
    video = clip(9)
    changed = video.clone()
    changed[:, :, 5:] = clip(9, seed=1)[:, :, 5:]
    before, after = encode_video(vae, video), encode_video(vae, changed)
    assert torch.equal(before[:, :, :2], after[:, :, :2])  # latent 0 = frame 0, latent 1 = frames 1..4
    assert not torch.allclose(before[:, :, 2], after[:, :, 2])


def test_decoding_is_causal(vae):
    z = latents(3)
    changed = z.clone()
    changed[:, :, 2] = latents(1, seed=1)[:, :, 0]
    before, after = decode_latents(vae, z), decode_latents(vae, changed)
    assert torch.equal(before[:, :, :5], after[:, :, :5])
    assert not torch.allclose(before[:, :, 5:], after[:, :, 5:])


def test_iter_decode_matches_diffusers_decode(vae):
    z = latents(4, batch=2)
    reference = reference_decode(vae, z)
    chunks = list(iter_decode(vae, z, chunk_frames=1))
    assert [c.shape[2] for c in chunks] == [1, 4, 4, 4]
    torch.testing.assert_close(torch.cat(chunks, dim=2), reference, atol=1e-5, rtol=1e-5)  # oneDNN rounding


@pytest.mark.parametrize("chunk_frames, sizes", [(2, [5, 8]), (3, [9, 4]), (10, [13])])
def test_multi_frame_chunks_match_single_frame_chunks(vae, chunk_frames, sizes):
    z = latents(4, batch=2)
    chunks = list(iter_decode(vae, z, chunk_frames=chunk_frames))
    assert [c.shape[2] for c in chunks] == sizes
    torch.testing.assert_close(torch.cat(chunks, dim=2), decode_latents(vae, z), atol=1e-5, rtol=0)


def test_decoded_pixels_are_in_range(vae):
    pixels = decode_latents(vae, latents(3) * 10)  # large latents push an untrained decoder past [-1, 1]
    assert pixels.min() >= -1.0 and pixels.max() <= 1.0


def test_decode_undoes_the_latent_normalization():
    torch.manual_seed(0)
    plain = build_vae("tiny")
    shifted = build_vae(VAEConfig(base_dim=8, z_dim=4, num_res_blocks=1, norm="group", latents_mean=(1, -2, 3, 0.5),
                                  latents_std=(2, 0.5, 1, 3)))
    shifted.load_state_dict(plain.state_dict())
    video = clip(5)
    z_plain, z_shifted = encode_video(plain, video), encode_video(shifted, video)
    assert not torch.allclose(z_plain, z_shifted)
    torch.testing.assert_close(decode_latents(shifted, z_shifted), decode_latents(plain, z_plain))


def test_cancel_stops_decoding_and_leaves_the_vae_reusable(vae):
    z = latents(4)
    cancel = threading.Event()
    chunks = iter_decode(vae, z, cancel=cancel)
    next(chunks)
    cancel.set()
    with pytest.raises(GenerationCancelled):
        next(chunks)
    assert all(entry is None for entry in vae._feat_map)
    # diffusers' decode feeds the convolutions other chunk shapes, so oneDNN may round differently
    torch.testing.assert_close(decode_latents(vae, z), reference_decode(vae, z), atol=1e-5, rtol=1e-5)


def test_sampling_the_posterior_is_seeded(vae):
    video = clip(5)
    first = encode_video(vae, video, sample=True, generator=torch.Generator().manual_seed(3))
    again = encode_video(vae, video, sample=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert not torch.equal(first, encode_video(vae, video))


@pytest.mark.parametrize("frames, height, bad", [(8, 32, "num_frames"), (9, 60, "height")])
def test_bad_sizes_name_the_argument_and_value(vae, frames, height, bad):
    value = frames if bad == "num_frames" else height
    with pytest.raises(ValueError, match=rf"`{bad}`.*got {value}"):
        latent_shape(frames, height, 32, z_dim=4)
    with pytest.raises(ValueError, match=rf"`{bad}` of `video`.*got {value}"):
        encode_video(vae, torch.zeros(1, 3, frames, height, 32))


def test_bad_decode_arguments_fail_at_the_call(vae):
    with pytest.raises(ValueError, match="`latents`"):
        iter_decode(vae, torch.zeros(1, 5, 2, 4, 4))
    with pytest.raises(ValueError, match="`chunk_frames`.*0"):
        iter_decode(vae, latents(2), chunk_frames=0)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="'nope'") as error:
        build_vae("nope")
    for name in VAE_PRESETS:
        assert name in str(error.value)


def test_config_fills_statistics_and_rejects_mismatches():
    kwargs = VAEConfig(base_dim=8, z_dim=4, num_res_blocks=1).to_diffusers_kwargs()
    assert kwargs["latents_mean"] == [0.0] * 4 and kwargs["latents_std"] == [1.0] * 4
    assert kwargs["dim_mult"] == [1, 2, 4, 4]
    with pytest.raises(ValueError, match="`latents_mean`"):
        VAEConfig(base_dim=8, z_dim=4, num_res_blocks=1, latents_mean=(0.0,))
    with pytest.raises(ValueError, match="`temperal_downsample`"):
        VAEConfig(base_dim=8, z_dim=4, num_res_blocks=1, temperal_downsample=(True, True, True))
    with pytest.raises(ValueError, match=r"`patch_size` 2 .* must give 8x spatial compression"):
        VAEConfig(base_dim=8, z_dim=4, num_res_blocks=1, patch_size=2)  # 2 x 2**3 = 16x
    with pytest.raises(ValueError, match="`temperal_downsample` must have 2 entries"):
        VAEConfig(base_dim=8, z_dim=4, num_res_blocks=1, dim_mult=(1, 2, 2), patch_size=2)
    residual = TINY_RESIDUAL.to_diffusers_kwargs()
    assert residual["in_channels"] == residual["out_channels"] == 12  # RGB folded 2x2


def test_small_preset_is_the_residual_patch_folded_layout():
    vae = build_vae("small")
    assert vae.config.is_residual and vae.config.patch_size == 2
    assert latent_shape(17, 128, 128, z_dim=16) == (16, 5, 16, 16)
    z = encode_video(vae, torch.zeros(1, 3, 5, 16, 16))
    assert z.shape == (1, 16, 2, 2, 2)


def test_wan21_preset_is_diffusers_wan21_layout():
    defaults = {
        name: p.default for name, p in inspect.signature(AutoencoderKLWan.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    kwargs = VAE_PRESETS["wan2.1"].to_diffusers_kwargs()
    assert {name: defaults[name] for name in kwargs} == kwargs


def test_save_and_load_through_safetensors(vae, tmp_path):
    vae.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = load_vae_folder(tmp_path)  # with the per-frame GroupNorm it was built with
    assert any(isinstance(m, FrameGroupNorm) for m in loaded.modules())
    video = clip(5)
    z = encode_video(vae, video)
    assert torch.equal(encode_video(loaded, video), z)
    assert torch.equal(decode_latents(loaded, z), decode_latents(vae, z))


def test_kelp_presets_train_from_scratch_without_losing_their_latent():
    """Kelp's presets use a per-frame GroupNorm: with Wan's RMS norm a VAE trained from scratch at these sizes
    collapses after one optimizer step to one flat colour whatever its latent, for good (swap sensitivity ~3e-6,
    falling). With GroupNorm the decoder dips too (~2e-4 for ~30 steps), then comes to depend on its latent."""
    from training.data.toy_world import toy_clip

    torch.manual_seed(0)
    vae = build_vae("small").train()
    images = torch.stack([torch.from_numpy(toy_clip(seed, width=32, height=32, num_frames=1).frames)
                          .permute(3, 0, 1, 2).float() / 127.5 - 1 for seed in range(4)])  # (4, 3, 1, 32, 32)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    for _ in range(60):
        loss = (vae.decode(vae.encode(images).latent_dist.mode()).sample - images).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        latents = vae.encode(images).latent_dist.mode()
        swapped = (vae.decode(latents).sample - vae.decode(latents.flip(0)).sample).abs().mean().item()
    print(f"swap sensitivity after 60 steps: {swapped:.2e}")
    assert swapped > 1e-2, f"the decoder ignores its latent (swap changes the output by {swapped:.2e})"



@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_group_norm_keeps_the_colour_of_a_flat_frame(preset):
    """Instance norm (a group per channel) maps every flat frame to the same output, whatever its colour, and a VAE
    built so learns shapes but not hues. Every norm keeps several channels a group."""
    vae = build_vae(preset)
    norms = [m for m in vae.modules() if isinstance(m, FrameGroupNorm)]
    assert norms
    for norm in norms:
        channels = norm.gamma.shape[0]
        assert channels // norm.groups >= FrameGroupNorm.CHANNELS_PER_GROUP
        shape = (1, channels, 2, 4, 4) if norm.gamma.ndim == 4 else (1, channels, 4, 4)  # video or image norms
        first, second = (torch.randn(channels).view(1, channels, *[1] * (len(shape) - 2)).expand(shape)
                         for _ in range(2))
        assert not torch.allclose(norm(first), norm(second), atol=1e-3)
