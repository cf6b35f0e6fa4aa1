"""Multi-shot specs: 2-4 consecutive shots of one subject, each with its own motion and length.

The subject (shape, colour and size, or the same handwritten digit, or the same photo) and the
background stay across the cuts; the motion or camera move changes every shot, so do the captions.
"""

from __future__ import annotations

import numpy as np

from training.data.toy_world.camera import still_camera
from training.data.toy_world.captions import object_phrase, scene_caption
from training.data.toy_world.placement import place_object
from training.data.toy_world.sampling import (
    TRAINING_PHOTOS,
    allowed_motions,
    check_clip_size,
    path_tuples,
    photo_truth,
    sample_subject,
)
from training.data.toy_world.truth import ClipTruth
from training.data.toy_world.vocabulary import BACKGROUNDS, CAMERA_MOVES, PHOTOS

SHOT_KINDS = ("shape", "digit", "photo")
SHOT_KIND_WEIGHTS = (0.45, 0.25, 0.3)
MAX_SHOTS = len(CAMERA_MOVES)  # photo shots each need a different camera move
_SHOTS_STREAM = 0x5407


def sample_shots(
    seed: int,
    *,
    num_shots: int | None = None,
    kind: str | None = None,
    width: int = 128,
    height: int = 128,
    frame_choices: tuple[int, ...] = (9, 13, 17),
    shot_frames: tuple[int, ...] | None = None,
    fps: float = 8.0,
) -> tuple[str, list[ClipTruth]]:
    """(subject phrase, shot specs) of multi-shot sample `seed`.

    Each shot's length is drawn from frame_choices (1 + 4k, at least 5), unless shot_frames fixes
    every length (and so the number of shots; a 1-frame shot is a still, never of a photo).
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer but is {seed!r}")
    if kind is not None and kind not in SHOT_KINDS:
        raise ValueError(f"`kind` must be one of {SHOT_KINDS} or None but is {kind!r}")
    if shot_frames is not None:
        for n in shot_frames:
            check_clip_size(width, height, n, fps)
        if not 1 <= len(shot_frames) <= MAX_SHOTS or shot_frames.count(1) > 1 or (kind == "photo" and 1 in shot_frames):
            raise ValueError(f"`shot_frames` must be 1 to {MAX_SHOTS} lengths with at most one 1-frame shot (none for photos) but is {shot_frames!r}")
        if num_shots not in (None, len(shot_frames)):
            raise ValueError(f"`num_shots` must be None or len(shot_frames) = {len(shot_frames)} but is {num_shots!r}")
    else:
        for n in frame_choices:
            check_clip_size(width, height, n, fps)
        if not frame_choices or min(frame_choices) < 5:
            raise ValueError(f"`frame_choices` must be 1 + 4k counts of at least 5 but is {frame_choices!r}")
        if num_shots is not None and not 1 <= num_shots <= MAX_SHOTS:
            raise ValueError(f"`num_shots` must be in [1, {MAX_SHOTS}] or None but is {num_shots!r}")
    rng = np.random.default_rng([_SHOTS_STREAM, int(seed)])
    if shot_frames is not None:
        lengths = [int(n) for n in shot_frames]
    else:
        count = num_shots or int(rng.integers(2, MAX_SHOTS + 1))
        lengths = [int(frame_choices[int(rng.integers(len(frame_choices)))]) for _ in range(count)]
    num_shots = len(lengths)
    if kind is None:
        weights = np.array(SHOT_KIND_WEIGHTS) * [k != "photo" or 1 not in lengths for k in SHOT_KINDS]
        kind = SHOT_KINDS[int(rng.choice(len(SHOT_KINDS), p=weights / weights.sum()))]
    if kind == "photo":
        photo = TRAINING_PHOTOS[int(rng.integers(len(TRAINING_PHOTOS)))]
        phrase = PHOTOS[photo].phrases[int(rng.integers(len(PHOTOS[photo].phrases)))]
        moves = [str(m) for m in rng.permutation(list(CAMERA_MOVES))[:num_shots]]
        shots = [
            photo_truth(rng, photo, move, width=width, height=height, num_frames=n, fps=fps, subject=phrase)
            for move, n in zip(moves, lengths)
        ]
        return phrase, shots

    side = min(width, height)
    subject = sample_subject(rng, kind, side)
    while not allowed_motions(subject, min(lengths)):  # a 1-frame shot needs (colour, shape, still) in training
        subject = sample_subject(rng, kind, side)
    background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    # A 1-frame shot can only be still, so the others leave "still" to it.
    used: set[str] = {"still"} if 1 in lengths else set()
    shots = []
    phrase = ""
    for n in lengths:
        path = still_camera(width, height, n)
        options = [m for m in allowed_motions(subject, n) if m not in used or n == 1]
        placed = None
        while placed is None and options:
            motion = options.pop(int(rng.integers(len(options))))
            placed = place_object(rng, subject, motion, width=width, height=height, camera_path=path)
        if placed is None:
            raise ValueError(f"no motion of the subject fits `width` {width} and `height` {height}")
        used.add(placed.motion)
        phrase = object_phrase(placed, noun_choice=seed)
        caption = scene_caption(rng, (placed,), background, None, (phrase,))
        shots.append(ClipTruth((placed,), background, None, None, caption, float(fps), width, height, n, path_tuples(path)))
    return f"{phrase} on {BACKGROUNDS[background].phrase}", shots
