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
    fps: float = 8.0,
) -> tuple[str, list[ClipTruth]]:
    """(subject phrase, shot specs) of multi-shot sample `seed`; each shot's length is drawn from frame_choices."""
    for n in frame_choices:
        check_clip_size(width, height, n, fps)
    if not frame_choices or min(frame_choices) < 5:
        raise ValueError(f"`frame_choices` must be 1 + 4k counts of at least 5 but is {frame_choices!r}")
    if num_shots is not None and not 1 <= num_shots <= MAX_SHOTS:
        raise ValueError(f"`num_shots` must be in [1, {MAX_SHOTS}] or None but is {num_shots!r}")
    if kind is not None and kind not in SHOT_KINDS:
        raise ValueError(f"`kind` must be one of {SHOT_KINDS} or None but is {kind!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer but is {seed!r}")
    rng = np.random.default_rng([_SHOTS_STREAM, int(seed)])
    num_shots = num_shots or int(rng.integers(2, MAX_SHOTS + 1))
    kind = kind or SHOT_KINDS[int(rng.choice(len(SHOT_KINDS), p=SHOT_KIND_WEIGHTS))]
    lengths = [int(frame_choices[int(rng.integers(len(frame_choices)))]) for _ in range(num_shots)]
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
    background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    used: set[str] = set()
    shots = []
    phrase = ""
    for n in lengths:
        path = still_camera(width, height, n)
        options = [m for m in allowed_motions(subject, n) if m not in used]
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
