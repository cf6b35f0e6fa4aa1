"""The dataset registry, the synthetic squares, and the sharded, resumable index stream."""

import numpy as np
import pytest
import torch

from training.datasets import (
    DATASETS, ShardedStream, SyntheticSquares, build_dataset, dataset_factory, item_video, register_dataset,
)  # fmt: skip


def test_synthetic_items_are_deterministic_captioned_clips():
    data = build_dataset("synthetic", width=32, height=32, num_frames=9, seed=3, options={"length": 8})
    assert isinstance(data, SyntheticSquares) and len(data) == 8
    item = data[5]
    assert item["video"].shape == (3, 9, 32, 32) and item["video"].dtype == torch.float32
    assert -1 <= item["video"].min() and item["video"].max() <= 1
    assert item["caption"].startswith("a ") and " square moving " in item["caption"]
    assert torch.equal(item["video"], data[5]["video"]) and item["caption"] == data[5]["caption"]
    assert not torch.equal(item["video"][:, 0], item["video"][:, -1])  # it moves
    other = build_dataset("synthetic", width=32, height=32, num_frames=9, seed=4, options={"length": 8})
    assert not torch.equal(item["video"], other[5]["video"])


def test_synthetic_multi_shot_keeps_the_subject_across_two_shots():
    data = build_dataset("synthetic", width=32, height=32, num_frames=17, seed=0, multi_shot=True)
    shots = data[0]["shots"]
    assert [s["video"].shape[1] for s in shots] == [9, 5]  # 5 latent frames split 3 + 2
    colour = shots[0]["caption"].split()[1]
    assert all(s["caption"].startswith(f"a {colour} square") for s in shots)
    assert build_dataset("synthetic", width=32, height=32, num_frames=1, seed=0, multi_shot=True) is None


def test_registering_a_dataset_is_one_line(monkeypatch):
    monkeypatch.setitem(DATASETS, "by-path", "training.datasets:synthetic_squares")
    assert dataset_factory("by-path") is dataset_factory("synthetic")

    def single_shot_only(*, width, height, num_frames, seed):
        return [{"video": torch.zeros(3, num_frames, height, width), "caption": "grey"}]

    register_dataset("plain", single_shot_only)
    try:
        assert len(build_dataset("plain", width=16, height=16, num_frames=1, seed=0)) == 1
        assert build_dataset("plain", width=16, height=16, num_frames=5, seed=0, multi_shot=True) is None
    finally:
        DATASETS.pop("plain")
    with pytest.raises(ValueError, match=r"`data.source` must be one of .*got 'nope'"):
        dataset_factory("nope")


def test_item_video_accepts_uint8_frames_and_names_a_wrong_size():
    frames = np.full((5, 16, 16, 3), 255, dtype=np.uint8)
    assert torch.equal(item_video({"video": frames}, "x", 5, 16, 16), torch.ones(3, 5, 16, 16))
    with pytest.raises(ValueError, match=r"item 7: `video` must be \(3, 9, 16, 16\).*\(3, 5, 16, 16\)"):
        item_video({"video": torch.zeros(3, 5, 16, 16)}, "item 7", 9, 16, 16)


def test_streams_shard_each_epoch_and_resume_from_a_position():
    ranks = [ShardedStream(10, seed=1, rank=r, world_size=2) for r in range(2)]
    first_epoch = [ranks[0].take(5), ranks[1].take(5)]
    assert sorted(first_epoch[0] + first_epoch[1]) == list(range(10))  # disjoint, together the whole dataset
    later = ranks[0].take(7)
    resumed = ShardedStream(10, seed=1, rank=0, world_size=2, position=5)
    assert resumed.take(7) == later and resumed.position == ranks[0].position == 12
    assert ShardedStream(10, seed=2).take(10) != ShardedStream(10, seed=1).take(10)
