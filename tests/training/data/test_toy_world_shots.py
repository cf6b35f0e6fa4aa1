"""Multi-shot samples: one subject across 2-4 shots, each with its own caption and length."""

import numpy as np
import pytest

from training.data.toy_world import toy_shots


@pytest.mark.parametrize("kind", ["shape", "digit", "photo"])
def test_shots_share_the_subject_and_differ_in_caption(kind):
    for seed in range(4):
        sample = toy_shots(seed, kind=kind)
        assert 2 <= len(sample.shots) <= 4
        captions = [s.caption for s in sample.shots]
        assert len(set(captions)) == len(captions)
        truths = [s.truth for s in sample.shots]
        if kind == "photo":
            assert len({t.photo for t in truths}) == 1
            assert len({t.camera for t in truths}) == len(truths)
        else:
            subjects = {(o.kind, o.shape, o.digit_sample, o.colour, o.size) for t in truths for o in t.objects}
            assert len(subjects) == 1
            assert len({t.background for t in truths}) == 1
            assert len({t.objects[0].motion for t in truths}) == len(truths)
        for shot in sample.shots:
            assert (shot.frames.shape[0] - 1) % 4 == 0
            assert shot.frames.shape[0] == shot.truth.num_frames


def test_shots_are_deterministic_and_follow_num_shots():
    a, b = toy_shots(7, num_shots=3), toy_shots(7, num_shots=3)
    assert len(a.shots) == 3
    assert a.subject == b.subject
    assert all(np.array_equal(x.frames, y.frames) and x.caption == y.caption for x, y in zip(a.shots, b.shots))


def test_bad_num_shots_is_named():
    with pytest.raises(ValueError, match="num_shots"):
        toy_shots(0, num_shots=9)


def test_fixed_shot_lengths_with_a_one_frame_still():
    for seed in range(30):
        sample = toy_shots(seed, shot_frames=(5, 1), width=64, height=64)
        assert [s.frames.shape[0] for s in sample.shots] == [5, 1]
        assert sample.shots[1].truth.objects[0].motion == "still"
        assert sample.shots[0].truth.objects[0].motion != "still"
