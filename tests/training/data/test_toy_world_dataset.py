"""The torch dataset wrappers: tensors the trainer can use, the same item every time."""

import torch
from torch.utils.data import DataLoader

from training.data.toy_world.dataset import ToyShotsDataset, ToyWorldDataset, build_dataset, collate_clips


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
    assert len(item["shots"]) >= 2 and isinstance(item["subject"], str)
    assert all(s["video"].shape[0] == 3 and s["video"].shape[2:] == (64, 64) for s in item["shots"])
    assert len({s["caption"] for s in item["shots"]}) == len(item["shots"])


def test_trainer_factory_gives_clips_and_a_fixed_shot_layout():
    clips = build_dataset(width=64, height=64, num_frames=9, seed=2, length=10)
    assert len(clips) == 10 and clips[3]["video"].shape == (3, 9, 64, 64)
    shots = build_dataset(width=64, height=64, num_frames=17, seed=2, length=10, multi_shot=True)
    # 17 frames are 5 latent frames, split 3 + 2: shots of 9 and 5 frames, for every item.
    assert {tuple(s["video"].shape[1] for s in shots[i]["shots"]) for i in range(10)} == {(9, 5)}
    assert build_dataset(width=64, height=64, num_frames=1, seed=2, multi_shot=True) is None
