"""Rendered toy clips: deterministic by seed, the asked-for size, fast, and really moving."""

import time

import numpy as np
import pytest

from training.data.toy_world import toy_clip

KINDS = ("shape", "shapes", "digit", "photo")


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_identical_clip(kind):
    a, b = toy_clip(11, kind=kind), toy_clip(11, kind=kind)
    assert np.array_equal(a.frames, b.frames)
    assert a.caption == b.caption
    assert a.truth == b.truth


def test_different_seeds_differ():
    clips = [toy_clip(seed) for seed in range(8)]
    assert len({c.caption for c in clips}) == 8
    assert all(not np.array_equal(clips[0].frames, c.frames) for c in clips[1:])


@pytest.mark.parametrize("kind", KINDS)
def test_frames_have_the_asked_layout_and_are_not_constant(kind):
    clip = toy_clip(3, kind=kind, width=96, height=64, num_frames=9)
    assert clip.frames.shape == (9, 64, 96, 3)
    assert clip.frames.dtype == np.uint8
    assert clip.frames.std() > 5
    assert clip.truth.num_frames == 9 and clip.truth.fps == 8.0


def test_default_clip_is_two_seconds_at_8_fps():
    clip = toy_clip(0)
    assert clip.frames.shape == (17, 128, 128, 3)
    assert clip.truth.fps == 8.0


def test_one_frame_clip_is_still():
    clip = toy_clip(5, kind="shape", num_frames=1)
    assert clip.frames.shape[0] == 1
    assert clip.truth.objects[0].motion == "still"


@pytest.mark.parametrize("seed", range(6))
def test_photo_camera_moves_the_view(seed):
    clip = toy_clip(seed, kind="photo")
    assert clip.truth.camera is not None
    assert np.abs(clip.frames[0].astype(int) - clip.frames[-1]).mean() > 5


def test_moving_objects_move_and_still_ones_do_not():
    for seed in range(40):
        truth = toy_clip(seed, kind="shape", camera=False).truth
        obj = truth.objects[0]
        shift = np.hypot(*np.subtract(obj.centres[-1], obj.centres[0]))
        if obj.motion in ("still", "rotating", "growing", "shrinking"):
            assert shift < 1e-6
        elif obj.motion != "bouncing":
            assert shift > 0.2 * 128


def test_render_is_fast():
    toy_clip(0, kind="photo"), toy_clip(0, kind="digit")  # load the photo and digit caches once
    times = []
    for seed in range(30):
        start = time.perf_counter()
        toy_clip(seed)
        times.append(time.perf_counter() - start)
    assert np.median(times) < 0.05


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_frames": 16}, "num_frames"),
        ({"width": 8}, "width"),
        ({"kind": "cube"}, "kind"),
        ({"fps": 0}, "fps"),
    ],
)
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        toy_clip(0, **kwargs)


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match="seed"):
        toy_clip(-1)
