"""The detectors against the toy world's ground truth, mirrored clips and pure noise."""

import numpy as np
import pytest

from training.data.toy_world import sample_truth, toy_clip
from training.eval.adherence import adherence_with_findings, prompt_adherence
from training.eval.detect import analyse_clip, count_objects, detect_objects, dominant_motion
from training.eval.validate_detectors import clip_agreement


def test_agreement_on_200_single_object_clips():
    tallies: dict[str, list[bool]] = {}
    for seed in range(10_000, 10_200):
        for name, ok in clip_agreement(toy_clip(seed, kind="shape", camera=False)).items():
            tallies.setdefault(name, []).append(ok)
    rates = {name: np.mean(v) for name, v in tallies.items()}
    assert set(rates) >= {"count", "colour", "shape", "size", "motion"}
    assert all(rate >= 0.99 for rate in rates.values()), rates


def _seed_with_motion(motion: str) -> int:
    return next(s for s in range(1000) if sample_truth(s, kind="shape", camera=False).objects[0].motion == motion)


def test_left_is_left_and_its_mirror_image_is_right():
    clip = toy_clip(_seed_with_motion("left"), kind="shape", camera=False)
    assert dominant_motion(clip.frames) == "left"
    assert dominant_motion(np.ascontiguousarray(clip.frames[:, :, ::-1])) == "right"


def test_up_reversed_in_time_is_down():
    clip = toy_clip(_seed_with_motion("up"), kind="shape", camera=False)
    assert dominant_motion(clip.frames) == "up"
    assert dominant_motion(np.ascontiguousarray(clip.frames[::-1])) == "down"


def test_counts_several_objects():
    for seed in range(5):
        clip = toy_clip(seed, kind="shapes")
        assert count_objects(clip.frames) == len(clip.truth.objects)


def test_background_hint_gives_the_same_objects():
    clip = next(c for c in (toy_clip(s, kind="shape", camera=False) for s in range(50)) if c.truth.background == "black")
    hinted = detect_objects(clip.frames, background_hint=(10, 10, 10))
    assert [(o.colour, o.shape, o.motion) for o in hinted] == [(o.colour, o.shape, o.motion) for o in detect_objects(clip.frames)]


def test_camera_move_is_not_an_object_motion():
    clip = toy_clip(1, kind="shape", camera=True)
    analysis = analyse_clip(clip.frames)
    assert analysis.camera == clip.truth.camera and analysis.camera_measurable
    assert [o.motion for o in analysis.objects] == ["still"]


def test_pure_noise_does_not_crash_and_adheres_poorly():
    noise = np.random.default_rng(0).integers(0, 256, (17, 128, 128, 3), dtype=np.uint8)
    analyse_clip(noise)
    for seed in range(3):
        scores = prompt_adherence(noise, toy_clip(seed, kind="shape").truth)
        assert scores["overall"] <= 0.25


def test_real_clip_adheres_to_its_own_truth_and_not_to_another():
    clip = toy_clip(2, kind="shape", camera=False)
    assert prompt_adherence(clip.frames, clip.truth)["overall"] == 1.0
    other = next(t for t in (sample_truth(s, kind="shape", camera=False) for s in range(100, 200))
                 if t.objects[0].colour != clip.truth.objects[0].colour and t.objects[0].motion != clip.truth.objects[0].motion)
    assert prompt_adherence(clip.frames, other)["overall"] < 1.0


def test_findings_name_what_was_drawn_even_when_it_was_not_asked_for():
    clip = toy_clip(_seed_with_motion("left"), kind="shape", camera=False)
    drawn = clip.truth.objects[0]
    asked = sample_truth(_seed_with_motion("right"), kind="shape", camera=False)
    scores, found = adherence_with_findings(clip.frames, asked)
    assert scores["motion"] == 0.0
    assert found == [{"colour": drawn.colour, "shape": drawn.shape, "size": drawn.size, "motion": "left"}]


def test_photo_adherence_checks_the_camera():
    clip = toy_clip(4, kind="photo")
    assert prompt_adherence(clip.frames, clip.truth) == {"camera": 1.0, "overall": 1.0}


@pytest.mark.parametrize("bad", [np.zeros((4, 8, 8), np.uint8), np.zeros((2, 8, 8, 3), np.float32), [[1, 2, 3]]])
def test_bad_frames_are_refused(bad):
    with pytest.raises(ValueError, match="frames"):
        detect_objects(bad)


def test_grain_is_neither_a_camera_move_nor_a_motion():
    clip = next(c for c in (toy_clip(s, kind="shape", camera=False) for s in range(100)) if c.truth.background in ("mottled", "dots"))
    grain = np.random.default_rng(3).normal(0, 8, clip.frames.shape)
    noisy = np.clip(clip.frames + grain, 0, 255).astype(np.uint8)
    analysis = analyse_clip(noisy)
    assert analysis.camera == "static"
    assert [(o.colour, o.shape, o.motion) for o in analysis.objects] == [(o.colour, o.shape, o.motion) for o in clip.truth.objects]
