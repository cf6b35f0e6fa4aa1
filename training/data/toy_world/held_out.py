"""Combinations the training sampler never draws, kept for testing generalisation and LoRA.

HELD_OUT_TRIPLES: 50 of the 512 (colour, shape, motion) triples (9.8%). They were picked on a
lattice, motion index (3 * colour + 5 * shape) mod 13 for every (colour, shape) pair plus a second
one (index + 6) where colour + shape is divisible by 4, with rotating circles skipped. So every
(colour, shape) pair keeps at least 11 of its motions in training, and every (colour, motion) and
(shape, motion) pair loses at most 2 of its 5 shapes or 8 colours: each word, and each pair of
words, is still seen in training; only the triple is new. The list is fixed here, not recomputed,
so that changing the vocabulary can never silently change what was held out.

HELD_OUT_PHOTOS: photos never shown in training, for teaching a new subject with a LoRA.
"""

from __future__ import annotations

HELD_OUT_TRIPLES: tuple[tuple[str, str, str], ...] = (
    ("red", "circle", "still"), ("red", "circle", "up-right"), ("red", "square", "up-left"),
    ("red", "triangle", "rotating"), ("red", "star", "right"), ("red", "diamond", "down-left"),
    ("red", "diamond", "still"), ("green", "circle", "up"), ("green", "square", "down-right"),
    ("green", "triangle", "still"), ("green", "star", "up-left"), ("green", "star", "growing"),
    ("green", "diamond", "rotating"), ("blue", "circle", "up-right"), ("blue", "square", "growing"),
    ("blue", "triangle", "up"), ("blue", "triangle", "bouncing"), ("blue", "star", "down-right"),
    ("blue", "diamond", "still"), ("yellow", "circle", "bouncing"), ("yellow", "square", "left"),
    ("yellow", "square", "down-left"), ("yellow", "triangle", "up-right"), ("yellow", "star", "growing"),
    ("yellow", "diamond", "up"), ("purple", "circle", "shrinking"), ("purple", "circle", "up-left"),
    ("purple", "square", "down"), ("purple", "triangle", "bouncing"), ("purple", "star", "left"),
    ("purple", "diamond", "up-right"), ("purple", "diamond", "shrinking"), ("orange", "circle", "right"),
    ("orange", "square", "down-left"), ("orange", "triangle", "shrinking"), ("orange", "star", "down"),
    ("orange", "star", "rotating"), ("orange", "diamond", "bouncing"), ("white", "circle", "up-left"),
    ("white", "square", "rotating"), ("white", "triangle", "right"), ("white", "triangle", "down-right"),
    ("white", "star", "down-left"), ("white", "diamond", "shrinking"), ("cyan", "circle", "down-right"),
    ("cyan", "square", "still"), ("cyan", "square", "up-right"), ("cyan", "triangle", "up-left"),
    ("cyan", "star", "rotating"), ("cyan", "diamond", "right"),
)
_HELD_OUT_SET = frozenset(HELD_OUT_TRIPLES)

HELD_OUT_PHOTOS: tuple[str, ...] = ("cat",)


def held_out_triples() -> tuple[tuple[str, str, str], ...]:
    """The (colour, shape, motion) triples that training never shows."""
    return HELD_OUT_TRIPLES


def is_held_out(colour: str, shape: str, motion: str) -> bool:
    """Whether (colour, shape, motion) is one of the held-out triples."""
    return (colour, shape, motion) in _HELD_OUT_SET
