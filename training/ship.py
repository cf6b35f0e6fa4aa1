"""Ship a trained model folder into `assets/`: weights stored in float16 (half the bytes), the folder replaced
atomically, its size checked against the budget for a bundled model.

    python -m training.ship --model runs/small-cpu/model [--name kelp-small] [--max-mb 50]

The engine loads the float16 files into float32 (or whatever dtype it runs in): storage precision only. float16
rather than bfloat16 because small models' weights fit its range and it keeps 3 more mantissa bits.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.model_loader import BUNDLED_MODELS_DIR, MODEL_INDEX, resolve_model
from core.quant.checkpoint import is_quantized_folder

FLOAT16_MAX = float(torch.finfo(torch.float16).max)
DEFAULT_MAX_MB = 50.0  # issue 3: the bundled model at most ~50 MB in all


def ship_model(model: str, *, name: str, assets_dir: str | Path = BUNDLED_MODELS_DIR,
               max_mb: float = DEFAULT_MAX_MB) -> Path:
    """Copy the model folder `model` to `assets_dir/name` with its float weights as float16; returns the folder.
    Raises ValueError (naming the argument) for a bad name, a weight float16 cannot hold, or a folder over `max_mb`;
    the previous `assets_dir/name` stays untouched then."""
    source = resolve_model(model)
    if source.folder is None:
        raise ValueError(f"`model` must be a trained model folder, got {model!r} (random weights)")
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"`name` must be a plain folder name, got {name!r}")
    if is_quantized_folder(source.folder / "transformer"):
        raise ValueError(f"`model` {model!r} is saved quantized; ship the full-precision folder")
    target = Path(assets_dir) / name
    tmp = target.with_name(f".{name}.tmp-{secrets.token_hex(4)}")
    try:
        for path in sorted(source.folder.rglob("*")):
            relative = path.relative_to(source.folder)
            if path.is_dir() or relative.parts[0].startswith("."):
                continue
            out = tmp / relative
            out.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".safetensors":
                save_file(_as_float16(load_file(path), path), out, metadata={"format": "pt"})
            elif path.suffix == ".json":
                shutil.copyfile(path, out)
        size_mb = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()) / 1e6
        if size_mb > max_mb:
            raise ValueError(f"`model` {model!r} takes {size_mb:.1f} MB in float16, over `max_mb` {max_mb}")
        if not (tmp / MODEL_INDEX).is_file():
            raise ValueError(f"`model` {model!r}: {MODEL_INDEX} is missing")
        old = target.with_name(f".{name}.old-{secrets.token_hex(4)}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _as_float16(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.dtype != torch.float16:
            peak = tensor.abs().max().item() if tensor.numel() else 0.0
            if not peak < FLOAT16_MAX:  # also catches NaN
                raise ValueError(f"weight {key!r} in {str(path)!r} has magnitude {peak}, which float16 cannot hold")
            tensor = tensor.to(torch.float16)
        out[key] = tensor.contiguous()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.ship", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained model folder, e.g. runs/small-cpu/model")
    parser.add_argument("--name", default="kelp-small", help="folder name under assets/ (default: kelp-small)")
    parser.add_argument("--assets-dir", default=str(BUNDLED_MODELS_DIR), help="default: the repo's assets/")
    parser.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB, help="size budget (default: 50)")
    args = parser.parse_args(argv)
    try:
        folder = ship_model(args.model, name=args.name, assets_dir=args.assets_dir, max_mb=args.max_mb)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
    print(f"shipped {args.model} -> {folder} ({size_mb:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
