"""Checks the photo-subject detector against the toy world's ground truth and writes the agreement table.

Run from the repo root: `python -m training.eval.validate_photo_subject --clips 440`. Prints a markdown
table, writes bench/results/photo-subject-agreement.json, and exits 1 if a case agrees on fewer than
99% of its clips. Cases: camera moves over every photo (the held-out one too), as rendered and
blurred, tinted and noisy (a stand-in for a generated clip), where the detector must name the photo
(so it also says "not this photo" for every other one); and shape and digit clips, where it must
name none.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy import ndimage

from training.data.toy_world import render_clip, toy_clip
from training.data.toy_world.sampling import photo_truth
from training.data.toy_world.vocabulary import CAMERA_MOVES, PHOTOS
from training.eval.photo_subject import identify_photo

THRESHOLD = 0.99
DEFAULT_OUT = Path("bench/results/photo-subject-agreement.json")
SCENE_KINDS = ("shape", "shapes", "digit")


def degrade(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur (sigma 1.2 px), a colour cast (gain 0.9-1.1, offset +-12 per channel) and noise (sigma 8)."""
    video = ndimage.gaussian_filter(frames.astype(np.float32), (0, 1.2, 1.2, 0))
    video = video * rng.uniform(0.9, 1.1, 3) + rng.uniform(-12, 12, 3) + rng.normal(0, 8, video.shape)
    return np.clip(video + 0.5, 0, 255).astype(np.uint8)


def photo_clip(seed: int, index: int, width: int, height: int, num_frames: int) -> tuple[str, np.ndarray]:
    """(photo, frames) of clip `index`: the photos and camera moves in turn, the path drawn from `seed`."""
    photo = list(PHOTOS)[index % len(PHOTOS)]
    move = CAMERA_MOVES[(index // len(PHOTOS)) % len(CAMERA_MOVES)]
    rng = np.random.default_rng([seed, index])
    truth = photo_truth(rng, photo, move, width=width, height=height, num_frames=num_frames, fps=8.0)
    return photo, render_clip(truth)


def run_photos(count: int, seed: int, size: tuple[int, int, int], degraded: bool) -> dict:
    rng = np.random.default_rng([seed, 1])
    right, scores, failures = [], {}, []
    for i in range(count):
        photo, frames = photo_clip(seed, i, *size)
        match = identify_photo(degrade(frames, rng) if degraded else frames)
        right.append(match.photo == photo)
        scores.setdefault(photo, []).append(match.score)
        if match.photo != photo and len(failures) < 5:
            failures.append({"index": i, "photo": photo, "named": match.photo, "closest": match.best, "score": match.score})
    lowest = {photo: round(min(s), 3) for photo, s in scores.items()}
    return {"clips": count, "agreement": float(np.mean(right)), "lowest_score": lowest, "failures": failures}


def run_scenes(count: int, seed: int, size: tuple[int, int, int]) -> dict:
    width, height, num_frames = size
    rejected, failures, highest = [], [], 0.0
    for i in range(count):
        clip_seed = seed * 1_000_003 + i
        clip = toy_clip(clip_seed, width=width, height=height, num_frames=num_frames, kind=SCENE_KINDS[i % 3])
        match = identify_photo(clip.frames)
        rejected.append(match.photo is None)
        highest = max(highest, match.score)
        if match.photo is not None and len(failures) < 5:
            failures.append({"seed": clip_seed, "caption": clip.caption, "named": match.photo, "score": match.score})
    return {"clips": count, "agreement": float(np.mean(rejected)), "highest_score": round(highest, 3), "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=440, help="clips per case")
    parser.add_argument("--size", type=int, nargs=3, default=(128, 128, 17), metavar=("W", "H", "FRAMES"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error(f"--clips must be at least 1 but is {args.clips}")
    start = time.perf_counter()
    size = tuple(args.size)
    cases = {
        "photo named": run_photos(args.clips, args.seed, size, degraded=False),
        "photo named, degraded": run_photos(args.clips, args.seed, size, degraded=True),
        "shape or digit clip, none named": run_scenes(args.clips, args.seed, size),
    }
    seconds = time.perf_counter() - start
    passed = all(case["agreement"] >= THRESHOLD for case in cases.values())
    print("| case | clips | agreement |\n|---|---:|---:|")
    for name, case in cases.items():
        print(f"| {name} | {case['clips']} | {100 * case['agreement']:.1f}% |")
    print(f"\n{3 * args.clips} clips in {seconds:.0f} s; threshold {THRESHOLD:.0%}: {'PASSED' if passed else 'FAILED'}")
    for name, case in cases.items():
        for failure in case["failures"]:
            print(f"  {name}: {failure}")
    report = {
        "command": "python -m training.eval.validate_photo_subject " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "size": list(size),
        "threshold": THRESHOLD,
        "seconds": round(seconds, 1),
        "passed": passed,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
