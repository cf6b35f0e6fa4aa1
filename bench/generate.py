"""Kelp's generation speed on this machine, against stock diffusers machinery (WanPipeline) doing the same work.

Run from the repo root: `python -m bench.generate [--quick]`. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import diffusers
import torch
import transformers
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

from bench.machine import machine_info, sync
from core.model_loader import DEFAULT_MODEL, resolve_model
from core.pipeline import Engine
from core.request import GenerationRequest
from core.video_io import write_video

PROMPT = "a red fox trotting through fresh snow at dawn, cinematic, shallow depth of field"
NEGATIVE = "blurry, low quality, distorted"
SEED = 0
PEER_SEED = 1234  # random weights of the peer transformer
PEER = "diffusers-wan-peer"
COLUMNS = ("total_s", "sampling_s", "s_per_step", "transformer_s_per_step", "decode_write_s", "encode_s")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help=f"default: {DEFAULT_MODEL} if installed, else random:small")
    parser.add_argument("--steps", type=int, default=None, help="default: the model's own (20 for small)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="default: bench/results/generate-<device>.json")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, 4 steps")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps = 1, 4
    return args


def default_model() -> tuple[str, str]:
    try:
        resolve_model(DEFAULT_MODEL)
        return DEFAULT_MODEL, f"{DEFAULT_MODEL} (trained weights found)"
    except ValueError:
        return "random:small", f"random:small ({DEFAULT_MODEL} not found in assets/; seeded random weights)"


@contextlib.contextmanager
def forward_timer(module: torch.nn.Module, device: torch.device):
    """Yields a dict that hooks on `module` fill: seconds inside forward, calls, and when the first call began."""
    stats = {"seconds": 0.0, "calls": 0, "first_start": None, "start": 0.0}

    def before(*_):
        sync(device)
        stats["start"] = time.perf_counter()
        stats["first_start"] = stats["first_start"] or stats["start"]

    def after(*_):
        sync(device)
        stats["seconds"] += time.perf_counter() - stats["start"]
        stats["calls"] += 1

    handles = (module.register_forward_pre_hook(before), module.register_forward_hook(after))
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run_kelp(engine: Engine, request: GenerationRequest, folder: Path) -> dict:
    """One Engine.generate to an mp4: the engine's own timings, plus time inside the (loaded) transformer."""
    with forward_timer(engine.model(engine.validate(request).model).transformer, engine.device) as timer:
        result = engine.generate(request, folder / "kelp.mp4")
    return {**result.timings, "s_per_step": result.timings["sampling_s"] / request.steps,
            "transformer_s_per_step": timer["seconds"] / request.steps, "transformer_calls": timer["calls"]}


def build_peer(engine: Engine, request: GenerationRequest, shift: float) -> WanPipeline:
    """WanPipeline with a random WanTransformer3DModel of Kelp small's width, depth and head size; Kelp's VAE."""
    loaded = engine.model(engine.validate(request).model)
    cfg = loaded.transformer.config
    head_dim = cfg.dim // cfg.num_heads
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PEER_SEED)
        transformer = WanTransformer3DModel(
            patch_size=(1, *cfg.patch_size), num_attention_heads=cfg.num_heads, attention_head_dim=head_dim,
            in_channels=loaded.vae.config.z_dim, out_channels=loaded.vae.config.z_dim, text_dim=cfg.text_dim,
            ffn_dim=4 * cfg.dim, num_layers=cfg.num_dual_layers + cfg.num_shared_layers,
        )
    transformer = transformer.to(engine.device, engine.dtype).eval()
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=loaded.vae, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=shift))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_peer(engine: Engine, pipe: WanPipeline, request: GenerationRequest, folder: Path) -> dict:
    """MiniLM embeddings (Kelp's encoder), WanPipeline to frames, then the same mp4 writer as Kelp."""
    r, encoder = request, engine.text_encoder(engine.validate(request).model.text_encoder)  # r: defaults filled in
    started = time.perf_counter()
    encoded = encoder.encode([r.prompt, r.negative_prompt])
    embeds = encoded.embeddings.to(engine.device)  # (2, L, 384): both padded to the same L, zeros past the prompt
    encode_s = time.perf_counter() - started
    step_ends: list[float] = []

    def on_step_end(_pipe, _i, _t, kwargs):
        sync(engine.device)
        step_ends.append(time.perf_counter())
        return kwargs

    with forward_timer(pipe.transformer, engine.device) as timer:
        frames = pipe(prompt_embeds=embeds[:1], negative_prompt_embeds=embeds[1:], height=r.height, width=r.width,
                      num_frames=r.num_frames, num_inference_steps=r.steps, guidance_scale=r.guidance_scale,
                      generator=torch.Generator().manual_seed(SEED), output_type="np",
                      callback_on_step_end=on_step_end).frames[0]  # (F, H, W, 3) float in [0, 1]
    decoded = time.perf_counter()
    write_video((frames * 255).round().clip(0, 255).astype("uint8"), folder / "peer.mp4", r.fps)
    done = time.perf_counter()
    sampling_s = step_ends[-1] - timer["first_start"]  # first transformer call to the end of the last step
    return {"encode_s": encode_s, "sampling_s": sampling_s, "s_per_step": sampling_s / r.steps,
            "transformer_s_per_step": timer["seconds"] / r.steps, "transformer_calls": timer["calls"],
            "decode_write_s": done - step_ends[-1], "write_s": done - decoded, "total_s": done - started}


def summarize(transformer: torch.nn.Module, cold: dict, runs: list[dict], **extra) -> dict:
    median = {k: statistics.median(r[k] for r in runs) for k in COLUMNS}
    return {"transformer_params": params(transformer), "median": median, **extra, "cold": cold, "runs": runs,
            "config": dict(transformer.config)}


def table(results: dict) -> str:
    lines = ["| | params | s/step | sampling s | decode+write s | total s |", "|---|---:|---:|---:|---:|---:|"]
    for name in ("kelp", PEER):
        m, p = results[name]["median"], results[name]["transformer_params"]
        lines.append(f"| {name} | {p / 1e6:.2f}M | {m['s_per_step']:.3f} | {m['sampling_s']:.2f} | "
                     f"{m['decode_write_s']:.2f} | {m['total_s']:.2f} |")
    ratio = results["ratio_kelp_over_peer"]
    lines.append(f"\nKelp / peer: total {ratio['total_s']:.2f}x, per step {ratio['s_per_step']:.2f}x "
                 f"(time inside the transformer {ratio['transformer_s_per_step']:.2f}x)")
    return "\n".join(lines)


METHOD = {  # what each number means, written into the JSON
    "s_per_step": "sampling_s / steps, sampling_s = the denoising loop (model calls, guidance, scheduler); peer: "
                  "first transformer call to callback_on_step_end of the last step",
    "transformer_s_per_step": "time inside transformer forward (hooks) / steps; Kelp makes one call of batch 2 "
                              "(cond+uncond), WanPipeline two of batch 1",
    "decode_write_s": "Kelp: engine timing (streams to ffmpeg); peer: last step to mp4 written (decode, np, write)",
    "runs": "one cold run each (Kelp: model build + MiniLM load; peer: + transformer build), then `repeats` runs "
            "alternating Kelp and peer; medians",
}


def measure(engine: Engine, request: GenerationRequest, repeats: int) -> dict:
    """Warm-up (cold) run of each side, then `repeats` runs alternating Kelp and the peer, so that drift in
    machine speed touches both alike."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cold = engine.generate(request, folder / "kelp.mp4")  # loads the model and MiniLM: nothing to hook yet
        shift = cold.metadata["settings"]["shift"]
        started = time.perf_counter()
        pipe = build_peer(engine, request, shift)
        peer_build_s = time.perf_counter() - started
        peer_cold = run_peer(engine, pipe, request, folder)
        runs: dict[str, list[dict]] = {"kelp": [], PEER: []}
        for _ in range(repeats):
            runs["kelp"].append(run_kelp(engine, request, folder))
            runs[PEER].append(run_peer(engine, pipe, request, folder))
    kelp = summarize(engine.model(engine.validate(request).model).transformer, cold.timings, runs["kelp"],
                     cold_total_s=cold.timings["total_s"], cold_load_s=cold.timings["load_s"])
    peer = summarize(pipe.transformer, peer_cold, runs[PEER], cold_total_s=peer_build_s + peer_cold["total_s"],
                     build_s=peer_build_s)
    return {"shift": shift, "vae_params": params(pipe.vae), "kelp": kelp, PEER: peer,
            "ratio_kelp_over_peer": {k: kelp["median"][k] / peer["median"][k] for k in COLUMNS}}


def main() -> None:
    args = parse_args()
    diffusers.utils.logging.set_verbosity_error()  # float32-cast notices from `.to(dtype)` on every build
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model, model_note = (args.model, args.model) if args.model else default_model()
    engine = Engine(device=args.device)
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, model=model, seed=SEED, steps=args.steps)
    request = engine.validate(request).request  # every default filled in, so both sides read the same numbers
    settings = {k: getattr(request, k) for k in ("width", "height", "num_frames", "fps", "steps", "guidance_scale")}
    print(f"model: {model_note}; {settings}, {request.sampler}; {args.repeats} repeats")
    results = {**machine_info(engine.device, "bench.generate"), "model": model, "model_note": model_note,
               "settings": {**settings, "sampler": request.sampler, "repeats": args.repeats}, "method": METHOD}
    results.update(measure(engine, request, args.repeats))
    print(table(results))
    out = Path(args.out or f"bench/results/generate-{engine.device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
