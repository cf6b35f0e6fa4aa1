"""Training checkpoints that resume bit for bit: every tensor in one safetensors file, the rest as JSON, no pickles.

A trainer hands over a nested state (dicts, lists, tuples, numbers, strings and tensors); tensors are stored in
`state.safetensors` and referenced from `state.json`. A checkpoint is written into a hidden temp folder and
renamed into place once complete, so a kill mid-save leaves the previous checkpoint as the newest valid one.

Why not accelerate's save_state: it pickles optimizer, scheduler and RNG states, loads registered custom objects
(our EMA) with `weights_only=False` from a folder a user could swap, and skips RNG states it cannot read with
only a log line, which would silently break exact resume.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"
_NAME = re.compile(r"^step-(\d{6,})$")
FORMAT_VERSION = 1


def encode_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state into JSON-safe data and a flat {key: tensor} dict; decode_state inverts it."""
    tensors: dict[str, torch.Tensor] = {}

    def encode(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            key = str(len(tensors))
            tensors[key] = value.detach().cpu().clone().contiguous()  # clone: safetensors refuses shared storage
            return {"__tensor__": key}
        if isinstance(value, np.ndarray):
            return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
        if isinstance(value, tuple):
            return {"__tuple__": [encode(v) for v in value]}
        if isinstance(value, list):
            return [encode(v) for v in value]
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: encode(v) for k, v in value.items()}
            return {"__items__": [[encode(k), encode(v)] for k, v in value.items()]}  # int keys (optimizer state)
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (np.integer, np.floating)):
            return value.item()
        raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")

    return encode(state), tensors


def decode_state(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(data, list):
        return [decode_state(v, tensors) for v in data]
    if not isinstance(data, dict):
        return data
    if "__tensor__" in data:
        return tensors[data["__tensor__"]]
    if "__ndarray__" in data:
        return np.asarray(data["__ndarray__"], dtype=data["dtype"])
    if "__tuple__" in data:
        return tuple(decode_state(v, tensors) for v in data["__tuple__"])
    if "__items__" in data:
        return {decode_state(k, tensors): decode_state(v, tensors) for k, v in data["__items__"]}
    return {k: decode_state(v, tensors) for k, v in data.items()}


def global_rng_state() -> dict:
    """Python, numpy and torch (CPU, and CUDA if present) global generator states of this process."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dirs(folder: str | Path) -> list[Path]:
    """Complete checkpoints in `folder`, oldest first (temp folders of unfinished saves are not listed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _NAME.match(p.name) and (p / STATE_JSON).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = checkpoint_dirs(folder)
    return found[-1] if found else None


def save_checkpoint(folder: str | Path, step: int, state: dict, *, keep: int) -> Path:
    """Write `state` as `folder/step-XXXXXX` atomically, then delete all but the newest `keep` checkpoints."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:06d}"
    tmp = folder / f".tmp-{final.name}-{secrets.token_hex(4)}"
    data, tensors = encode_state(state)
    try:
        tmp.mkdir()
        save_file(tensors, tmp / STATE_TENSORS)
        # JSON last: a folder without state.json is never taken for a checkpoint.
        (tmp / STATE_JSON).write_text(json.dumps({"format_version": FORMAT_VERSION, "step": step, "state": data}))
        for path in tmp.iterdir():
            _fsync(path)
        if final.exists():  # the same step saved again (e.g. the final save right after an interval save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in checkpoint_dirs(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path) -> dict:
    """The state saved by save_checkpoint; tensors load from safetensors, everything else from JSON."""
    path = Path(path)
    try:
        meta = json.loads((path / STATE_JSON).read_text())
        tensors = load_file(path / STATE_TENSORS, device="cpu")
    except (OSError, ValueError) as err:
        raise ValueError(f"`checkpoint` {str(path)!r} is not a readable Kelp training checkpoint ({err})") from err
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"`checkpoint` {str(path)!r} has format {meta.get('format_version')!r}, "
                         f"this Kelp reads {FORMAT_VERSION}")
    return decode_state(meta["state"], tensors)


def _fsync(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
