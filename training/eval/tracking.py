"""Links each frame's regions into tracks: an optimal assignment from frame to frame, by distance,
with a penalty for changing colour, and a gate on how far an object may jump.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from training.eval.segmentation import Region

MAX_STEP = 0.3  # farthest an object may move between frames, fraction of min(width, height)
COLOUR_PENALTY = 0.5  # cost of a colour change, in the same units (fractions of the side)
MAX_GAP = 3  # frames a track may go unseen and still be continued
MIN_PRESENCE = 0.5  # fraction of frames a track must be seen in to count as an object


def link_regions(regions: list[list[Region]], side: float) -> list[list[Region | None]]:
    """Tracks (one Region or None per frame) through per-frame region lists, longest-lived kept."""
    num_frames = len(regions)
    tracks: list[list[Region | None]] = []
    last_seen: list[int] = []
    for t, found in enumerate(regions):
        open_tracks = [k for k, seen in enumerate(last_seen) if t - seen <= MAX_GAP]
        cost = np.full((len(open_tracks), len(found)), np.inf)
        for i, k in enumerate(open_tracks):
            prev = tracks[k][last_seen[k]]
            for j, region in enumerate(found):
                step = np.hypot(region.centroid[0] - prev.centroid[0], region.centroid[1] - prev.centroid[1]) / side
                if step <= MAX_STEP * (t - last_seen[k]):
                    cost[i, j] = step + (COLOUR_PENALTY if region.colour != prev.colour else 0.0)
        matched: set[int] = set()
        if cost.size:
            rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e6))
            for i, j in zip(rows, cols):
                if np.isfinite(cost[i, j]):
                    k = open_tracks[i]
                    tracks[k][t], last_seen[k] = found[j], t
                    matched.add(j)
        for j, region in enumerate(found):
            if j not in matched:
                tracks.append([None] * num_frames)
                tracks[-1][t] = region
                last_seen.append(t)
    needed = max(1, int(np.ceil(MIN_PRESENCE * num_frames)))
    return [track for track in tracks if sum(r is not None for r in track) >= needed]
