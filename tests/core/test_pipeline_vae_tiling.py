"""Tiled VAE decoding through a request: validated at the edge, run by the pipeline, recorded with the result."""

import numpy as np
import pytest

from core.request import validate_request
from tests.core.engine_helpers import decoded_frames, psnr, tiny_request


@pytest.mark.parametrize("value, rule", [
    (112, "from 128 to 4096"), (300, "multiple of 16"), (True, "from 128 to 4096"), ("256", "from 128 to 4096"),
])
def test_bad_tile_sizes_are_refused_by_name(value, rule):
    with pytest.raises(ValueError, match=f"`vae_tile_size` must be .*{rule}.*got {value!r}"):
        validate_request(tiny_request(vae_tile_size=value))


@pytest.mark.slow
@pytest.mark.parametrize("model, tile", [("random:tiny", 256), ("kelp-small", 128)])
def test_tiled_decode_matches_whole_frames_and_is_recorded(engine, tmp_path, model, tile):
    # 384x256 frames in 256 px tiles (overlap 128 px): two tiles side by side, blended across the seam. The smallest
    # tile a request may ask for, 128 px (overlap 64 px, a grid of 5 x 3), on the bundled model's trained VAE: the
    # random tiny VAE spreads every latent over more pixels than a trained one, so its seams at 128 px show (38 dB).
    size = dict(width=384, height=256, num_frames=5, steps=1, model=model)
    whole = decoded_frames(engine, tiny_request(**size))
    tiled = decoded_frames(engine, tiny_request(**size, vae_tile_size=tile))
    assert not np.array_equal(whole, tiled)  # the tiled path really ran: blending moves some values a little
    assert psnr(whole, tiled) >= 40, psnr(whole, tiled)
    result = engine.generate(tiny_request(**size, vae_tile_size=tile), tmp_path / "tiled.mp4")
    assert result.metadata["request"]["vae_tile_size"] == tile
