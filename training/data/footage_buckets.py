"""Aspect-ratio buckets for training clips, and a batch sampler that never mixes buckets in a batch."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

# (width, height), multiples of 16, about 128x128 pixels each: the bundled model's training size.
# Square, 4:3-ish and 5:3-ish both ways; 16:9 footage goes to 160x96 and loses ~6% of its width.
DEFAULT_BUCKETS: tuple[tuple[int, int], ...] = ((128, 128), (144, 112), (112, 144), (160, 96), (96, 160))

_MULTIPLE = 16  # the VAE divides by 8 and the transformer patches by 2


def make_buckets(area: int, aspects: Sequence[float], multiple: int = _MULTIPLE) -> tuple[tuple[int, int], ...]:
    """(width, height) buckets, multiples of `multiple`, near `area` pixels, one per width/height ratio."""
    if isinstance(area, bool) or not isinstance(area, int) or area < multiple * multiple:
        raise ValueError(f"`area` must be an int of at least {multiple * multiple}, got {area!r}")
    buckets = []
    for aspect in aspects:
        if not isinstance(aspect, (int, float)) or not 0 < aspect < float("inf"):
            raise ValueError(f"`aspects` must hold positive numbers, got {aspect!r}")
        width = max(multiple, round(math.sqrt(area * aspect) / multiple) * multiple)
        height = max(multiple, round(math.sqrt(area / aspect) / multiple) * multiple)
        if (width, height) not in buckets:
            buckets.append((width, height))
    return tuple(buckets)


def check_buckets(buckets: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """`buckets` as a tuple of (width, height) pairs, or a ValueError naming the bad one."""
    if isinstance(buckets, (str, bytes)) or not isinstance(buckets, Sequence) or not buckets:
        raise ValueError(f"`buckets` must be a non-empty list of (width, height), got {buckets!r}")
    checked = []
    for bucket in buckets:
        ok = isinstance(bucket, Sequence) and len(bucket) == 2 and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 and n % _MULTIPLE == 0 for n in bucket
        )
        if not ok:
            raise ValueError(f"`buckets` entries must be (width, height), positive multiples of 16, got {bucket!r}")
        checked.append((bucket[0], bucket[1]))
    return tuple(checked)


def nearest_bucket(width: int, height: int, buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is nearest to width/height, measured in log ratio; ties go to the earlier one."""
    aspect = math.log(width / height)
    return min(buckets, key=lambda b: abs(math.log(b[0] / b[1]) - aspect))


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices that share one key (a clip's (width, height, frames)), shuffled by a seed.

    Call `set_epoch(n)` before each epoch for a new, still reproducible, order.
    """

    def __init__(
        self, keys: Sequence[Hashable], batch_size: int, *, seed: int = 0, shuffle: bool = True, drop_last: bool = False
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"`seed` must be an int >= 0, got {seed!r}")
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0
        groups: dict[Hashable, list[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault(key, []).append(index)
        self._groups = list(groups.values())  # in first-seen order, so the result does not depend on hashing

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for group in self._groups:
            order = [group[i] for i in rng.permutation(len(group))] if self.shuffle else group
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return iter(batches)

    def __len__(self) -> int:
        if self.drop_last:
            return sum(len(g) // self.batch_size for g in self._groups)
        return sum(math.ceil(len(g) / self.batch_size) for g in self._groups)
