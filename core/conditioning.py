"""Given frames for a request: images and clips fitted to the output size, encoded, and masked.

The model receives the clean latents of the given frames (zeros elsewhere) and a binary mask, both
concatenated to the noisy latent. T2V gives nothing, I2V the first frame, first+last frame both ends,
extension the frames that end the clip being extended.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from core.models.vae import encode_video
from core.request import ValidatedRequest


@dataclass
class Condition:
    latents: torch.Tensor  # (1, C, T, h, w): clean latents of the given frames, zeros elsewhere
    mask: torch.Tensor  # (1, 1, T, h, w): 1 on given latent frames
    prefix_frames: np.ndarray | None = None  # (N, H, W, 3) uint8: the clip being extended, fitted to size


def fit_image(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover width x height keeping the aspect ratio, then crop around the centre."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def load_image_frame(path: str, width: int, height: int) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(fit_image(image, width, height))  # (H, W, 3) uint8


def frames_to_video_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, 3, T, H, W) float in [-1, 1]."""
    video = torch.from_numpy(np.array(frames, copy=True)).float().div(127.5).sub(1.0)  # (T, H, W, 3)
    return video.permute(3, 0, 1, 2)[None]


def video_tensor_to_frames(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    pixels = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).cpu().numpy()


def build_condition(validated: ValidatedRequest, vae, latent_shape: tuple[int, int, int, int]) -> Condition:
    """latent_shape: (C, T, h, w) of the whole request (all shots)."""
    r = validated.request
    channels, frames, lat_h, lat_w = latent_shape
    device = next(vae.parameters()).device
    latents = torch.zeros(1, channels, frames, lat_h, lat_w, device=device)
    mask = torch.zeros(1, 1, frames, lat_h, lat_w, device=device)
    prefix = None

    def encode(pixels: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return encode_video(vae, frames_to_video_tensor(pixels).to(device))  # (1, C, t, h, w)

    if r.extend_video is not None:
        from core.video_io import read_video_frames

        clip, _ = read_video_frames(r.extend_video)
        prefix = np.stack([np.asarray(fit_image(Image.fromarray(f), r.width, r.height)) for f in clip])
        context = encode(prefix[-r.extend_context_frames:])  # (1, C, t, h, w)
        latents[:, :, : context.shape[2]] = context
        mask[:, :, : context.shape[2]] = 1
    elif r.last_image is not None:
        window = np.zeros((r.num_frames, r.height, r.width, 3), dtype=np.uint8) + 127  # mid-grey: zero in [-1, 1]
        if r.image is not None:
            window[0] = load_image_frame(r.image, r.width, r.height)
            mask[:, :, 0] = 1
        window[-1] = load_image_frame(r.last_image, r.width, r.height)
        mask[:, :, -1] = 1
        latents = encode(window) * mask
    elif r.image is not None:
        first = load_image_frame(r.image, r.width, r.height)[None]  # (1, H, W, 3): an image is a 1-frame video
        latents[:, :, :1] = encode(first)
        mask[:, :, :1] = 1
    return Condition(latents, mask, prefix)
