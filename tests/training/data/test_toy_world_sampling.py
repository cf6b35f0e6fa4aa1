"""Toy specs and captions, sampled without rendering: vocabulary, captions and held-out combinations."""

import itertools
from importlib import resources

import numpy as np

from training.data.toy_world import HELD_OUT_PHOTOS, caption_vocabulary, held_out_triples, sample_shots, sample_truth
from training.data.toy_world.captions import CAMERA_PHRASES, caption_mentions, motion_words
from training.data.toy_world.shapes import SHAPE_EXTENT
from training.data.toy_world.vocabulary import BACKGROUNDS, COLOURS, MOTIONS, PHOTOS, SHAPE_MOTIONS, SHAPES


def test_vocabulary_is_rich_enough_and_colours_are_far_apart():
    assert len(SHAPES) >= 5 and len(COLOURS) >= 8
    rgb = np.array(list(COLOURS.values()), dtype=float)
    assert min(np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2)) > 80
    # Every object colour stands well off every background tone, which the detectors rely on.
    tones = np.array([tone for b in BACKGROUNDS.values() for tone in b.colours], dtype=float)
    assert np.linalg.norm(rgb[:, None] - tones[None], axis=-1).min() > 130


def test_caption_vocabulary_lists_every_category():
    vocabulary = caption_vocabulary()
    assert set(vocabulary) >= {"colours", "shapes", "digits", "sizes", "motions", "backgrounds", "camera", "photos"}
    assert "a cat" not in vocabulary["photos"]  # held out


def test_caption_mentions_colour_shape_and_motion():
    for seed in range(300):
        truth = sample_truth(seed)
        if truth.photo is not None:
            assert any(p in truth.caption for p in PHOTOS[truth.photo].phrases)
        for obj in truth.objects:
            assert obj.colour in truth.caption
            assert (obj.shape if obj.kind == "shape" else str(obj.digit)) in truth.caption
            words, every = motion_words(obj.motion)
            assert caption_mentions(truth.caption, words, every=every), (truth.caption, obj.motion)
        if truth.camera is not None:
            assert any(p in truth.caption for p in CAMERA_PHRASES[truth.camera])


def test_no_held_out_triple_in_2000_training_specs():
    held = set(held_out_triples())
    seen = set()
    for seed in range(2000):
        truth = sample_truth(seed)
        assert truth.photo not in HELD_OUT_PHOTOS
        seen.update(o.triple for o in truth.objects if o.kind == "shape")
    assert not seen & held
    assert len(seen) > 300  # the sampler does reach most of the 462 training triples


def test_no_held_out_triple_in_short_clips_or_multi_shot_samples():
    held = set(held_out_triples())
    for seed in range(200):
        for num_frames in (1, 5):
            assert not {o.triple for o in sample_truth(seed, num_frames=num_frames).objects} & held
        subject, shots = sample_shots(seed)
        assert not {o.triple for t in shots for o in t.objects} & held
        assert all(t.photo not in HELD_OUT_PHOTOS for t in shots)


def test_held_out_clips_use_the_held_out_triples():
    held = held_out_triples()
    triples = {sample_truth(seed, held_out=True).objects[0].triple for seed in range(len(held))}
    assert triples == set(held)
    assert sample_truth(3, kind="photo", held_out=True).photo in HELD_OUT_PHOTOS


def test_held_out_list_is_a_tenth_and_leaves_every_pair_in_training():
    held = set(held_out_triples())
    everything = {(c, s, m) for c in COLOURS for s in SHAPES for m in SHAPE_MOTIONS[s]}
    assert held <= everything
    assert 0.08 <= len(held) / len(everything) <= 0.12
    training = everything - held
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert {(t[a], t[b]) for t in training} == {(t[a], t[b]) for t in everything}


def test_objects_stay_in_frame_and_apart():
    for seed in range(300):
        truth = sample_truth(seed, kind="shapes")
        for obj in truth.objects:
            reach = SHAPE_EXTENT[obj.shape] * np.asarray(obj.radii)
            xy = np.asarray(obj.centres)
            assert np.all(xy[:, 0] - reach >= 0) and np.all(xy[:, 0] + reach <= truth.width)
            assert np.all(xy[:, 1] - reach >= 0) and np.all(xy[:, 1] + reach <= truth.height)
        for a, b in itertools.combinations(truth.objects, 2):
            gap = np.hypot(*(np.asarray(a.centres) - np.asarray(b.centres)).T)
            assert np.all(gap > SHAPE_EXTENT[a.shape] * np.asarray(a.radii) + SHAPE_EXTENT[b.shape] * np.asarray(b.radii))


def test_every_motion_is_sampled():
    motions = {o.motion for seed in range(600) for o in sample_truth(seed, kind="shape").objects}
    assert motions == set(MOTIONS)


def test_camera_moves_only_over_irregular_textures_with_still_objects():
    for seed in range(100):
        truth = sample_truth(seed, kind="shapes", camera=True)
        assert truth.camera is not None and BACKGROUNDS[truth.background].shows_camera_moves
        assert all(o.motion == "still" for o in truth.objects)


def test_photos_are_files_shipped_with_scikit_image():
    package = resources.files("skimage.data")
    for photo in PHOTOS.values():
        assert package.joinpath(photo.filename).is_file(), photo.filename
