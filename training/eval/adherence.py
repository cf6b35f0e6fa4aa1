"""Prompt adherence: does a clip show what its toy caption asked for, attribute by attribute?

Detected objects are paired with the asked-for ones by how many attributes agree, never by
position, since a generated clip is free to put things anywhere.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from training.data.toy_world.truth import ClipTruth, ObjectTruth
from training.eval.camera_motion import estimate_camera
from training.eval.detect import DetectedObject, analyse_clip, check_frames


def object_agreement(want: ObjectTruth, got: DetectedObject) -> dict[str, bool]:
    """Which attributes of a detected object match the asked-for one."""
    digit = want.kind == "digit"
    return {
        "colour": got.colour == want.colour,
        "shape": (f"digit {got.digit}" if digit else got.shape) == want.label,
        "motion": got.motion == want.motion,
        "size": (got.digit_size if digit else got.size) == want.size,
    }


def prompt_adherence(frames: np.ndarray, truth: ClipTruth) -> dict[str, float]:
    """Per-attribute scores of `frames` against `truth`; see `adherence_with_findings`."""
    return adherence_with_findings(frames, truth)[0]


def adherence_with_findings(frames: np.ndarray, truth: ClipTruth) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Per-attribute scores in [0, 1] of `frames` against `truth` (from a toy caption's spec).

    Scene clips: count (1 if the number of objects is right), colour, shape, motion and size (the
    fraction of asked-for objects shown with that attribute), camera (1 if the camera moves as
    asked, or stays still when not asked to move) and overall (mean of count, colour, shape and
    motion, plus camera when a move was asked for). Photo clips: camera and overall.
    Findings: what the detectors saw, one dict per detected object (colour, shape, size, motion), so
    a miss can be read as what was drawn instead (an "up-left" that moved "up").
    """
    check_frames(frames)
    if truth.photo is not None:
        camera = float(estimate_camera(frames).label == truth.camera)
        return {"camera": camera, "overall": camera}, []
    analysis = analyse_clip(frames)
    want, got = truth.objects, analysis.objects
    totals = {"colour": 0.0, "shape": 0.0, "motion": 0.0, "size": 0.0}
    if want and got:
        agreement = [[object_agreement(w, g) for g in got] for w in want]
        # Size counts half: it breaks ties between pairings, it should not decide them.
        score = np.array([[a["colour"] + a["shape"] + a["motion"] + 0.5 * a["size"] for a in row] for row in agreement])
        for i, j in zip(*linear_sum_assignment(-score)):
            for name, ok in agreement[i][j].items():
                totals[name] += float(ok)
    scores = {name: total / max(len(want), 1) for name, total in totals.items()}
    scores["count"] = float(len(got) == len(want))
    scores["camera"] = float(analysis.camera == (truth.camera or "static"))
    overall = [scores["count"], scores["colour"], scores["shape"], scores["motion"]]
    if truth.camera is not None:
        overall.append(scores["camera"])
    scores["overall"] = float(np.mean(overall))
    findings = [{"colour": g.colour, "shape": g.shape, "size": g.size, "motion": g.motion} for g in got]
    return scores, findings
