"""The VAE in half precision: the bundled VAE in bfloat16 (as the engine runs it on CUDA GPUs) encodes and decodes to
float32 tensors close to its float32 results, and the engine picks the precision by device."""

import pytest
import torch

from core.model_loader import load_model, resolve_model
from core.memory import vae_dtype_for
from core.models.vae import decode_latents, encode_video, iter_decode
from core.models.vae_tiling import decode_tiled
from training.data.toy_world import toy_clip
from training.eval.metrics import psnr


@pytest.fixture(scope="module")
def vaes():
    source = resolve_model("kelp-small")  # the bundled model: a trained VAE, so the comparison means something
    full = load_model(source).vae
    half = load_model(source, vae_dtype=torch.bfloat16).vae
    return full, half


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    frames = toy_clip(3, width=64, height=64, num_frames=9).frames  # (T, H, W, 3) uint8
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1)  # (1, 3, T, H, W)


def to_uint8(pixels: torch.Tensor):
    """(1, 3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    return ((pixels[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def test_load_model_puts_the_vae_in_the_asked_precision(vaes):
    full, half = vaes
    assert {p.dtype for p in full.parameters()} == {torch.float32}
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_bfloat16_vae_round_trip_is_close_to_float32(vaes, video):
    full, half = vaes
    latents_full, latents_half = encode_video(full, video), encode_video(half, video)
    assert latents_half.dtype == torch.float32  # latents leave the VAE in float32 whatever its precision
    assert torch.nn.functional.cosine_similarity(latents_full.flatten(), latents_half.flatten(), dim=0) > 0.99
    pixels_full = decode_latents(full, latents_full)
    pixels_half = decode_latents(half, latents_full)
    assert pixels_half.dtype == torch.float32 and pixels_half.shape == pixels_full.shape
    assert psnr(to_uint8(pixels_half), to_uint8(pixels_full)) >= 35.0
    assert psnr(to_uint8(pixels_full), to_uint8(video)) > 18.0  # and the VAE does reconstruct the clip


def test_bfloat16_tiled_decode_yields_float32(vaes, video):
    _, half = vaes
    latents = encode_video(half, video)
    chunks = list(iter_decode(half, latents, tile_size=256))  # one tile at 64x64: the tiled code path all the same
    assert all(c.dtype == torch.float32 for c in chunks)
    # The blend buffer comes back float32, not rounded to the VAE's bfloat16 on the way.
    assert decode_tiled(half, latents.to(torch.bfloat16), 256, 128).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_engine_on_cuda_generates_with_a_bfloat16_vae(tmp_path):
    from core.pipeline import Engine
    from core.request import GenerationRequest

    engine = Engine(output_dir=tmp_path, device="cuda")
    result = engine.generate(GenerationRequest(prompt="a red circle moving right", model="kelp-small", width=128,
                                               height=128, num_frames=9, steps=4, seed=0))
    assert result.metadata["settings"]["vae_dtype"] == str(vae_dtype_for("cuda"))
    assert result.video_path.stat().st_size > 0
