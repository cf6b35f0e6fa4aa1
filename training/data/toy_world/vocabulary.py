"""The toy world's vocabulary: colours, shapes, sizes, backgrounds, motions, camera moves and photos.

Everything the sampler may draw and the detectors may name is listed here, once.
"""

from __future__ import annotations

from dataclasses import dataclass

# Object colours, saturated and far apart (>= 86 apart in RGB, >= 34 in Lab), and every one at
# least 134 away in RGB from every background tone below, so a fixed threshold separates them.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 200, 50),
    "blue": (40, 80, 245),
    "yellow": (245, 225, 40),
    "purple": (165, 45, 210),
    "orange": (250, 140, 25),
    "white": (240, 240, 240),
    "cyan": (40, 220, 230),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")

# Object size parameter (a circle's radius; other shapes have the same area) as a fraction of
# min(width, height). A digit's is half the side of its 8x8 box, larger because strokes are thin.
SIZES: dict[str, float] = {"small": 0.08, "large": 0.16}
DIGIT_SIZES: dict[str, float] = {"small": 0.12, "large": 0.19}
SIZE_JITTER = 0.1  # +-10% around the nominal size

# Motions in image coordinates (y grows downwards). Linear motions carry their unit direction.
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-0.7071, -0.7071),
    "up-right": (0.7071, -0.7071),
    "down-left": (-0.7071, 0.7071),
    "down-right": (0.7071, 0.7071),
}
MOTIONS: tuple[str, ...] = ("still", *DIRECTIONS, "bouncing", "rotating", "growing", "shrinking")
# Motions that need time to read as what they are; shorter clips only get the others.
MIN_FRAMES: dict[str, int] = {"bouncing": 9, "rotating": 5}
# A rotating circle looks still, and a rotated digit is a different glyph: neither is drawn.
SHAPE_MOTIONS: dict[str, tuple[str, ...]] = {
    shape: tuple(m for m in MOTIONS if not (shape == "circle" and m == "rotating")) for shape in SHAPES
}
DIGIT_MOTIONS: tuple[str, ...] = tuple(m for m in MOTIONS if m != "rotating")

# "pan right": the camera turns right, so the scene slides left in the frame.
CAMERA_MOVES: tuple[str, ...] = ("pan left", "pan right", "zoom in", "zoom out")


@dataclass(frozen=True)
class Background:
    name: str
    kind: str  # "plain" | "gradient" | "checkerboard" | "mottled" | "dots"
    colours: tuple[tuple[int, int, int], tuple[int, int, int]]  # plain: both the same
    phrase: str  # how captions name it, after "on"

    @property
    def shows_camera_moves(self) -> bool:
        """Whether a camera move over it can be seen, and told apart: a plain colour or a smooth
        gradient hides one, and a regular checkerboard confuses steps of a period (so it is
        drawn with a still camera only)."""
        return self.kind in ("mottled", "dots")


BACKGROUNDS: dict[str, Background] = {
    b.name: b
    for b in (
        Background("black", "plain", ((10, 10, 10),) * 2, "a black background"),
        Background("grey", "plain", ((72, 72, 72),) * 2, "a grey background"),
        Background("dark blue", "plain", ((18, 26, 78),) * 2, "a dark blue background"),
        Background("dark green", "plain", ((16, 58, 32),) * 2, "a dark green background"),
        Background("brown", "plain", ((70, 45, 30),) * 2, "a brown background"),
        Background("gradient", "gradient", ((30, 45, 110), (6, 8, 24)), "a dark blue gradient"),
        Background("checkerboard", "checkerboard", ((38, 38, 42), (70, 70, 76)), "a grey checkerboard"),
        Background("mottled", "mottled", ((34, 36, 40), (72, 74, 80)), "a mottled grey background"),
        Background("dots", "dots", ((22, 22, 50), (45, 45, 80)), "a polka-dot background"),
    )
}


@dataclass(frozen=True)
class PhotoSubject:
    name: str  # key in PHOTOS
    filename: str  # file shipped inside the skimage.data package (never a pooch download)
    phrases: tuple[str, ...]  # caption paraphrases for the subject


PHOTOS: dict[str, PhotoSubject] = {
    p.name: p
    for p in (
        PhotoSubject("astronaut", "astronaut.png", ("an astronaut", "a smiling astronaut")),
        PhotoSubject("cat", "chelsea.png", ("a cat", "a tabby cat")),
        PhotoSubject("coffee", "coffee.png", ("a cup of coffee", "a coffee cup on a saucer")),
        PhotoSubject("rocket", "rocket.jpg", ("a rocket", "a rocket on the launch pad")),
        PhotoSubject("galaxies", "hubble_deep_field.jpg", ("galaxies in deep space", "a field of distant galaxies")),
        PhotoSubject("cells", "ihc.png", ("stained cells under a microscope", "a microscope slide of cells")),
        PhotoSubject("retina", "retina.jpg", ("a retina", "the back of an eye")),
        PhotoSubject("motorcycle", "motorcycle_left.png", ("a motorcycle", "a parked motorcycle")),
        PhotoSubject("cameraman", "camera.png", ("a man with a camera", "a photographer with a tripod")),
        PhotoSubject("coins", "coins.png", ("old coins", "a row of old coins")),
        PhotoSubject("moon", "moon.png", ("the surface of the moon", "moon craters")),
    )
}
