"""Random clip specs from a seed: what is in the scene, how it moves, and its caption.

Sampling never renders, so specs can be drawn in bulk (for checks such as "no held-out triple in
training"); `render.render_clip` turns a spec into frames.
"""

from __future__ import annotations

import numpy as np

from training.data.toy_world.camera import camera_path, still_camera
from training.data.toy_world.captions import object_phrase, photo_caption, scene_caption
from training.data.toy_world.held_out import HELD_OUT_PHOTOS, HELD_OUT_TRIPLES, is_held_out
from training.data.toy_world.placement import Subject, place_object
from training.data.toy_world.sources import digit_dataset, photo_world
from training.data.toy_world.truth import ClipTruth, ObjectTruth
from training.data.toy_world.vocabulary import (
    BACKGROUNDS,
    CAMERA_MOVES,
    COLOURS,
    DIGIT_MOTIONS,
    DIGIT_SIZES,
    MIN_FRAMES,
    PHOTOS,
    SHAPE_MOTIONS,
    SHAPES,
    SIZE_JITTER,
    SIZES,
)

KINDS = ("shape", "shapes", "digit", "photo")
KIND_WEIGHTS = (0.35, 0.25, 0.2, 0.2)  # shape: one shape; shapes: two or three; digit: one or two
CAMERA_PROBABILITY = 0.5  # of a shape scene on a background that shows camera moves getting one
# Shorter scenes keep a still camera: a few big steps over a repeating texture are ambiguous (a
# step of half its period looks the same either way), so the move would not read.
SCENE_CAMERA_MIN_FRAMES = 9
SUBJECT_DRAWS = 12  # subjects or motions tried per object before the scene makes do with fewer
SCENE_ATTEMPTS = 4  # whole scenes tried before a multi-object request settles for one object
_CLIP_STREAM = 0x70C1  # separate random streams for single clips and multi-shot samples
TRAINING_PHOTOS = tuple(p for p in PHOTOS if p not in HELD_OUT_PHOTOS)
_CAMERA_BACKGROUNDS = tuple(name for name, b in BACKGROUNDS.items() if b.shows_camera_moves)


def check_clip_size(width: int, height: int, num_frames: int, fps: float) -> None:
    """Raise ValueError naming the first bad clip argument."""
    if not isinstance(width, int) or width < 32:
        raise ValueError(f"`width` must be an integer of at least 32 but is {width!r}")
    if not isinstance(height, int) or height < 32:
        raise ValueError(f"`height` must be an integer of at least 32 but is {height!r}")
    if not isinstance(num_frames, int) or num_frames < 1 or (num_frames - 1) % 4:
        raise ValueError(f"`num_frames` must be 1 + 4k (1, 5, 9, 13, 17, ...) but is {num_frames!r}")
    if not fps > 0:
        raise ValueError(f"`fps` must be positive but is {fps!r}")


def allowed_motions(subject: Subject, num_frames: int, *, training: bool = True) -> tuple[str, ...]:
    """Motions `subject` may do in a clip of `num_frames`; in training, never a held-out triple."""
    motions = SHAPE_MOTIONS[subject.shape] if subject.kind == "shape" else DIGIT_MOTIONS
    if num_frames == 1:
        motions = ("still",)  # one frame cannot show anything else
    return tuple(
        m
        for m in motions
        if MIN_FRAMES.get(m, 1) <= num_frames
        and not (training and subject.kind == "shape" and is_held_out(subject.colour, subject.shape, m))
    )


def _pick(rng: np.random.Generator, options: tuple | list):
    return options[int(rng.integers(len(options)))]


def sample_subject(rng: np.random.Generator, kind: str, side: int, colour: str | None = None, size: str | None = None) -> Subject:
    """A random shape or digit subject ("shape" or "digit"), of a random size and colour unless given."""
    colour = colour or _pick(rng, tuple(COLOURS))
    size = size or _pick(rng, tuple(SIZES))
    jitter = rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER)
    if kind == "shape":
        return Subject("shape", _pick(rng, SHAPES), None, None, colour, size, SIZES[size] * side * jitter)
    _, labels = digit_dataset()
    digit = int(rng.integers(10))
    sample = int(_pick(rng, np.flatnonzero(labels == digit)))
    return Subject("digit", None, digit, sample, colour, size, DIGIT_SIZES[size] * side * jitter)


def sample_truth(
    seed: int,
    *,
    width: int = 128,
    height: int = 128,
    num_frames: int = 17,
    fps: float = 8.0,
    kind: str | None = None,
    held_out: bool = False,
    camera: bool | None = None,
) -> ClipTruth:
    """The spec of toy clip `seed`: its objects, paths, background, camera and caption.

    kind: "shape", "shapes", "digit", "photo" or None (drawn; "shape" when held_out). held_out: draw from the held-out
    triples (shape kinds: the first object's triple is HELD_OUT_TRIPLES[seed % 50], or the next one
    that fits num_frames) or photos instead of the training ones. camera: force a camera move
    (True), forbid one (False) or let chance decide (None; only photos and scenes on mottled or dotted backgrounds get one).
    """
    check_clip_size(width, height, num_frames, fps)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer but is {seed!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS} or None but is {kind!r}")
    if held_out and kind == "digit":
        raise ValueError("`held_out` has no digit combinations; use kind 'shape', 'shapes' or 'photo'")
    if kind == "photo" and (camera is False or num_frames == 1):
        raise ValueError(f"photo clips are camera moves: `camera` cannot be False nor `num_frames` 1 (got {camera!r}, {num_frames})")
    if camera and (kind == "digit" or (kind in ("shape", "shapes") and num_frames < SCENE_CAMERA_MIN_FRAMES) or num_frames == 1):
        raise ValueError(
            f"`camera` cannot be True for kind {kind!r} with `num_frames` {num_frames}: digits keep a still camera, "
            f"and a scene needs {SCENE_CAMERA_MIN_FRAMES} frames for a move"
        )
    rng = np.random.default_rng([_CLIP_STREAM, int(seed)])
    if kind is None:
        kind = "shape" if held_out else _draw_kind(rng, camera, num_frames)
    if kind == "photo":
        photo = _pick(rng, HELD_OUT_PHOTOS) if held_out else _pick(rng, TRAINING_PHOTOS)
        return photo_truth(rng, photo, _pick(rng, CAMERA_MOVES), width=width, height=height, num_frames=num_frames, fps=fps)
    side = min(width, height)
    first = _held_out_subject(rng, int(seed), side, num_frames) if held_out else None
    # A camera move only reads on an irregular texture, and only with still objects.
    with_camera = bool(camera) or (
        camera is None
        and kind != "digit"
        and num_frames >= SCENE_CAMERA_MIN_FRAMES
        and (first is None or first[1] == "still")
        and rng.random() < CAMERA_PROBABILITY * len(_CAMERA_BACKGROUNDS) / len(BACKGROUNDS)
    )
    if with_camera and first is not None and first[1] != "still":
        first = _held_out_subject(rng, int(seed), side, num_frames, motion="still")
    background = _pick(rng, _CAMERA_BACKGROUNDS) if with_camera else _pick(rng, tuple(BACKGROUNDS))
    move = _pick(rng, CAMERA_MOVES) if with_camera else None
    path = camera_path(rng, move, width=width, height=height, num_frames=num_frames) if move else still_camera(width, height, num_frames)
    count = {"shape": 1, "shapes": int(rng.integers(2, 4)), "digit": 1 + int(rng.random() < 0.3)}[kind]
    objects = _place_objects(rng, "digit" if kind == "digit" else "shape", count, path, width, height, first=first, still=with_camera)
    subjects = tuple(object_phrase(o, int(rng.integers(3))) for o in objects)
    caption = scene_caption(rng, objects, background, move, subjects)
    phase = tuple(float(v) for v in rng.uniform(0, side, 2))
    return ClipTruth(objects, background, move, None, caption, float(fps), width, height, num_frames, path_tuples(path), phase)


def _draw_kind(rng: np.random.Generator, camera: bool | None, num_frames: int) -> str:
    """A kind by KIND_WEIGHTS among those that can honour `camera`: digits never move the camera,
    photos always do (so never in one frame), scenes only over SCENE_CAMERA_MIN_FRAMES or more."""
    scene_camera = not camera or num_frames >= SCENE_CAMERA_MIN_FRAMES
    allowed = [
        (k == "photo" and camera is not False and num_frames > 1) or (k in ("shape", "shapes") and scene_camera) or (k == "digit" and not camera)
        for k in KINDS
    ]
    weights = np.array(KIND_WEIGHTS) * allowed
    return KINDS[int(rng.choice(len(KINDS), p=weights / weights.sum()))]


def _held_out_subject(
    rng: np.random.Generator, seed: int, side: int, num_frames: int, motion: str | None = None
) -> tuple[Subject, str]:
    """The held-out triple for `seed` (the next one that fits num_frames / `motion`) as a subject."""
    n = len(HELD_OUT_TRIPLES)
    for k in range(n):
        colour, shape, m = HELD_OUT_TRIPLES[(seed + k) % n]
        if (motion is None or m == motion) and (num_frames > 1 or m == "still") and MIN_FRAMES.get(m, 1) <= num_frames:
            subject = sample_subject(rng, "shape", side, colour)
            return Subject("shape", shape, None, None, colour, subject.size, subject.radius), m
    raise ValueError(f"no held-out triple fits `num_frames` {num_frames}")


def _place_objects(
    rng: np.random.Generator,
    kind: str,
    count: int,
    path: np.ndarray,
    width: int,
    height: int,
    *,
    first: tuple[Subject, str] | None = None,
    still: bool = False,
) -> tuple[ObjectTruth, ...]:
    """Up to `count` objects with distinct colours that fit together: the whole scene is redrawn
    (a few times) until at least min(count, 2) fit, so a multi-object request gets several."""
    best: tuple[ObjectTruth, ...] = ()
    for _ in range(SCENE_ATTEMPTS):
        objects = _try_scene(rng, kind, count, path, width, height, first=first, still=still)
        if len(objects) > len(best):
            best = objects
        if len(best) >= min(count, 2):
            break
    if not best:
        raise ValueError(f"no object fits a clip of `width` {width} and `height` {height}")
    return best


def _try_scene(
    rng: np.random.Generator,
    kind: str,
    count: int,
    path: np.ndarray,
    width: int,
    height: int,
    *,
    first: tuple[Subject, str] | None,
    still: bool,
) -> tuple[ObjectTruth, ...]:
    side = min(width, height)
    objects: list[ObjectTruth] = []
    colours = [str(c) for c in rng.permutation(list(COLOURS))]
    if first is not None:
        colours.remove(first[0].colour)
        colours.insert(0, first[0].colour)
    for index in range(count):
        for draw in range(SUBJECT_DRAWS):  # a subject or motion that cannot fit is redrawn
            if index == 0 and first is not None:
                subject, motion = first
            else:
                # Late draws are small: a crowded frame still takes one more small object.
                size = "small" if draw >= SUBJECT_DRAWS // 2 else None
                subject = sample_subject(rng, kind, side, colours[index], size)
                options = allowed_motions(subject, len(path))
                if still:
                    options = tuple(m for m in options if m == "still")
                if not options:  # (colour, shape, still) is held out: draw another subject
                    continue
                motion = _pick(rng, options)
            placed = place_object(rng, subject, motion, width=width, height=height, camera_path=path, others=tuple(objects))
            if placed is not None:
                objects.append(placed)
                break
    return tuple(objects)


def photo_truth(
    rng: np.random.Generator, photo: str, move: str, *, width: int, height: int, num_frames: int, fps: float, subject: str | None = None
) -> ClipTruth:
    """A camera `move` over `photo`, with its caption."""
    world = photo_world(photo, width, height).size
    path = camera_path(rng, move, width=width, height=height, num_frames=num_frames, world_size=world)
    caption = photo_caption(rng, photo, move, subject)
    return ClipTruth((), None, move, photo, caption, float(fps), width, height, num_frames, path_tuples(path))


def path_tuples(path: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    """A (T, 3) camera path as the tuples ClipTruth keeps."""
    return tuple((float(x), float(y), float(z)) for x, y, z in path)
