"""The measurements bench.memory runs, each in a fresh process so that its peak RSS is its own.

`python -m bench.memory_workers <name> '<json kwargs>'` prints one JSON line with the result.
"""

from __future__ import annotations

import gc
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def rss() -> int:
    return psutil.Process().memory_info().rss


def peak_rss() -> int:
    """This process's own peak resident memory: VmHWM on Linux.

    Not getrusage's ru_maxrss, which after fork and exec also keeps the resident size the forked copy of the parent
    had: a worker started by a large benchmark process reported the parent's size, not its own peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _backend(mode: str):
    from core.quant.bnb import BnbNF4Backend
    from core.quant.native_int8 import NativeInt8Backend

    return {"int8": NativeInt8Backend(), "nf4-bnb-cpu": BnbNF4Backend()}[mode]


def _rule(name: str):
    from core.quant.rules import RULES

    return RULES[name]


def transformer(size: str, mode: str, rule: str, repeats: int) -> dict:
    """Build one transformer size in one mode (fp32, bf16, int8 with the rest in fp32), weigh it, time a forward."""
    from bench.memory_sizes import build_on_meta, forward_inputs, materialize
    from core.quant.apply import weight_bytes

    torch.set_grad_enabled(False)
    before = rss()
    model = build_on_meta(size)
    quantized = mode not in DTYPES
    dtype = torch.float32 if quantized else DTYPES[mode]
    materialize(model, dtype, _rule(rule), _backend(mode) if quantized else None)
    model.eval()
    gc.collect()
    result = {"weight_bytes": weight_bytes(model), "rss_before_build": before, "rss_after_build": rss()}
    if repeats:
        args, kwargs = forward_inputs(size, dtype)
        model(*args, **kwargs)  # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            model(*args, **kwargs)
            times.append(time.perf_counter() - started)
        result["forward_s"] = statistics.median(times)
    result["peak_rss"] = peak_rss()
    return result


def _engine_with(mode: str, model: str, rule: str):
    from core.pipeline import Engine
    from core.quant.apply import quantize_model

    engine = Engine(device="cpu", output_dir=tempfile.mkdtemp())
    loaded = engine.model(engine.validate(_request(model)).model)
    if mode != "none":
        quantize_model(loaded.transformer, mode.removesuffix("-bnb-cpu"), rule=_rule(rule), backend=_backend(mode))
    return engine


def _request(model: str, seed: int = 0, **fields):
    from core.request import GenerationRequest

    return GenerationRequest(prompt="a red fox trotting through fresh snow at dawn, cinematic", model=model, seed=seed,
                             **fields)


def frames(mode: str, model: str, rule: str, out: str, steps: int | None, num_frames: int | None,
           seed: int = 0) -> dict:
    """Generate once with `seed` and keep the uint8 frames (before video encoding) in `out` (.npy)."""
    engine = _engine_with(mode, model, rule)
    sampled = engine.sample(_request(model, seed, steps=steps, num_frames=num_frames))
    video = np.concatenate(list(engine.iter_frames(sampled)))  # (F, H, W, 3) uint8
    np.save(out, video)
    return {"frames": int(video.shape[0]), "sampling_s": sampled.timings["sampling_s"], "peak_rss": peak_rss()}


def generations(mode: str, model: str, rule: str, count: int, width: int, height: int, num_frames: int,
                steps: int) -> dict:
    """`count` consecutive Engine.generate calls, release_memory() between jobs; RSS after each."""
    from core.memory import release_memory

    engine = _engine_with(mode, model, rule)
    current, peaks = [], []
    with tempfile.TemporaryDirectory() as folder:
        for index in range(count):
            request = _request(model, width=width, height=height, num_frames=num_frames, steps=steps)
            engine.generate(request, Path(folder) / f"{index}.mp4")
            release_memory("cpu")
            current.append(rss())
            peaks.append(peak_rss())
    return {"rss_after_each": current, "peak_rss_after_each": peaks}


def vae_decode(preset: str, width: int, height: int, num_frames: int, tile_size: int | None, tile_overlap: int,
               stream: bool, out: str | None) -> dict:
    """Decode random latents of a `num_frames` clip once; the VAE has seeded random weights."""
    from safetensors.torch import save_file

    from dataclasses import replace

    from core.models.vae import VAE_PRESETS, build_vae, decode_latents, iter_decode, latent_shape

    torch.manual_seed(0)
    base, _, norm = preset.partition("-")  # "small-rms": the preset with Wan's per-pixel RMS norm
    vae = build_vae(replace(VAE_PRESETS[base], norm=norm) if norm else VAE_PRESETS[base])
    z_dim, latent_frames, h, w = latent_shape(num_frames, height, width, vae.config.z_dim)
    latents = torch.randn(1, z_dim, latent_frames, h, w, generator=torch.Generator().manual_seed(1))
    gc.collect()
    before = rss()
    started = time.perf_counter()
    if stream:  # each chunk handed on as it comes, the pipeline's own way: dropped, or (`out`) written to a file
        chunks = iter_decode(vae, latents, tile_size=tile_size, tile_overlap=tile_overlap if tile_size else None)
        for index, chunk in enumerate(chunks):
            if out is not None:
                save_file({"video": chunk.contiguous()}, f"{out}.{index:04d}.safetensors")
            del chunk
        video = None
    else:
        video = decode_latents(vae, latents, tile_size=tile_size, tile_overlap=tile_overlap)
    result = {"seconds": time.perf_counter() - started, "rss_before": before, "peak_rss": peak_rss()}
    if out is not None and video is not None:
        save_file({"video": video.contiguous()}, out)
    return result


WORKERS = {"transformer": transformer, "frames": frames, "generations": generations, "vae_decode": vae_decode}

if __name__ == "__main__":
    name, kwargs = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(WORKERS[name](**kwargs)))
