"""Caption templates: a few fixed paraphrases per phrase, chosen by the sampler's random generator.

Every motion paraphrase contains one of that motion's MOTION_KEYWORDS, so a caption can always be
checked against its truth by plain word search.
"""

from __future__ import annotations

import numpy as np

from training.data.toy_world.truth import ObjectTruth
from training.data.toy_world.vocabulary import BACKGROUNDS, PHOTOS

MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "still": ("stays still", "rests in place", "sits still"),
    "left": ("moves to the left", "slides left", "moves left"),
    "right": ("moves to the right", "slides right", "moves right"),
    "up": ("moves up", "drifts upward", "slides up"),
    "down": ("moves down", "drifts downward", "slides down"),
    "up-left": ("moves up and to the left", "drifts diagonally up and left"),
    "up-right": ("moves up and to the right", "drifts diagonally up and right"),
    "down-left": ("moves down and to the left", "drifts diagonally down and left"),
    "down-right": ("moves down and to the right", "drifts diagonally down and right"),
    "bouncing": ("bounces", "bounces up and down", "is bouncing"),
    "rotating": ("rotates", "spins", "is rotating"),
    "growing": ("grows", "grows bigger", "is growing"),
    "shrinking": ("shrinks", "shrinks smaller", "is shrinking"),
}

# Words of which a caption contains at least one (or, for diagonals, all) for each motion.
MOTION_KEYWORDS: dict[str, tuple[str, ...]] = {
    "still": ("still", "rest"),
    "bouncing": ("bounc",),
    "rotating": ("rotat", "spin"),
    "growing": ("grow",),
    "shrinking": ("shrink",),
}

CAMERA_PHRASES: dict[str, tuple[str, ...]] = {
    "pan left": ("the camera pans left", "the camera pans to the left"),
    "pan right": ("the camera pans right", "the camera pans to the right"),
    "zoom in": ("the camera zooms in", "the camera slowly zooms in"),
    "zoom out": ("the camera zooms out", "the camera slowly zooms out"),
}

DIGIT_NOUNS = ("digit {d}", "number {d}", "handwritten {d}")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def object_phrase(obj: ObjectTruth, noun_choice: int = 0) -> str:
    """ "a small red circle", "a large green digit 7" (the noun_choice-th digit wording)."""
    noun = obj.shape if obj.kind == "shape" else DIGIT_NOUNS[noun_choice % len(DIGIT_NOUNS)].format(d=obj.digit)
    return _article(f"{obj.size} {obj.colour} {noun}")


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def scene_caption(
    rng: np.random.Generator,
    objects: tuple[ObjectTruth, ...],
    background: str,
    camera: str | None,
    subjects: tuple[str, ...],
) -> str:
    """Caption of a shape or digit scene; `subjects` are the objects' phrases, in order."""
    actions = [f"{s} {_pick(rng, MOTION_PHRASES[o.motion])}" for s, o in zip(subjects, objects)]
    where = BACKGROUNDS[background].phrase
    if int(rng.integers(2)) == 0:
        text = f"{_join(actions)} on {where}"
    else:
        text = f"on {where}, {_join(actions)}"
    if camera is not None:
        text += ", " + _pick(rng, CAMERA_PHRASES[camera])
    return text


def photo_caption(rng: np.random.Generator, photo: str, camera: str, subject: str | None = None) -> str:
    """Caption of a camera move over a photo: "a cat, the camera pans right"."""
    subject = subject or _pick(rng, PHOTOS[photo].phrases)
    move = _pick(rng, CAMERA_PHRASES[camera])
    templates = [f"{subject}, {move}", f"a photo of {subject}, {move}"]
    if camera.startswith("pan"):
        templates.append(f"{move} across {subject}")
    elif camera == "zoom in":
        templates.append(f"{move} on {subject}")
    else:
        templates.append(f"{move} from {subject}")
    return templates[int(rng.integers(len(templates)))]


def caption_mentions(caption: str, words: tuple[str, ...], *, every: bool = False) -> bool:
    """Whether `caption` contains any (or every) of `words`."""
    found = [w in caption for w in words]
    return all(found) if every else any(found)


def motion_words(motion: str) -> tuple[tuple[str, ...], bool]:
    """(words, every): the caption of an object with `motion` contains any (or every) of words."""
    if motion in MOTION_KEYWORDS:
        return MOTION_KEYWORDS[motion], False
    return tuple(motion.split("-")), True
