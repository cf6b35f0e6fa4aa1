"""Find, load and save Kelp models: a folder of safetensors weights, or a preset with seeded random weights.

A model folder holds `kelp_model.json` (preset, text encoder, default settings), `transformer/` and
`vae/` in diffusers' layout (config.json + safetensors). Weights load from safetensors only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from core.models.presets import MODEL_PRESETS, GenerationDefaults
from core.models.vae import build_vae
from core.models.video_dit import KelpVideoTransformer
from core.quant.apply import quantize_model
from core.quant.base import QuantizationInfo
from core.quant.checkpoint import is_quantized_folder, load_quantized, read_quantization, save_quantized
from core.quant.modes import NONE, check_mode

MODEL_INDEX = "kelp_model.json"
BUNDLED_MODELS_DIR = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_MODEL = "kelp-small"
RANDOM_PREFIX = "random:"  # "random:<preset>[:<seed>]": untrained weights, for tests and benchmarks


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from, known without loading any weights."""

    name: str  # as the user named it
    preset: str  # key of MODEL_PRESETS
    text_encoder: str
    defaults: GenerationDefaults
    folder: Path | None = None  # None: random weights
    random_seed: int = 0


@dataclass
class LoadedModel:
    source: ModelSource
    transformer: KelpVideoTransformer
    vae: torch.nn.Module
    weights_hash: str  # sha256 of the weights, recorded with every generation
    applied_loras: tuple = ()  # (path, mtime_ns, strength) of the LoRAs the transformer carries now
    quantization: QuantizationInfo | None = None  # how the transformer's Linear layers are quantized; None: not


def list_models(search_dirs: Sequence[Path] = (BUNDLED_MODELS_DIR,)) -> list[str]:
    """Names of the model folders found in `search_dirs`, plus the random presets."""
    found = {p.parent.name for d in search_dirs if Path(d).is_dir() for p in Path(d).glob(f"*/{MODEL_INDEX}")}
    return sorted(found) + [f"{RANDOM_PREFIX}{name}" for name in MODEL_PRESETS]


def resolve_model(spec: str, search_dirs: Sequence[Path] = (BUNDLED_MODELS_DIR,)) -> ModelSource:
    """Turn a model name, folder path or `random:<preset>[:<seed>]` into a ModelSource."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"`model` must be a non-empty string, got {spec!r}")
    if spec.startswith(RANDOM_PREFIX):
        preset, _, seed = spec[len(RANDOM_PREFIX):].partition(":")
        if preset not in MODEL_PRESETS or (seed and not seed.isdigit()):
            raise ValueError(
                f"`model` {spec!r} is not a known random preset; use one of "
                f"{[RANDOM_PREFIX + p for p in MODEL_PRESETS]} optionally followed by ':<seed>'"
            )
        chosen = MODEL_PRESETS[preset]
        return ModelSource(spec, preset, chosen.text_encoder, chosen.defaults, random_seed=int(seed or 0))
    candidates = [Path(d) / spec for d in search_dirs if "/" not in spec and "\\" not in spec]
    candidates.append(Path(spec).expanduser())
    for folder in candidates:
        if (folder / MODEL_INDEX).is_file():
            return _read_index(spec, folder)
    hint = " (the bundled model has not been trained into assets/ yet)" if spec == DEFAULT_MODEL else ""
    raise ValueError(
        f"`model` {spec!r} is not a model folder or a known model{hint}; available: {list_models(search_dirs)}"
    )


def _read_index(name: str, folder: Path) -> ModelSource:
    try:
        index = json.loads((folder / MODEL_INDEX).read_text())
        preset = index["preset"]
        chosen = MODEL_PRESETS[preset]
        defaults = replace(chosen.defaults, **index.get("defaults", {}))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"`model` {name!r}: {folder / MODEL_INDEX} is not a valid Kelp model index ({err})") from err
    return ModelSource(name, preset, index.get("text_encoder", chosen.text_encoder), defaults, folder=folder.resolve())


def load_model(
    source: ModelSource,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    quant: str = NONE,
    vae_dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Load (or build) the model: the transformer in `dtype`, the VAE in `vae_dtype`.

    `quant` ("none", "int8", "nf4", "fp8") quantizes the transformer's attention and MLP projections after loading.
    A folder saved quantized loads as saved, without re-quantizing; its mode wins over quant="none", and another
    mode is an error. The weights hash is always that of the files on disk (random weights: of the unquantized
    state)."""
    check_mode(quant, device)  # before any weights load
    quantized_folder = source.folder is not None and is_quantized_folder(source.folder / "transformer")
    if quantized_folder:
        saved_mode = read_quantization(source.folder / "transformer").mode
        if quant not in (NONE, saved_mode):
            raise ValueError(f"`quant` {quant!r} was asked for, but model {source.name!r} is saved quantized as "
                             f"{saved_mode!r}; use quant='none' or {saved_mode!r}, or a full-precision model folder")
    if source.folder is None:
        transformer, vae = _random_weights(source.preset, source.random_seed)
        weights_hash = _state_dict_hash([transformer, vae])
    else:
        if quantized_folder:
            transformer = load_quantized(source.folder / "transformer", KelpVideoTransformer, device, dtype)
        else:
            transformer = KelpVideoTransformer.from_pretrained(source.folder / "transformer", use_safetensors=True)
        vae = _load_vae(source.folder / "vae")
        weights_hash = _files_hash(sorted(source.folder.rglob("*.safetensors")))
    if quant != NONE and not quantized_folder:
        quantize_model(transformer, quant, device, compute_dtype=dtype)  # from the float32 weights, layer by layer
    transformer = transformer.to(device=device).eval()
    if dtype != transformer.dtype:
        transformer = transformer.to(dtype=dtype)
    vae = vae.to(device=device).eval()
    if vae_dtype != vae.dtype:
        # torch's own cast: diffusers' ModelMixin.to warns about float32-only modules even when, as in
        # AutoencoderKLWan, there are none (its list is empty).
        nn.Module.to(vae, dtype=vae_dtype)
    quantization = getattr(transformer, "kelp_quantization", None)
    return LoadedModel(source, transformer, vae, weights_hash, quantization=quantization)


def _load_vae(folder: Path):
    from core.models.vae import load_vae_folder

    return load_vae_folder(folder)


def _random_weights(preset: str, seed: int):
    chosen = MODEL_PRESETS[preset]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = chosen.transformer.build()
        vae = build_vae(chosen.vae)
        # Zero-initialised layers (AdaLN-Zero gates, the output projection) would make an untrained
        # model predict exactly zero and hide every code path behind it; give them small weights.
        for param in transformer.parameters():
            if param.ndim >= 2 and not param.any():
                torch.nn.init.normal_(param, std=0.02)
    return transformer, vae


def save_model(
    folder: str | Path,
    transformer: KelpVideoTransformer,
    vae: torch.nn.Module,
    preset: str,
    defaults: GenerationDefaults | None = None,
    text_encoder: str | None = None,
) -> Path:
    """Write a model folder that `resolve_model` / `load_model` read back; a quantized transformer (int8, fp8) is
    saved quantized (core.quant.checkpoint)."""
    if preset not in MODEL_PRESETS:
        raise ValueError(f"`preset` must be one of {sorted(MODEL_PRESETS)}, got {preset!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if getattr(transformer, "kelp_quantization", None) is not None:
        save_quantized(transformer, folder / "transformer")
    else:
        transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    vae.save_pretrained(folder / "vae", safe_serialization=True)
    for part in ("transformer", "vae"):
        _drop_local_path(folder / part / "config.json")
    index = {
        "format": "kelp-model",
        "version": 1,
        "preset": preset,
        "text_encoder": text_encoder or MODEL_PRESETS[preset].text_encoder,
        "defaults": asdict(defaults or MODEL_PRESETS[preset].defaults),
    }
    (folder / MODEL_INDEX).write_text(json.dumps(index, indent=2))
    return folder


def _drop_local_path(config_file: Path) -> None:
    """diffusers records where a model was loaded from (`_name_or_path`); a saved folder must not carry this
    machine's paths to wherever it is shipped."""
    config = json.loads(config_file.read_text())
    if config.pop("_name_or_path", None) is not None:
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def file_sha256(path: Path) -> str:
    return _files_hash([path])


def _files_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _state_dict_hash(modules: list[torch.nn.Module]) -> str:
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
