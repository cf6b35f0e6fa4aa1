"""The photo-subject detector names the photo of toy photo clips, and no photo for scenes, noise or flat frames."""

import json

import numpy as np
import pytest

from training.data.toy_world import toy_clip
from training.data.toy_world.vocabulary import CAMERA_MOVES, PHOTOS
from training.eval.photo_subject import identify_photo, shows_photo
from training.eval.validate_photo_subject import degrade, main, photo_clip

SIZE = (64, 64, 9)  # the tiny model's clips; views are rendered once for every square size


def test_every_photo_under_every_camera_move_is_named():
    rng = np.random.default_rng(0)
    count = len(PHOTOS) * len(CAMERA_MOVES)
    for index in range(count):
        photo, frames = photo_clip(5, index, *SIZE)
        match = identify_photo(frames)
        assert match.photo == photo, (index, photo, match)
        assert match.runner_up != photo and match.score - match.runner_up_score >= 0.08
        if index % 4 == 0:  # blurred, tinted and noisy, as a generated clip might be
            assert identify_photo(degrade(frames, rng)).photo == photo, (index, photo)
    other = next(name for name in PHOTOS if name != photo)
    assert shows_photo(frames, photo) and not shows_photo(frames, other)


def test_the_held_out_photo_is_named_at_the_models_size():
    clip = toy_clip(3, width=128, height=128, num_frames=17, kind="photo", held_out=True)
    assert clip.truth.photo == "cat"
    assert shows_photo(clip.frames, "cat")


@pytest.mark.parametrize("kind", ["shape", "shapes", "digit"])
def test_shape_and_digit_clips_show_no_photo(kind):
    for seed in range(10):
        frames = toy_clip(seed, width=SIZE[0], height=SIZE[1], num_frames=SIZE[2], kind=kind).frames
        match = identify_photo(frames)
        assert match.photo is None, (kind, seed, match)
        assert not shows_photo(frames, "cat")


def test_noise_and_flat_frames_show_no_photo():
    noise = np.random.default_rng(1).integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    flat = np.full((9, 64, 64, 3), 90, dtype=np.uint8)
    assert identify_photo(noise).photo is None
    assert identify_photo(flat).photo is None


def test_bad_arguments_are_named():
    frames = np.zeros((9, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="'dog'"):
        shows_photo(frames, "dog")
    with pytest.raises(ValueError, match="uint8"):
        identify_photo(frames.astype(np.float32))
    with pytest.raises(ValueError, match="at least 16 pixels"):
        identify_photo(frames[:, :8, :8])


def test_validation_script_passes_and_writes_json(tmp_path, capsys):
    out = tmp_path / "photo.json"
    assert main(["--clips", "11", "--size", *map(str, SIZE), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["passed"] and set(report["cases"]["photo named"]["lowest_score"]) == set(PHOTOS)
    assert "| photo named |" in capsys.readouterr().out
