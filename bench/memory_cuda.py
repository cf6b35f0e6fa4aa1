"""Kelp's memory on a CUDA GPU: quantized transformer weights and peaks, video fidelity of each mode, tiled VAE
decode, and memory over consecutive generations. bench.memory is its CPU counterpart.

Run from the repo root on a machine with CUDA: `python -m bench.memory_cuda [--sections weights,fidelity,vae,
generations] [--text-embeddings FILE]`. Memory is torch.cuda's own count of allocated bytes (exact, unlike RSS).
Prints markdown tables and writes bench/results/memory-cuda.json (merged section by section).

`--text-embeddings`: prompts recorded by `python -m bench.recorded_text`, for GPU machines without the MiniLM
package; without it the engine loads MiniLM as usual.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.machine import machine_info, sync
from bench.memory import GOALS, benchmark_model, psnr_uint8
from bench.memory_sizes import build_on_meta, materialize
from core.model_loader import load_model, resolve_model
from core.quant.apply import weight_bytes
from core.quant.modes import available_modes, backend_for
from core.quant.rules import TRANSFORMER_PROJECTIONS

SECTIONS = ("weights", "fidelity", "vae", "generations")
GB, MB = 1e9, 1e6
PROMPT = "a red fox trotting through fresh snow at dawn, cinematic"
# Wan shapes are called on a 480x832 clip of 21 frames as Wan's VAE codes it: 6 latent frames of 60x104, 2x2 patches
# (9,360 video tokens), with 77 text tokens of Wan's 4096-wide T5 embeddings.
WAN_CALL = dict(latent=(1, 16, 6, 60, 104), text=(1, 77, 4096))
KELP_CALL = dict(latent=(2, 16, 5, 16, 16), text=(2, 77, 384))  # kelp-small's default clip, guided (batch 2)
VAE_CLIPS = ((832, 480, 81, 256),)  # width, height, frames, tile: Wan's 480p clip
GENERATIONS = 20
GENERATION_MODES = ("none",)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--sizes", default="kelp-small,wan-1.3b,wan-14b")
    parser.add_argument("--text-embeddings", default=None)
    parser.add_argument("--out", default="bench/results/memory-cuda.json")
    args = parser.parse_args(argv)
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    args.sizes = args.sizes.split(",")
    return args


def allocated() -> int:
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated()


def fresh_peak() -> int:
    """Reset the peak counter; returns the bytes allocated now (the baseline of the next peak)."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return allocated()


def peak_since(baseline: int) -> int:
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - baseline


# ---------------------------------------------------------------------------------------------------------------
# Weights: bytes, allocated memory, peak and time of one call, per size and mode
# ---------------------------------------------------------------------------------------------------------------


def _call_inputs(size: str, device, dtype) -> tuple[tuple, dict]:
    shapes = KELP_CALL if size == "kelp-small" else WAN_CALL
    generator = torch.Generator(device).manual_seed(0)
    latent = torch.randn(shapes["latent"], generator=generator, device=device).to(dtype)
    text = torch.randn(shapes["text"], generator=generator, device=device).to(dtype)
    timestep = torch.full((shapes["latent"][0],), 500.0, device=device, dtype=dtype)
    return (latent, timestep, text), ({} if size == "kelp-small" else {"return_dict": False})


def weights_section(args, device) -> dict:
    modes = [m for m in ("bf16", "int8", "nf4", "fp8") if m == "bf16" or m in available_modes(device)]
    rows = {}
    for size in args.sizes:
        for mode in modes:
            print(f"  {size} {mode} ...", flush=True)
            try:
                rows[f"{size} {mode}"] = _weights_row(size, mode, device)
            except Exception as error:  # one mode that fails must not cost the other rows
                rows[f"{size} {mode}"] = {"size": size, "mode": mode, "error": f"{type(error).__name__}: {error}"}
                print(f"  {size} {mode} failed: {rows[f'{size} {mode}']['error']}", flush=True)
            fresh_peak()
    _ratios(rows, args.sizes, modes)
    return {"rows": rows, "calls": {"kelp-small": KELP_CALL, "wan": WAN_CALL}, "method": WEIGHTS_METHOD}


def _weights_row(size: str, mode: str, device) -> dict:
    before = fresh_peak()
    started = time.perf_counter()
    model = build_on_meta(size)
    backend = None if mode == "bf16" else backend_for(mode, device)
    with torch.no_grad():
        materialize(model, torch.bfloat16, TRANSFORMER_PROJECTIONS, backend, device)
    model.eval()
    build_s = time.perf_counter() - started
    row = {"size": size, "mode": mode, "backend": backend.name if backend else "torch bf16",
           "weight_bytes": weight_bytes(model), "allocated_bytes": allocated() - before,
           "build_peak_bytes": peak_since(before), "build_s": build_s}
    call_args, call_kwargs = _call_inputs(size, device, torch.bfloat16)
    with torch.no_grad():
        model(*call_args, **call_kwargs)  # warm-up
        resident = fresh_peak()
        times = []
        for _ in range(3):
            sync(device)
            started = time.perf_counter()
            model(*call_args, **call_kwargs)
            sync(device)
            times.append(time.perf_counter() - started)
    row.update(call_s=statistics.median(times), call_peak_above_resident_bytes=peak_since(resident),
               call_peak_total_bytes=peak_since(0))
    return row


def _ratios(rows: dict, sizes, modes) -> None:
    for size in sizes:
        bf16 = rows.get(f"{size} bf16")
        for mode in modes:
            row = rows.get(f"{size} {mode}")
            if bf16 and row and "error" not in bf16 and "error" not in row:
                row["smaller_than_bf16"] = bf16["weight_bytes"] / row["weight_bytes"]
                row["speed_vs_bf16"] = bf16["call_s"] / row["call_s"]


WEIGHTS_METHOD = ("random weights (std 0.02) made layer by layer on the GPU, the projections quantized as they are made "
                  "(Kelp's rule: attention and MLP projections; norms, embeddings and modulation in bf16). weight_bytes: "
                  "the state_dict's tensors; allocated: torch.cuda.memory_allocated after the build; call: one forward "
                  "(median of 3 after a warm-up) on the inputs in `calls`.")


def weights_table(section: dict) -> str:
    lines = ["| transformer | mode | weights GB | x smaller than bf16 | allocated GB | call s | speed vs bf16 | "
             "call peak above weights GB |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in section["rows"].values():
        if "error" in row:
            lines.append(f"| {row['size']} | {row['mode']} | failed: {row['error'][:80]} | | | | | |")
            continue
        lines.append(f"| {row['size']} | {row['mode']} ({row['backend']}) | {row['weight_bytes'] / GB:.3f} | "
                     f"{row.get('smaller_than_bf16', 1):.2f}x | {row['allocated_bytes'] / GB:.3f} | "
                     f"{row['call_s']:.3f} | {row.get('speed_vs_bf16', 1):.2f}x | "
                     f"{row['call_peak_above_resident_bytes'] / GB:.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Fidelity: each mode's video against the float32 transformer, same seed, on the bundled model
# ---------------------------------------------------------------------------------------------------------------


def _engine(device, args, dtype=None, vae_dtype=None):
    from core.pipeline import Engine

    engine = Engine(device=str(device), output_dir=tempfile.mkdtemp(prefix="kelp-bench-"))
    if dtype is not None:
        engine.dtype = dtype  # the transformer's compute precision (the engine's choice on CUDA is bf16)
    if vae_dtype is not None:
        engine.vae_dtype = vae_dtype
    if args.text_embeddings:
        from bench.recorded_text import RecordedTextEncoder

        engine.use_text_encoder(RecordedTextEncoder(args.text_embeddings, device))
    return engine


def _frames(engine, request) -> tuple[np.ndarray, dict]:
    sampled = engine.sample(request)
    return np.concatenate(list(engine.iter_frames(sampled))), sampled.timings


def fidelity_section(args, device) -> dict:
    from core.request import GenerationRequest

    model = benchmark_model()
    request = GenerationRequest(prompt=PROMPT, model=model, seed=0)
    reference, _ = _frames(_engine(device, args, dtype=torch.float32), request)
    rows = {}
    cases = [("bf16 (the engine's default)", dict(), dict()),
             *[(mode, dict(), dict(quant=mode)) for mode in ("int8", "nf4", "fp8") if mode in available_modes(device)],
             ("float32 VAE instead of bf16", dict(dtype=torch.float32, vae_dtype=torch.float32), dict()),
             ("float32, seed 1 (scale: another video)", dict(dtype=torch.float32), dict(seed=1))]
    for label, engine_kwargs, overrides in cases:
        print(f"  {label} ...", flush=True)
        try:
            frames, timings = _frames(_engine(device, args, **engine_kwargs), replace(request, **overrides))
        except Exception as error:  # one mode that fails must not cost the other rows
            rows[label] = {"error": f"{type(error).__name__}: {error}"}
            print(f"  {label} failed: {rows[label]['error']}", flush=True)
            continue
        rows[label] = {"psnr_db": psnr_uint8(frames, reference), "sampling_s": timings.get("sampling_s")}
    return {"model": model, "prompt": PROMPT, "reference": "float32 transformer, the engine's VAE dtype", "rows": rows,
            "method": "one seeded generation per row at the model's default size and steps; uint8 frames before "
                      "video encoding; PSNR over all frames against the reference."}


def fidelity_table(section: dict) -> str:
    lines = [f"model {section['model']}; reference: {section['reference']}", "",
             "| transformer | video PSNR vs reference dB | sampling s |", "|---|---:|---:|"]
    lines += [f"| {label} | {row['psnr_db']:.2f} | {row['sampling_s'] or 0:.2f} |" if "error" not in row else
              f"| {label} | failed: {row['error'][:80]} | |" for label, row in section["rows"].items()]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Tiled VAE decode: peak memory of untiled, streamed and tiled decoding of a long clip with the bundled VAE
# ---------------------------------------------------------------------------------------------------------------


def vae_section(args, device) -> dict:
    from core.memory import vae_dtype_for
    from core.models.vae import decode_latents, iter_decode, latent_shape

    model = benchmark_model()
    vae = load_model(resolve_model(model), device, torch.bfloat16, vae_dtype=vae_dtype_for(device)).vae
    results = {"model": model, "vae_dtype": str(vae.dtype), "clips": {}}
    for width, height, num_frames, tile in VAE_CLIPS:
        z, t, h, w = latent_shape(num_frames, height, width, vae.config.z_dim)
        latents = torch.randn(1, z, t, h, w, generator=torch.Generator(device).manual_seed(1), device=device)
        rows = {}
        for label, run in (("untiled decode_latents", lambda: decode_latents(vae, latents)),
                           ("untiled streaming", lambda: [None for _ in iter_decode(vae, latents)]),
                           (f"tiled {tile} px", lambda: decode_latents(vae, latents, tile_size=tile)),
                           (f"tiled {tile} px streaming", lambda: [None for _ in iter_decode(vae, latents,
                                                                                            tile_size=tile)])):
            before = fresh_peak()
            started = time.perf_counter()
            with torch.no_grad():
                out = run()
            sync(device)
            rows[label] = {"seconds": time.perf_counter() - started, "peak_above_baseline_bytes": peak_since(before)}
            if isinstance(out, torch.Tensor):
                rows[label]["video"] = out.float().cpu()
            del out
        full, tiled = rows["untiled decode_latents"].pop("video"), rows[f"tiled {tile} px"].pop("video")
        psnr = float(10 * torch.log10(4 / (full - tiled).pow(2).mean()))
        peak = lambda label: rows[label]["peak_above_baseline_bytes"]  # noqa: E731
        results["clips"][f"{width}x{height}x{num_frames}"] = {
            "rows": rows, "tile_size": tile, "psnr_db_tiled_vs_untiled": psnr,
            "peak_ratio_vs_decode_latents": peak("untiled decode_latents") / peak(f"tiled {tile} px"),
            "peak_ratio_vs_streaming": peak("untiled streaming") / peak(f"tiled {tile} px"),
            # The engine's own paths: both stream; tiled chunks come from a clip buffer in host memory.
            "peak_ratio_engine_streaming": peak("untiled streaming") / peak(f"tiled {tile} px streaming")}
        del latents, full, tiled
    results["method"] = ("random latents decoded by the model's VAE in the engine's dtype; peak = "
                         "torch.cuda.max_memory_allocated during the decode minus what was allocated before "
                         "(the VAE's weights and the latents are in the baseline; the decoded clip is not). "
                         "decode_latents returns the clip on the GPU; streaming drops each chunk as the engine does "
                         "once it has written it, and tiled streaming blends the clip in host memory.")
    return results


def vae_table(section: dict) -> str:
    lines = [f"VAE of {section['model']} in {section['vae_dtype']}", "",
             "| clip | decode | peak above baseline MB | seconds | PSNR vs untiled dB |", "|---|---|---:|---:|---:|"]
    for clip, r in section["clips"].items():
        for label, row in r["rows"].items():
            psnr = f"{r['psnr_db_tiled_vs_untiled']:.1f}" if label == f"tiled {r['tile_size']} px" else ""
            lines.append(f"| {clip} | {label} | {row['peak_above_baseline_bytes'] / MB:.0f} | {row['seconds']:.2f} | "
                         f"{psnr} |")
        lines.append(f"| {clip} | peak ratio untiled / tiled | decode_latents {r['peak_ratio_vs_decode_latents']:.2f}x, "
                     f"streaming {r['peak_ratio_vs_streaming']:.2f}x, engine (both streaming) "
                     f"{r.get('peak_ratio_engine_streaming', float('nan')):.2f}x | | |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Consecutive generations: does the GPU's memory grow job after job?
# ---------------------------------------------------------------------------------------------------------------


def generations_section(args, device) -> dict:
    from core.memory import release_memory
    from core.request import GenerationRequest

    model, count = benchmark_model(), GENERATIONS
    results = {"model": model, "count": count}
    for mode in GENERATION_MODES:
        print(f"  {mode} ...", flush=True)
        engine = _engine(device, args)
        peaks, after = [], []
        for index in range(count):
            torch.cuda.reset_peak_memory_stats()
            _frames(engine, GenerationRequest(prompt=PROMPT, model=model, seed=index, quant=mode))
            release_memory("cuda")
            peaks.append(torch.cuda.max_memory_allocated())
            after.append(allocated())
        results[mode] = {"peak_after_each": peaks, "allocated_after_each": after,
                         "peak_growth_pct_after_first": 100 * (max(peaks[1:]) - peaks[0]) / peaks[0],
                         "allocated_growth_pct_after_first": 100 * (after[-1] - after[0]) / max(after[0], 1)}
        del engine
        release_memory("cuda")
    return results


def generations_table(section: dict) -> str:
    lines = [f"{section['count']} generations of {section['model']} (default clip, a new seed each), "
             "release_memory() between jobs", "",
             "| mode | peak 1st MB | highest later peak MB | peak growth % | allocated after 1st MB | after last MB |",
             "|---|---:|---:|---:|---:|---:|"]
    for mode in GENERATION_MODES:
        if mode in section:
            r = section[mode]
            lines.append(f"| {mode} | {r['peak_after_each'][0] / MB:.0f} | {max(r['peak_after_each'][1:]) / MB:.0f} | "
                         f"{r['peak_growth_pct_after_first']:.2f} | {r['allocated_after_each'][0] / MB:.0f} | "
                         f"{r['allocated_after_each'][-1] / MB:.0f} |")
    return "\n".join(lines)


RUNNERS = {"weights": (weights_section, weights_table), "fidelity": (fidelity_section, fidelity_table),
           "vae": (vae_section, vae_table), "generations": (generations_section, generations_table)}


def main(argv=None) -> None:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench.memory_cuda needs a CUDA GPU; on a CPU run `python -m bench.memory`")
    device = torch.device("cuda")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["goals"] = GOALS
    for section in args.sections:
        run, table = RUNNERS[section]
        print(f"\n## {section}", flush=True)
        started = time.perf_counter()
        try:
            results[section] = {**run(args, device), "machine": machine_info(device, "bench.memory_cuda"),
                                "seconds": time.perf_counter() - started}
        except Exception as error:  # one broken section must not cost the others on a lent GPU
            results[section] = {"error": f"{type(error).__name__}: {error}"}
            print(f"section {section} failed: {results[section]['error']}", flush=True)
            traceback.print_exc()
        else:
            print(table(results[section]), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
