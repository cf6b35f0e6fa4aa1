"""Kelp's memory on this machine: quantized transformer weights, peak RSS and speed; int8 kernels; video fidelity of
quantized generation; RSS over consecutive generations; tiled against untiled VAE decoding.

Run from the repo root: `python -m bench.memory [--quick] [--weights] [--kernels] [--fidelity] [--generations]
[--vae]` (no section flag: all). Every measurement of memory runs in a fresh process (bench.memory_workers) with
glibc's mmap threshold fixed, so that freed tensors leave the RSS and peaks are the work's own. Prints markdown
tables and merges the sections run into bench/results/memory-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from bench.memory_sizes import SIZES, build_on_meta, computed_bytes, parameter_count
from core.model_loader import DEFAULT_MODEL, resolve_model
from core.quant.bnb import BnbNF4Backend
from core.quant.fp8 import Float8Backend
from core.quant.native_int8 import Int8WeightOnlyLinear, NativeInt8Backend, quantize_int8_per_channel
from core.quant.rules import TRANSFORMER_PROJECTIONS, TRANSFORMER_PROJECTIONS_AND_MODULATION

SECTIONS = ("weights", "kernels", "fidelity", "generations", "vae")
ROOT = Path(__file__).resolve().parents[1]
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
MB = 1e6
GOALS = {"int8_vs_bf16": 1.9, "nf4_vs_bf16": 3.5, "wan14b_nf4_gb": 8.5, "int8_psnr_db": 35.0, "nf4_psnr_db": 28.0,
         "vae_psnr_db": 40.0, "vae_peak_ratio": 3.0, "generations_growth_pct": 2.0}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for section in SECTIONS:
        parser.add_argument(f"--{section}", action="store_true", help=f"run the {section} section")
    parser.add_argument("--quick", action="store_true", help="smaller runs: a few minutes in all")
    parser.add_argument("--out", default="bench/results/memory-cpu.json")
    args = parser.parse_args(argv)
    args.sections = [s for s in SECTIONS if getattr(args, s)] or list(SECTIONS)
    return args


def run_worker(name: str, **kwargs) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.memory_workers", name, json.dumps(kwargs)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **WORKER_ENV})
    if done.returncode != 0:
        raise RuntimeError(f"worker {name} {kwargs} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def benchmark_model() -> str:
    try:
        resolve_model(DEFAULT_MODEL)
        return DEFAULT_MODEL
    except ValueError:
        return "random:small"


# ---------------------------------------------------------------------------------------------------
# Weights: bytes (measured and computed), peak RSS, one forward
# ---------------------------------------------------------------------------------------------------


def computed_sizes() -> dict:
    """Per size: bytes with bf16 for everything unquantized (the GPU layout), per mode; nothing is materialised."""
    layouts = {"bf16": None, "int8": NativeInt8Backend(), "nf4": BnbNF4Backend(), "fp8": Float8Backend()}
    results = {}
    for size in SIZES:
        model = build_on_meta(size)
        row = {"params": parameter_count(model)}
        for mode, backend in layouts.items():
            row[mode] = computed_bytes(model, 2, TRANSFORMER_PROJECTIONS, backend)
        if size == "kelp-small":
            for mode in ("int8", "nf4"):
                row[f"{mode}+modulation"] = computed_bytes(model, 2, TRANSFORMER_PROJECTIONS_AND_MODULATION,
                                                           layouts[mode])
        results[size] = row
    return results


def weights_section(quick: bool) -> dict:
    measured = {}
    plan = [("kelp-small", mode, 3 if mode != "bf16" else 1) for mode in ("fp32", "bf16", "int8")]
    plan.append(("kelp-small", "int8+modulation", 3))
    if not quick:  # bf16 matmuls are ~10x slower than float32 on this CPU: Wan-1.3B bf16 is weighed, not timed
        plan += [("wan-1.3b", "fp32", 1), ("wan-1.3b", "bf16", 0), ("wan-1.3b", "int8", 1)]
    for size, mode, repeats in plan:
        rule = TRANSFORMER_PROJECTIONS_AND_MODULATION if mode.endswith("+modulation") else TRANSFORMER_PROJECTIONS
        print(f"  {size} {mode} ...", flush=True)
        measured[f"{size} {mode}"] = {"size": size, "mode": mode, **run_worker(
            "transformer", size=size, mode=mode.removesuffix("+modulation"), rule=rule.name, repeats=repeats)}
    return {"measured": measured, "computed": computed_sizes(),
            "method": "measured: random weights (std 0.02) built layer by layer in a fresh process; int8 keeps the "
                      "unquantized layers in float32 as Kelp's CPU path does. computed: from the meta-device model "
                      "with each backend's layout_bytes for the quantized Linear layers and 2 bytes (bf16) a value "
                      "for everything else, as on a GPU; NF4 = 4-bit codes + one uint8 absmax per 64 weights + one "
                      "float32 per 256 blocks (bitsandbytes' double quantization) + code tables. Forward: Kelp "
                      "small at its default clip (batch 2, 320 video + 77 text tokens); Wan shapes one 16x16 latent "
                      "frame and 16 text tokens."}


def weights_table(section: dict) -> str:
    lines = ["| transformer | mode | weight MB | peak RSS MB | peak above pre-build RSS MB | forward s |",
             "|---|---|---:|---:|---:|---:|"]
    for row in section["measured"].values():
        forward = f"{row['forward_s']:.3f}" if "forward_s" in row else "not timed"
        lines.append(f"| {row['size']} | {row['mode']} | {row['weight_bytes'] / MB:.1f} | {row['peak_rss'] / MB:.0f} | "
                     f"{(row['peak_rss'] - row['rss_before_build']) / MB:.0f} | {forward} |")
    lines += ["", "| transformer (computed, rest bf16) | params | bf16 GB | int8 GB (x smaller) | nf4 GB (x smaller) "
              "| fp8 GB |", "|---|---:|---:|---:|---:|---:|"]
    for size, row in section["computed"].items():
        bf16 = row["bf16"]
        lines.append(f"| {size} | {row['params'] / 1e9:.3f}B | {bf16 / 1e9:.3f} | {row['int8'] / 1e9:.3f} "
                     f"({bf16 / row['int8']:.2f}x) | {row['nf4'] / 1e9:.3f} ({bf16 / row['nf4']:.2f}x) | "
                     f"{row['fp8'] / 1e9:.3f} |")
        if "int8+modulation" in row:
            lines.append(f"| {size}, AdaLN quantized too | | | {row['int8+modulation'] / 1e9:.3f} "
                         f"({bf16 / row['int8+modulation']:.2f}x) | {row['nf4+modulation'] / 1e9:.3f} "
                         f"({bf16 / row['nf4+modulation']:.2f}x) | |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Int8 kernels on this CPU
# ---------------------------------------------------------------------------------------------------


def kernels_section(quick: bool) -> dict:
    """torch._weight_int8pack_mm against Kelp's dequantize-in-the-call layer and float32, on DiT layer shapes."""
    repeats = 2 if quick else 5
    shapes = {"kelp-small ff (794x256 -> 1024)": (794, 256, 1024),
              "kelp-small ff out (794x1024 -> 256)": (794, 1024, 256),
              "wan-1.3b ffn (256x1536 -> 8960)": (256, 1536, 8960)}
    results = {}
    for name, (tokens, in_features, out_features) in shapes.items():
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(tokens, in_features, generator=generator)
        linear = torch.nn.Linear(in_features, out_features, bias=False)
        layer = Int8WeightOnlyLinear.from_linear(linear)
        codes, scale = quantize_int8_per_channel(linear.weight)
        candidates = {
            "float32 F.linear": lambda: linear(x),
            "int8 dequantize in the call (Kelp)": lambda: layer(x),
            "torch._weight_int8pack_mm float32": lambda: torch._weight_int8pack_mm(x, codes, scale),
            "torch._weight_int8pack_mm bf16": lambda: torch._weight_int8pack_mm(x.bfloat16(), codes, scale.bfloat16()),
        }
        with torch.no_grad():
            results[name] = {label: _median_seconds(call, repeats) for label, call in candidates.items()}
    return {"shapes": results}


def _median_seconds(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def kernels_table(section: dict) -> str:
    labels = list(next(iter(section["shapes"].values())))
    lines = ["| shape | " + " | ".join(f"{label} ms" for label in labels) + " |", "|---|" + "---:|" * len(labels)]
    for name, row in section["shapes"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[label] * 1000:.1f}" for label in labels) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Fidelity: quantized generation against full precision, same seed
# ---------------------------------------------------------------------------------------------------


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def fidelity_section(quick: bool) -> dict:
    model = benchmark_model()
    steps, num_frames = (8, 9) if quick else (None, None)  # None: the model's defaults (20 steps, 17 frames)
    # (label, mode, rule, seed); "none, seed 1" sets the scale: how far apart two different videos are.
    modes = [("none", "none", TRANSFORMER_PROJECTIONS, 0), ("int8", "int8", TRANSFORMER_PROJECTIONS, 0),
             ("int8+modulation", "int8", TRANSFORMER_PROJECTIONS_AND_MODULATION, 0),
             ("nf4-bnb-cpu", "nf4-bnb-cpu", TRANSFORMER_PROJECTIONS, 0),
             ("none, seed 1 (scale)", "none", TRANSFORMER_PROJECTIONS, 1)]
    videos, runs = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for label, mode, rule, seed in modes:
            print(f"  {label} ...", flush=True)
            path = str(Path(folder) / f"{len(videos)}.npy")
            runs[label] = run_worker("frames", mode=mode, model=model, rule=rule.name, out=path, steps=steps,
                                     num_frames=num_frames, seed=seed)
            videos[label] = np.load(path)
    reference = videos["none"]
    return {"model": model, "steps": steps or "model default", "num_frames": num_frames or "model default",
            "psnr_db_vs_full_precision": {k: psnr_uint8(v, reference) for k, v in videos.items() if k != "none"},
            "runs": runs,
            "method": "one seeded generation per mode (fresh process), uint8 frames before video encoding, PSNR "
                      "over all frames against the float32 model. nf4-bnb-cpu: bitsandbytes' own NF4 layers run "
                      "on its CPU kernels (Kelp offers nf4 on CUDA only), to measure NF4's fidelity here."}


def fidelity_table(section: dict) -> str:
    lines = [f"model {section['model']}, steps {section['steps']}, frames {section['num_frames']}", "",
             "| mode | video PSNR vs float32 dB |", "|---|---:|"]
    lines += [f"| {mode} | {value:.2f} |" for mode, value in section["psnr_db_vs_full_precision"].items()]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Consecutive generations
# ---------------------------------------------------------------------------------------------------


def generations_section(quick: bool) -> dict:
    settings = dict(count=20, width=64, height=64, num_frames=9, steps=4)
    results = {"settings": settings, "model": "random:small"}
    for mode in ("none", "int8"):
        print(f"  {mode} ...", flush=True)
        run = run_worker("generations", mode=mode, model="random:small", rule=TRANSFORMER_PROJECTIONS.name, **settings)
        peaks, current = run["peak_rss_after_each"], run["rss_after_each"]
        results[mode] = {**run, "peak_growth_pct_after_first": 100 * (peaks[-1] - peaks[0]) / peaks[0],
                         "rss_growth_pct_after_first": 100 * (current[-1] - current[0]) / current[0]}
    return results


def generations_table(section: dict) -> str:
    s = section["settings"]
    lines = [f"{s['count']} generations of {section['model']} at {s['width']}x{s['height']}, {s['num_frames']} frames, "
             f"{s['steps']} steps; release_memory() between jobs", "",
             "| mode | peak RSS after 1st MB | after last MB | peak growth % | RSS growth % |",
             "|---|---:|---:|---:|---:|"]
    for mode in ("none", "int8"):
        r = section[mode]
        lines.append(f"| {mode} | {r['peak_rss_after_each'][0] / MB:.0f} | {r['peak_rss_after_each'][-1] / MB:.0f} | "
                     f"{r['peak_growth_pct_after_first']:.2f} | {r['rss_growth_pct_after_first']:.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Tiled VAE decoding
# ---------------------------------------------------------------------------------------------------


VAE_TILINGS = ((192, 96), (128, 64))  # (tile px, overlap px): the engine's tiled path at two tile sizes


def vae_section(quick: bool) -> dict:
    width = height = 256 if quick else 384
    num_frames = 17 if quick else 33
    results = {"settings": dict(width=width, height=height, num_frames=num_frames,
                                tilings=[list(tiling) for tiling in VAE_TILINGS])}
    from safetensors.torch import load_file

    peak = lambda r: r["peak_rss"] - r["rss_before"]  # noqa: E731
    with tempfile.TemporaryDirectory() as folder:
        for preset in ("small", "small-rms"):
            print(f"  {preset} ...", flush=True)
            common = dict(preset=preset, width=width, height=height, num_frames=num_frames)
            full_path = str(Path(folder) / f"{preset}-full.safetensors")
            rows = {"untiled_decode_latents": run_worker("vae_decode", **common, tile_size=None, tile_overlap=0,
                                                         stream=False, out=full_path),
                    "untiled_streaming": run_worker("vae_decode", **common, tile_size=None, tile_overlap=0,
                                                    stream=True, out=None)}
            reference = load_file(full_path)["video"]
            for tile_size, tile_overlap in VAE_TILINGS:
                # The engine's own path: tiled iter_decode, the clip kept as float16 until its chunks are handed
                # on; the worker writes each chunk to its own file as it comes, as the video writer would.
                chunks_path = str(Path(folder) / f"{preset}-tiled-{tile_size}")
                row = run_worker("vae_decode", **common, tile_size=tile_size, tile_overlap=tile_overlap,
                                 stream=True, out=chunks_path)
                tiled = torch.cat([load_file(path)["video"] for path in sorted(Path(folder).glob(
                    f"{Path(chunks_path).name}.*.safetensors"))], dim=2)
                row["psnr_db_vs_untiled"] = (10 * torch.log10(4 / (reference - tiled).pow(2).mean())).item()
                row["peak_ratio_vs_decode_latents"] = peak(rows["untiled_decode_latents"]) / peak(row)
                row["peak_ratio_vs_streaming"] = peak(rows["untiled_streaming"]) / peak(row)
                rows[f"tiled_{tile_size}_streaming"] = row
            results[preset] = rows
    results["method"] = ("seeded random VAE weights, random latents; each decode in a fresh process; peak = the "
                         "process's peak RSS minus its RSS just before decoding (includes oneDNN's first-call "
                         "overheads in every row). Streaming rows hand each chunk on as it comes (the untiled one "
                         "drops it, the tiled ones write it to a file for the PSNR). small: Kelp's bundled VAE "
                         "preset (FrameGroupNorm); small-rms: the same with Wan's per-pixel RMS norm (the norm of "
                         "Wan's published VAE).")
    return results


def vae_table(section: dict) -> str:
    s = section["settings"]
    lines = [f"clip {s['width']}x{s['height']}, {s['num_frames']} frames", "",
             "| VAE | decode | peak above baseline MB | seconds | PSNR vs untiled dB | peak: untiled decode_latents / "
             "this | untiled streaming / this |", "|---|---|---:|---:|---:|---:|---:|"]
    for preset in ("small", "small-rms"):
        for key, row in section[preset].items():
            label = key.replace("_", " ")
            if key.startswith("tiled_"):
                overlap = dict(map(tuple, s["tilings"]))[int(key.split("_")[1])]
                label = f"tiled {key.split('_')[1]} px (overlap {overlap}), streaming"
            extra = (f"{row['psnr_db_vs_untiled']:.1f} | {row['peak_ratio_vs_decode_latents']:.2f}x | "
                     f"{row['peak_ratio_vs_streaming']:.2f}x" if "psnr_db_vs_untiled" in row else " | | ")
            lines.append(f"| {preset} | {label} | {(row['peak_rss'] - row['rss_before']) / MB:.0f} | "
                         f"{row['seconds']:.1f} | {extra} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------


RUNNERS = {"weights": (weights_section, weights_table), "kernels": (kernels_section, kernels_table),
           "fidelity": (fidelity_section, fidelity_table), "generations": (generations_section, generations_table),
           "vae": (vae_section, vae_table)}


def machine_info() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable), "-m", "bench.memory", *sys.argv[1:]]),
        "git_commit": git.stdout.strip() if git.returncode == 0 else None,
        "cpu": next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None),
        "cores": os.cpu_count(), "threads": WORKER_ENV["OMP_NUM_THREADS"], "torch": torch.__version__,
        "python": platform.python_version(), "load_average": list(os.getloadavg()),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(int(WORKER_ENV["OMP_NUM_THREADS"]))
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["goals"] = GOALS
    for section in args.sections:
        run, table = RUNNERS[section]
        print(f"\n## {section}{' (quick)' if args.quick else ''}", flush=True)
        started = time.perf_counter()
        results[section] = {**run(args.quick), "quick": args.quick, "machine": machine_info(),
                            "seconds": time.perf_counter() - started}
        print(table(results[section]), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
