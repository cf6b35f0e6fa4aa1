"""Tiled VAE decoding through a request: validated at the edge, run by the pipeline, recorded with the result."""

import numpy as np
import pytest

from core.request import validate_request
from tests.core.engine_helpers import decoded_frames, psnr, tiny_request


@pytest.mark.parametrize("value, rule", [
    (128, "from 256 to 4096"), (300, "multiple of 16"), (True, "from 256 to 4096"), ("256", "from 256 to 4096"),
])
def test_bad_tile_sizes_are_refused_by_name(value, rule):
    with pytest.raises(ValueError, match=f"`vae_tile_size` must be .*{rule}.*got {value!r}"):
        validate_request(tiny_request(vae_tile_size=value))


@pytest.mark.slow
def test_tiled_decode_matches_whole_frames_and_is_recorded(engine, tmp_path):
    # 384x256 frames in 256 px tiles (overlap 128 px): two tiles side by side, blended across the seam.
    size = dict(width=384, height=256, num_frames=5, steps=1)
    whole = decoded_frames(engine, tiny_request(**size))
    tiled = decoded_frames(engine, tiny_request(**size, vae_tile_size=256))
    assert not np.array_equal(whole, tiled)  # the tiled path really ran: blending moves some values a little
    assert psnr(whole, tiled) >= 40, psnr(whole, tiled)
    result = engine.generate(tiny_request(**size, vae_tile_size=256), tmp_path / "tiled.mp4")
    assert result.metadata["request"]["vae_tile_size"] == 256
