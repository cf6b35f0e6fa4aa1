"""Checkpoint files: exact round trips without pickles, atomic saves, and keeping the newest N."""

import json
import random

import numpy as np
import pytest
import torch

from training.checkpointing import (
    STATE_JSON, decode_state, encode_state, global_rng_state, latest_checkpoint, load_checkpoint, save_checkpoint,
    set_global_rng_state,
)  # fmt: skip


def test_state_round_trips_exactly():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.99))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "ints": {0: 1, 5: (2, 3.5)}, "array": np.arange(4, dtype=np.uint32),
             "rng": torch.Generator().manual_seed(1).get_state(), "none": None, "flag": True}
    data, tensors = encode_state(state)
    json.dumps(data)  # everything but tensors is plain JSON
    back = decode_state(json.loads(json.dumps(data)), tensors)
    assert back["ints"] == {0: 1, 5: (2, 3.5)} and back["none"] is None and back["flag"] is True
    assert back["array"].dtype == np.uint32 and np.array_equal(back["array"], state["array"])
    assert torch.equal(back["rng"], state["rng"])
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(back["optimizer"])
    assert fresh.param_groups[0]["betas"] == (0.8, 0.99)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(fresh.state[model.weight][key], optimizer.state[model.weight][key])


def test_global_rng_states_restore():
    state = global_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1))
    set_global_rng_state(decode_state(*encode_state(state)))
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


def test_save_keeps_the_newest_and_ignores_unfinished_saves(tmp_path):
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, {"step": step, "w": torch.full((2,), float(step))}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000004", "step-000006"]
    # A save killed mid-way leaves a hidden temp folder (or a folder without its JSON), never a newer checkpoint.
    (tmp_path / ".tmp-step-000008-abcd").mkdir()
    (tmp_path / "step-000010").mkdir()
    (tmp_path / "step-000010" / "state.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path).name == "step-000006"
    assert torch.equal(load_checkpoint(latest_checkpoint(tmp_path))["w"], torch.full((2,), 6.0))


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path, 1, {"w": torch.ones(1)}, keep=3)
    with pytest.raises(TypeError, match="cannot store a object"):
        save_checkpoint(tmp_path, 2, {"w": object()}, keep=3)
    assert [p.name for p in tmp_path.iterdir()] == ["step-000001"]


def test_load_refuses_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not a readable Kelp training checkpoint"):
        load_checkpoint(tmp_path)
    folder = save_checkpoint(tmp_path, 1, {"w": torch.ones(1)}, keep=1)
    meta = json.loads((folder / STATE_JSON).read_text())
    (folder / STATE_JSON).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="has format 99"):
        load_checkpoint(folder)
