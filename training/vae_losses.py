"""Losses for training the video VAE without any pretrained network (no LPIPS/VGG weights can be fetched here).

The perceptual term is structural: 1 - SSIM at full and half size plus an L1 between image gradients, which
reward sharp, correctly placed edges where a plain L1 would accept blur. An optional adversarial term uses a
small 3D PatchGAN with the hinge loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _frames_as_images(video: torch.Tensor) -> torch.Tensor:
    return video.transpose(1, 2).flatten(0, 1)  # (B, 3, F, H, W) -> (B * F, 3, H, W)


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()  # (C, 1, k, k)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of images (N, C, H, W) in [-1, 1] (Wang et al. 2004), Gaussian window, no padding."""
    x, y = (x + 1) / 2, (y + 1) / 2  # data range 1
    size = min(window, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2  # odd
    kernel = _gaussian_window(size, sigma, x.shape[1], x)
    blur = lambda t: F.conv2d(t, kernel, groups=x.shape[1])  # noqa: E731
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.pow(2)
    var_y = blur(y * y) - mu_y.pow(2)
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2))
    return score.mean()


def structural_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - SSIM per frame, averaged over full and half resolution. Videos (B, 3, F, H, W)."""
    x, y = _frames_as_images(reconstruction), _frames_as_images(target)
    full = 1 - ssim(x, y)
    half = 1 - ssim(F.avg_pool2d(x, 2), F.avg_pool2d(y, 2))
    return (full + half) / 2


def edge_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between finite differences along width, height and (for video) time. Videos (B, 3, F, H, W)."""
    total = 0.0
    dims = (-1, -2, -3) if target.shape[2] > 1 else (-1, -2)
    for dim in dims:
        total = total + (reconstruction.diff(dim=dim) - target.diff(dim=dim)).abs().mean()
    return total / len(dims)


def kl_loss(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per latent element."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()


class PatchDiscriminator3D(nn.Module):
    """A 3D PatchGAN: real/fake logits (B, 1, F, H/2^n, W/2^n) for overlapping space-time patches of a video.

    Strides halve space only, so a one-frame video (an image) works too.
    """

    def __init__(self, channels: int = 32, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv3d(3, channels, (3, 4, 4), (1, 2, 2), (1, 1, 1)), nn.LeakyReLU(0.2)]
        width = channels
        for _ in range(layers - 1):
            blocks += [nn.Conv3d(width, width * 2, (3, 4, 4), (1, 2, 2), (1, 1, 1)),
                       nn.GroupNorm(8, width * 2), nn.LeakyReLU(0.2)]
            width *= 2
        blocks.append(nn.Conv3d(width, 1, 3, 1, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()
