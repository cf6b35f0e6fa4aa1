"""The first-frame shortcut of the causal VAE convolution equals diffusers' WanCausalConv3d exactly."""

import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

from core.models.causal_conv import FirstFrameCausalConv3d, use_first_frame_conv
from core.models.vae import build_vae, decode_latents, encode_video


@pytest.mark.parametrize("kernel, padding, stride", [(3, 1, 1), ((3, 3, 3), (1, 1, 1), (1, 2, 2)), (1, 0, 1)])
def test_single_frame_matches_the_3d_convolution(kernel, padding, stride):
    torch.manual_seed(0)
    reference = WanCausalConv3d(6, 5, kernel, stride=stride, padding=padding)
    fast = WanCausalConv3d(6, 5, kernel, stride=stride, padding=padding)
    fast.load_state_dict(reference.state_dict())
    use_first_frame_conv(fast)
    assert type(fast) is FirstFrameCausalConv3d
    frame = torch.randn(2, 6, 1, 9, 11)
    torch.testing.assert_close(fast(frame), reference(frame), atol=1e-5, rtol=1e-5)
    clip, cache = torch.randn(2, 6, 4, 9, 11), torch.randn(2, 6, 2, 9, 11)  # other calls take the 3D path
    torch.testing.assert_close(fast(clip, cache), reference(clip, cache), atol=1e-5, rtol=1e-5)


def test_vae_round_trip_is_unchanged_by_the_shortcut():
    torch.manual_seed(0)
    vae = build_vae("tiny")
    assert any(type(m) is FirstFrameCausalConv3d for m in vae.modules())
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    latents = encode_video(vae, video)
    decoded = decode_latents(vae, latents)
    for module in vae.modules():  # back to diffusers' own class
        if type(module) is FirstFrameCausalConv3d:
            module.__class__ = WanCausalConv3d
    torch.testing.assert_close(encode_video(vae, video), latents, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(decode_latents(vae, latents), decoded, atol=1e-5, rtol=1e-5)
