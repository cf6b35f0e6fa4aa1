"""Ship a trained model folder into `assets/`: weights stored in float16 (half the bytes), the folder replaced
atomically, its size checked against the budget for a bundled model.

    python -m training.ship --model runs/small-cpu/model [--name kelp-small] [--max-mb 50]
                            [--vae runs/vae-small-decoder/vae]

`--vae` ships a refined VAE in place of the model's own: one whose decoder was trained further with the encoder
fixed (`model.decoder_only`), so the DiT's latents are unchanged, or whose encoder was with the decoder fixed
(`model.encoder_only`), so every latent the DiT makes decodes as before. Any other VAE is refused.

The engine loads the float16 files into float32 (or whatever dtype it runs in): storage precision only. float16
rather than bfloat16 because small models' weights fit its range and it keeps 3 more mantissa bits.
"""

from __future__ import annotations

import argparse
import json
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
               max_mb: float = DEFAULT_MAX_MB, vae: str | Path | None = None) -> Path:
    """Copy the model folder `model` to `assets_dir/name` with its float weights as float16; returns the folder.
    `vae`: a VAE folder to ship instead of the model's own; it must have the same latent statistics and the same
    encoder or the same decoder. Raises ValueError (naming the argument) for a bad name, a weight float16 cannot hold,
    a VAE with both halves changed, or a folder over `max_mb`; the previous `assets_dir/name` stays untouched then."""
    source = resolve_model(model)
    if source.folder is None:
        raise ValueError(f"`model` must be a trained model folder, got {model!r} (random weights)")
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"`name` must be a plain folder name, got {name!r}")
    if is_quantized_folder(source.folder / "transformer"):
        raise ValueError(f"`model` {model!r} is saved quantized; ship the full-precision folder")
    if vae is not None:
        check_same_latent_space(source.folder / "vae", Path(vae))
    target = Path(assets_dir) / name
    tmp = target.with_name(f".{name}.tmp-{secrets.token_hex(4)}")
    try:
        files = [(p, p.relative_to(source.folder)) for p in sorted(source.folder.rglob("*"))
                 if vae is None or p.relative_to(source.folder).parts[0] != "vae"]
        if vae is not None:
            files += [(p, Path("vae") / p.relative_to(vae)) for p in sorted(Path(vae).rglob("*"))]
        for path, relative in files:
            if path.is_dir() or any(part.startswith(".") for part in relative.parts):
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


def check_same_latent_space(model_vae: Path, refined: Path) -> None:
    """ValueError unless the VAE folder `refined` keeps `model_vae`'s latent space: the same latent statistics and
    either the same encoder (a decoder refined with model.decoder_only: the DiT's inputs unchanged) or the same decoder
    (an encoder refined with model.encoder_only: every latent the DiT makes decodes as before)."""
    if not (refined / "config.json").is_file():
        raise ValueError(f"`vae` must be a VAE folder with a config.json, got {str(refined)!r}")
    configs = [json.loads((folder / "config.json").read_text()) for folder in (model_vae, refined)]
    for key in ("latents_mean", "latents_std", "z_dim", "patch_size", "is_residual"):
        if configs[0].get(key) != configs[1].get(key):
            raise ValueError(f"`vae` {str(refined)!r} has another {key} than the model's VAE: not a refinement of it")
    weights = [load_file(next(folder.glob("*.safetensors"))) for folder in (model_vae, refined)]
    differing = {half: _first_difference(weights, prefixes)
                 for half, prefixes in (("encoder", ("encoder.", "quant_conv.")),
                                        ("decoder", ("decoder.", "post_quant_conv.")))}
    if differing["encoder"] and differing["decoder"]:
        raise ValueError(f"`vae` {str(refined)!r} both encodes and decodes differently from the model's VAE "
                         f"({differing['encoder']} and {differing['decoder']} differ): only a VAE trained with "
                         f"model.decoder_only or model.encoder_only from it keeps the DiT's latent space")


def _first_difference(weights: list[dict[str, torch.Tensor]], prefixes: tuple[str, ...]) -> str | None:
    """The first weight under `prefixes` that the two state dicts do not hold equal (None: all equal)."""
    for key in sorted(k for k in weights[0].keys() | weights[1].keys() if k.startswith(prefixes)):
        a, b = weights[0].get(key), weights[1].get(key)
        if a is None or b is None or a.shape != b.shape or not torch.equal(a.float(), b.float()):
            return key
    return None


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
    parser.add_argument("--vae", default=None, help="a refined VAE folder (same encoder) to ship instead")
    args = parser.parse_args(argv)
    try:
        folder = ship_model(args.model, name=args.name, assets_dir=args.assets_dir, max_mb=args.max_mb,
                            vae=args.vae)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
    print(f"shipped {args.model} -> {folder} ({size_mb:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
