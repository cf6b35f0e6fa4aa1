"""Is it the VAE's encoder or its decoder that limits reconstruction? For the harness's VAE clips, latents are
optimised by gradient descent for the model's fixed decoder and compared with the encoder's own.

    python -m bench.vae_latent_optimum [--model kelp-small] [--per-kind 1] [--kind photo] [--steps 120] [--lr 0.02]

Each clip starts from the encoder's latents and takes `--steps` Adam steps on the pixels' mean squared error. The
gain over the encoder is what a better encoder could reach with this decoder and this latent size; the drift (RMS
change of the latents, in units of their std) is how far from the encoder's latent space that optimum lies, which
is the space the transformer was trained on. Clips are the harness's `vae` section's (same harness seed, same
order): the first `--per-kind` of each kind, or of `--kind` only. About 2 seconds a step at 128x128x17 on 2 CPU cores.
Prints a table and writes JSON (default bench/results/vae-latent-optimum-<model name>.json).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from bench.machine import machine_info

RESULTS_DIR = Path("bench/results")
MAX_SCANNED = 1000  # harness clips looked at for `--kind` before giving up


def harness_vae_clips(defaults, *, harness_seed: int, per_kind: int, kinds: tuple[str, ...]) -> list:
    """The first `per_kind` clips of each of `kinds` in the harness's `vae` section at `harness_seed`, in the
    section's order, as (index, seed, clip)."""
    from training.data.toy_world import toy_clip
    from training.eval.harness_run import harness_clip_seed

    clips, taken = [], dict.fromkeys(kinds, 0)
    for index in range(MAX_SCANNED):
        seed = harness_clip_seed(harness_seed, "vae", index)
        clip = toy_clip(seed, width=defaults.width, height=defaults.height, num_frames=defaults.num_frames,
                        fps=defaults.fps)
        if taken.get(clip.truth.kind, per_kind) < per_kind:
            taken[clip.truth.kind] += 1
            clips.append((index, seed, clip))
        if all(n == per_kind for n in taken.values()):
            return clips
    raise ValueError(f"`kinds` {kinds!r}: fewer than {per_kind} of each in the harness's first {MAX_SCANNED} VAE clips")


def optimise_latents(vae, frames, *, steps: int, lr: float) -> dict:
    """The encoder's latents of uint8 `frames` (T, H, W, 3) against latents fitted to the fixed decoder: PSNR of
    each reconstruction and the RMS drift between them in units of the latents' std."""
    from core.conditioning import frames_to_video_tensor, video_tensor_to_frames
    from core.models.vae import decode_latents, encode_video, latent_stats
    from training.eval.metrics import psnr
    from training.vae_trainer import decode_for_training

    device = next(vae.parameters()).device
    video = frames_to_video_tensor(frames).to(device)  # (1, 3, T, H, W) in [-1, 1]
    encoded = encode_video(vae, video)  # (1, z, t, h, w), normalized
    mean, std = latent_stats(vae, encoded)  # (1, z, 1, 1, 1) each
    fitted = encoded.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([fitted], lr=lr)
    requires_grad_before = [p.requires_grad for p in vae.parameters()]
    vae.requires_grad_(False)
    try:
        for _ in range(steps):
            loss = torch.nn.functional.mse_loss(decode_for_training(vae, fitted * std + mean), video)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        for p, flag in zip(vae.parameters(), requires_grad_before):
            p.requires_grad_(flag)
    fitted = fitted.detach()

    def rebuilt_psnr(latents: torch.Tensor) -> float:
        return psnr(video_tensor_to_frames(decode_latents(vae, latents)[0]), frames)

    return {"psnr_encoder_db": rebuilt_psnr(encoded), "psnr_optimum_db": rebuilt_psnr(fitted),
            "drift_std": math.sqrt(float(((fitted - encoded) ** 2).mean()))}


def by_kind(clips: list[dict]) -> dict:
    """Mean encoder and optimum PSNR per clip kind."""
    kinds = {}
    for c in clips:
        kinds.setdefault(c["kind"], []).append(c)
    return {kind: {"clips": len(group),
                   "psnr_encoder_db": sum(c["psnr_encoder_db"] for c in group) / len(group),
                   "psnr_optimum_db": sum(c["psnr_optimum_db"] for c in group) / len(group)}
            for kind, group in sorted(kinds.items())}


def main(argv: list[str] | None = None) -> int:
    from training.data.toy_world.sampling import KINDS

    parser = argparse.ArgumentParser(prog="python -m bench.vae_latent_optimum", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="kelp-small", help="model name or folder whose VAE is measured")
    parser.add_argument("--per-kind", type=int, default=1, help="harness VAE clips to fit of each kind")
    parser.add_argument("--kind", default=None, choices=KINDS, help="only clips of this kind (default: every kind)")
    parser.add_argument("--steps", type=int, default=120, help="Adam steps a clip")
    parser.add_argument("--lr", type=float, default=0.02, help="Adam learning rate (latents in std units)")
    parser.add_argument("--harness-seed", type=int, default=0, help="the harness seed whose VAE clips are used")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    for flag in ("per_kind", "steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")

    from core.model_loader import resolve_model
    from core.pipeline import Engine

    engine = Engine(device="auto")
    source = resolve_model(args.model, engine.model_dirs)
    vae = engine.model(source).vae  # loaded as the engine (and the harness) loads it
    rows = []
    kinds = (args.kind,) if args.kind else KINDS
    for index, seed, clip in harness_vae_clips(source.defaults, harness_seed=args.harness_seed, per_kind=args.per_kind,
                                               kinds=kinds):
        start = time.perf_counter()
        measured = optimise_latents(vae, clip.frames, steps=args.steps, lr=args.lr)
        rows.append({"index": index, "seed": seed, "kind": clip.truth.kind, **measured,
                     "seconds": round(time.perf_counter() - start, 1)})

    result = {"model": args.model, "machine": machine_info(next(vae.parameters()).device, "bench.vae_latent_optimum"),
              "harness_seed": args.harness_seed, "kinds": list(kinds), "per_kind": args.per_kind, "steps": args.steps, "lr": args.lr,
              "clips": rows, "by_kind": by_kind(rows)}
    out = args.out or RESULTS_DIR / f"vae-latent-optimum-{Path(args.model).name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"| {args.model}: harness VAE clip | kind | encoder's latents | optimised latents ({args.steps} steps) "
          "| gain | drift (std) |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        gain = r["psnr_optimum_db"] - r["psnr_encoder_db"]
        print(f"| {r['index']} | {r['kind']} | {r['psnr_encoder_db']:.2f} dB | {r['psnr_optimum_db']:.2f} dB "
              f"| {gain:+.2f} dB | {r['drift_std']:.2f} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
