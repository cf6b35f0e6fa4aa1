"""The structured ground truth kept next to every toy caption, and the clip containers.

A ClipTruth holds everything needed to draw its clip, so specs can be sampled (and checked) without
rendering, and `render.render_clip(truth)` draws the same frames every time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ObjectTruth:
    kind: str  # "shape" | "digit"
    shape: str | None  # one of vocabulary.SHAPES for kind "shape", else None
    digit: int | None  # 0-9 for kind "digit", else None
    colour: str
    size: str  # "small" | "large": the size at the first frame
    motion: str  # one of vocabulary.MOTIONS, in the world (a camera move is not the object's motion)
    centres: tuple[tuple[float, float], ...]  # (x, y) in image pixels per frame, as seen
    radii: tuple[float, ...]  # size parameter in image pixels per frame (a circle's radius)
    angles: tuple[float, ...]  # rotation in degrees per frame, clockwise on screen
    digit_sample: int | None = None  # index into sklearn's digits for kind "digit"

    @property
    def label(self) -> str:
        """What the object is called: its shape, or "digit 7"."""
        return self.shape if self.kind == "shape" else f"digit {self.digit}"

    @property
    def triple(self) -> tuple[str, str, str]:
        """(colour, shape or "digit N", motion), the unit that held-out combinations are made of."""
        return (self.colour, self.label, self.motion)


@dataclass(frozen=True)
class ClipTruth:
    objects: tuple[ObjectTruth, ...]
    background: str | None  # key of vocabulary.BACKGROUNDS; None for photo clips
    camera: str | None  # one of vocabulary.CAMERA_MOVES, or None for a still camera
    photo: str | None  # key of vocabulary.PHOTOS for photo clips
    caption: str
    fps: float
    width: int
    height: int
    num_frames: int
    # (x, y, zoom) per frame: the world point at the image centre and the magnification. World
    # units are image pixels at zoom 1; a photo is scaled into the world by sources.photo_scale.
    camera_path: tuple[tuple[float, float, float], ...]
    background_phase: tuple[float, float] = (0.0, 0.0)  # texture offset in world pixels

    @property
    def kind(self) -> str:
        """"photo", "digit" (one or two digits), "shape" (one shape) or "shapes" (two or three)."""
        if self.photo is not None:
            return "photo"
        if self.objects and self.objects[0].kind == "digit":
            return "digit"
        return "shape" if len(self.objects) == 1 else "shapes"


@dataclass
class ToyClip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    caption: str
    truth: ClipTruth


@dataclass
class ToyShots:
    shots: list[ToyClip]  # consecutive shots of one subject, each with its own caption and length
    subject: str  # the shared subject phrase, e.g. "a small red circle on a black background"
