"""A faster first frame for the causal VAE's 3D convolutions, exactly equal to diffusers' WanCausalConv3d.

A causal convolution pads time with k - 1 zero frames in front. For a lone frame without cached context (an
image, or the first frame of a clip, which the VAE codes alone) every temporal tap but the last multiplies zeros,
so the output is a 2D convolution with the last tap. PyTorch's CPU conv3d for such thin inputs is ~3.5x slower
than conv2d, and images are most of VAE training.

On the CPU, PyTorch sends a float32 conv3d to oneDNN only when batch x channels x frames x height exceeds 20480
and otherwise to its im2col `slow_conv3d`, which is 2-3.5x slower for the VAE's thin chunks (64 channels, 1-2
frames plus the causal cache, 48-96 px: 13 against 6 ms and 87 against 24 ms measured on this 2-core x86 VM, one
thread). Every float32 CPU call here goes to oneDNN, whose results match to float rounding (and which has a backward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d


class FirstFrameCausalConv3d(WanCausalConv3d):
    """WanCausalConv3d whose single-frame, no-cache call runs as conv2d; the same parameters and state-dict keys."""

    def forward(self, x: torch.Tensor, cache_x: torch.Tensor | None = None) -> torch.Tensor:
        time_pad = self._padding[4]
        if (x.shape[2] == 1 and cache_x is None and time_pad == self.kernel_size[0] - 1
                and self.stride[0] == 1 and self.dilation[0] == 1):
            frame = F.pad(x[:, :, 0], self._padding[:4])  # the spatial zero padding, as the 3D path applies it
            out = F.conv2d(frame, self.weight[:, :, -1], self.bias, stride=self.stride[1:], dilation=self.dilation[1:])
            return out.unsqueeze(2)
        return super().forward(x, cache_x)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and self.padding_mode == "zeros"
                and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
            return torch.ops.aten.mkldnn_convolution(
                x, weight, bias, list(self.padding), list(self.stride), list(self.dilation), self.groups
            )
        return super()._conv_forward(x, weight, bias)


def use_first_frame_conv(vae: torch.nn.Module) -> torch.nn.Module:
    """Switch every WanCausalConv3d of `vae` to FirstFrameCausalConv3d in place (weights untouched)."""
    for module in vae.modules():
        if type(module) is WanCausalConv3d:
            module.__class__ = FirstFrameCausalConv3d
    return vae
