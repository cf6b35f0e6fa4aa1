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


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs PyTorch built with oneDNN")
def test_cpu_chunks_go_to_onednn_not_slow_conv3d():
    torch.manual_seed(0)
    vae = build_vae("tiny")
    latents = torch.randn(1, vae.config.z_dim, 3, 6, 6)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        decode_latents(vae, latents)
    ops = {event.key for event in profile.key_averages()}
    assert "aten::mkldnn_convolution" in ops
    assert "aten::slow_conv3d_forward" not in ops  # PyTorch's own choice for these thin inputs


def test_onednn_route_has_the_same_gradients():
    torch.manual_seed(0)
    reference = WanCausalConv3d(8, 8, 3, padding=1)
    fast = use_first_frame_conv(WanCausalConv3d(8, 8, 3, padding=1))
    fast.load_state_dict(reference.state_dict())
    clip, cache = torch.randn(1, 8, 2, 10, 10), torch.randn(1, 8, 2, 10, 10)
    for module in (reference, fast):
        module(clip, cache).square().sum().backward()
    torch.testing.assert_close(fast.weight.grad, reference.weight.grad, atol=1e-4, rtol=1e-4)
