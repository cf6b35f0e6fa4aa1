"""The torch dataset wrappers: tensors the trainer can use, the same item every time."""

import torch
from torch.utils.data import DataLoader

from training.data.toy_world.dataset import ToyShotsDataset, ToyWorldDataset, collate_clips


def test_items_are_videos_in_minus_one_to_one_and_deterministic():
    data = ToyWorldDataset(seed=3, length=5, width=64, height=64, num_frames=9)
    item = data[2]
    assert item["video"].shape == (3, 9, 64, 64)
    assert item["video"].dtype == torch.float32
    assert -1.0 <= item["video"].min() and item["video"].max() <= 1.0
    assert isinstance(item["caption"], str) and item["truth"].caption == item["caption"]
    again = ToyWorldDataset(seed=3, length=5, width=64, height=64, num_frames=9)[2]
    assert torch.equal(item["video"], again["video"])
    assert data[1]["caption"] != item["caption"] or not torch.equal(data[1]["video"], item["video"])


def test_loader_batches_clips():
    data = ToyWorldDataset(seed=0, length=4, width=64, height=64, num_frames=5)
    batch = next(iter(DataLoader(data, batch_size=4, collate_fn=collate_clips)))
    assert batch["video"].shape == (4, 3, 5, 64, 64)
    assert len(batch["caption"]) == 4 and len(batch["truth"]) == 4


def test_shots_dataset_gives_one_video_per_shot():
    item = ToyShotsDataset(seed=1, length=2, width=64, height=64)[0]
    assert len(item["videos"]) == len(item["captions"]) >= 2
    assert all(v.shape[0] == 3 and v.shape[2:] == (64, 64) for v in item["videos"])
