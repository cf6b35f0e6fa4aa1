"""The toy world's entry points: a rendered clip or multi-shot sample from a seed, and its words."""

from __future__ import annotations

from training.data.toy_world.captions import CAMERA_PHRASES, DIGIT_NOUNS, MOTION_PHRASES
from training.data.toy_world.held_out import HELD_OUT_PHOTOS
from training.data.toy_world.render import render_clip
from training.data.toy_world.sampling import sample_truth
from training.data.toy_world.shots import sample_shots
from training.data.toy_world.truth import ToyClip, ToyShots
from training.data.toy_world.vocabulary import BACKGROUNDS, COLOURS, PHOTOS, SHAPES, SIZES


def toy_clip(
    seed: int,
    *,
    width: int = 128,
    height: int = 128,
    num_frames: int = 17,
    fps: float = 8.0,
    kind: str | None = None,
    held_out: bool = False,
    camera: bool | None = None,
) -> ToyClip:
    """Toy clip `seed`: frames (T, H, W, 3) uint8, caption and truth; see sampling.sample_truth."""
    truth = sample_truth(
        seed, width=width, height=height, num_frames=num_frames, fps=fps, kind=kind, held_out=held_out, camera=camera
    )
    return ToyClip(render_clip(truth), truth.caption, truth)


def toy_shots(
    seed: int,
    *,
    num_shots: int | None = None,
    kind: str | None = None,
    width: int = 128,
    height: int = 128,
    frame_choices: tuple[int, ...] = (9, 13, 17),
    shot_frames: tuple[int, ...] | None = None,
    fps: float = 8.0,
) -> ToyShots:
    """Multi-shot sample `seed`: 2-4 shots (or num_shots, or one per shot_frames) of one subject;
    see shots.sample_shots."""
    subject, truths = sample_shots(
        seed,
        num_shots=num_shots,
        kind=kind,
        width=width,
        height=height,
        frame_choices=frame_choices,
        shot_frames=shot_frames,
        fps=fps,
    )
    return ToyShots([ToyClip(render_clip(t), t.caption, t) for t in truths], subject)


def caption_vocabulary() -> dict[str, list[str]]:
    """The words and phrases the toy captions use, by category (what the bundled model knows)."""
    return {
        "colours": list(COLOURS),
        "shapes": list(SHAPES),
        "digits": [noun.format(d=d) for noun in DIGIT_NOUNS for d in range(10)],
        "sizes": list(SIZES),
        "motions": [p for phrases in MOTION_PHRASES.values() for p in phrases],
        "backgrounds": [b.phrase for b in BACKGROUNDS.values()],
        "camera": [p for phrases in CAMERA_PHRASES.values() for p in phrases],
        "photos": [p for name, photo in PHOTOS.items() if name not in HELD_OUT_PHOTOS for p in photo.phrases],
    }
