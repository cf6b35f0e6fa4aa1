"""Adaptive block-sparse attention against dense attention: kernel speed, fidelity, sparsity, search overhead.

Run from the repo root: `python -m bench.attention [--quick] [--device cuda]`. Prints markdown tables and
writes bench/results/attention-<device>.json.

(a) Kernels: dense SDPA (on CUDA also FlexAttention dense and SageAttention when installed) against the block-sparse
    kernel at a fixed 85% block sparsity and at a 0.95 target recall, per sequence length and head dimension.
(b) Fidelity: relative L2 of each sparse output against dense. The inputs are synthetic but shaped like a video
    DiT's: tokens on a (frames, 32, 32) grid whose queries and keys are random Fourier features of their position,
    so that q.k is a smooth kernel of the 3D distance (attention is mostly local, with per-head widths).
(c) End to end: a generation with sparse attention against the dense one with the same seed (video PSNR/SSIM),
    at the model's default size (searching from the first token) and on a longer, larger clip with the default
    settings; the achieved sparsity per layer and head and the search's share of sampling time.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.machine import machine_info, sync
from core.attention.adaptive_sparsity import SparsitySettings, always_kept_blocks, attention_with_block_mass, select_blocks
from core.attention.block_sparse import block_sparse_attention, flex_can_run, num_blocks, reusable_block_mask
from core.attention.dispatch import sageattention_installed

GRID = 32  # video tokens per row and column of a frame
SPARSITY = 0.85
RECALL = 0.95
CUDA_SPARSITY_SWEEP = (0.5, 0.75, 0.9, 0.95)
END_TO_END_PROMPT = "a red circle moving right on a blue background"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default=None, help="tokens, comma-separated (default 4096,16384,32768,75000)")
    parser.add_argument("--head-dims", default=None, help="comma-separated (default 64,128)")
    parser.add_argument("--heads", type=int, default=None, help="attention heads per call, batch 1 (default: 2 on "
                        "CPU, 12 on CUDA as in Wan-1.3B, so that the GPU is filled)")
    parser.add_argument("--block-size", type=int, default=None,
                        help="tokens per block (default: 64 on CPU, 128 on CUDA: FlexAttention's tile)")
    parser.add_argument("--max-length-dim128", type=int, default=None,
                        help="longer sequences are timed at head dim 64 only (default 32768 on CPU, where dense 75K x "
                             "128 takes minutes; no limit on CUDA)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per kernel (default 3 on CPU, 1 above 32K tokens there; 10 on CUDA)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None, help="end-to-end model (default: kelp-small, else random:small)")
    parser.add_argument("--steps", type=int, default=None, help="end-to-end sampling steps (default: the model's)")
    parser.add_argument("--skip-kernels", action="store_true")
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--text-embeddings", default=None,
                        help="end to end: prompts recorded by bench.recorded_text (GPU machines without MiniLM)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--quick", action="store_true", help="4K and 16K tokens, head dim 64, a short end-to-end run")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    args.heads = args.heads or (12 if cuda else 2)
    args.block_size = args.block_size or (128 if cuda else 64)
    if args.quick:
        args.lengths, args.head_dims = args.lengths or "4096,16384", args.head_dims or "64"
        args.repeats, args.steps = 1, args.steps or 6
    args.repeats = args.repeats or (10 if cuda else 3)
    args.max_length_dim128 = args.max_length_dim128 or (10**9 if cuda else 32768)
    args.lengths, args.head_dims = args.lengths or "4096,16384,32768,75000", args.head_dims or "64,128"
    args.lengths = [int(x) for x in str(args.lengths).split(",")]
    args.head_dims = [int(x) for x in str(args.head_dims).split(",")]
    return args


# ---------------------------------------------------------------------------------------------------------------
# (a) + (b): kernels on video-shaped inputs
# ---------------------------------------------------------------------------------------------------------------


def video_like_qkv(length: int, heads: int, head_dim: int, device, dtype, seed: int = 0):
    """q, k, v (1, H, L, D). Each head's q.k is a random-Fourier approximation of a Gaussian kernel of the
    tokens' (t, y, x) distance, with a width that differs per head (1.5 to 4 tokens), plus noise. The kernel's
    random-feature error adds a broad floor of small scores everywhere, as real attention maps have."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.arange(length)
    positions = torch.stack([index // (GRID * GRID), (index // GRID) % GRID, index % GRID], dim=-1).float()  # (L, 3)
    qs, ks = [], []
    for head in range(heads):
        width = 1.5 + 2.5 * head / max(1, heads - 1)  # tokens: 1.5 (local) to 4 (broad)
        omega = torch.randn(3, head_dim // 2, generator=generator) / width
        phase = positions @ omega  # (L, D/2)
        features = torch.cat([phase.cos(), phase.sin()], dim=-1) * math.sqrt(2.0 / head_dim)
        sharpness = 9.0 * math.sqrt(head_dim)  # logits q.k / sqrt(D) span about 0..9
        q = features * math.sqrt(sharpness) + 0.02 * torch.randn(length, head_dim, generator=generator)
        k = features * math.sqrt(sharpness) + 0.02 * torch.randn(length, head_dim, generator=generator)
        qs.append(q)
        ks.append(k)
    v = torch.randn(1, heads, length, head_dim, generator=generator)
    to = dict(device=device, dtype=dtype)
    return torch.stack(qs)[None].to(**to), torch.stack(ks)[None].to(**to), v.to(**to)


def timed(fn, device, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up (and compilation for FlexAttention)
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def relative_l2(out: torch.Tensor, reference: torch.Tensor) -> float:
    return float((out.float() - reference.float()).norm() / reference.float().norm())


def reuse_step(q, k, v, pattern: torch.Tensor, block: int):
    """One reuse-step call as SparsityController makes it: FlexAttention's BlockMask is built once per search
    (not timed here), the gather kernel prepares its own blocks each call."""
    block_mask = reusable_block_mask(q, pattern, block)
    return lambda: block_sparse_attention(q, k, v, pattern, block, block_mask=block_mask)


def kernel_rows(length: int, head_dim: int, args, device) -> list[dict]:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v = video_like_qkv(length, args.heads, head_dim, device, dtype)
    repeats = args.repeats if device.type == "cuda" or length <= 32768 else 1
    dense_s, dense = timed(lambda: F.scaled_dot_product_attention(q, k, v), device, repeats)
    rows = [dict(length=length, head_dim=head_dim, kernel="dense SDPA", seconds=dense_s, speedup=1.0,
                 sparsity=0.0, rel_l2=0.0)]
    if device.type == "cuda" and flex_can_run(q):
        blocks = num_blocks(length, 128)
        every = torch.ones(1, 1, blocks, blocks, dtype=torch.bool, device=device)
        seconds, out = timed(reuse_step(q, k, v, every, 128), device, repeats)
        rows.append(dict(length=length, head_dim=head_dim, kernel="FlexAttention dense", seconds=seconds,
                         speedup=dense_s / seconds, sparsity=0.0, rel_l2=relative_l2(out, dense)))
    if device.type == "cuda" and sageattention_installed():
        from sageattention import sageattn

        seconds, out = timed(lambda: sageattn(q, k, v, tensor_layout="HND", is_causal=False), device, repeats)
        rows.append(dict(length=length, head_dim=head_dim, kernel="SageAttention", seconds=seconds,
                         speedup=dense_s / seconds, sparsity=0.0, rel_l2=relative_l2(out, dense)))

    # The search: exact block masses (with the dense output, as a search step computes it) and the selection.
    block = args.block_size
    start = time.perf_counter()
    _, mass = attention_with_block_mass(q, k, v, block)
    sync(device)
    search_s = time.perf_counter() - start
    forced = always_kept_blocks(num_blocks(length, block), block, 0, device)
    budgets = [("fixed sparsity", dict(sparsity=SPARSITY)), ("target recall", dict(target_recall=RECALL))]
    if device.type == "cuda":  # the speed-up as a function of sparsity, where timing a row costs milliseconds
        budgets += [("fixed sparsity", dict(sparsity=s)) for s in CUDA_SPARSITY_SWEEP]
    for label, budget in budgets:
        pattern = select_blocks(mass, forced, **budget)
        seconds, out = timed(reuse_step(q, k, v, pattern, block), device, repeats)
        kept = (mass * pattern).sum() / mass.sum()
        rows.append(dict(length=length, head_dim=head_dim, kernel=f"sparse, {label} {list(budget.values())[0]}",
                         seconds=seconds, speedup=dense_s / seconds, sparsity=float(1 - pattern.float().mean()),
                         recall=float(kept), rel_l2=relative_l2(out, dense), search_s=search_s))
    return rows


def kernel_table(rows: list[dict]) -> str:
    lines = ["| tokens | head dim | kernel | ms | vs dense | sparsity | recall | rel. L2 | search ms |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        recall = f"{r['recall']:.3f}" if "recall" in r else ""
        search = f"{1000 * r['search_s']:.0f}" if "search_s" in r else ""
        lines.append(f"| {r['length']} | {r['head_dim']} | {r['kernel']} | {1000 * r['seconds']:.1f} | "
                     f"{r['speedup']:.2f}x | {r['sparsity']:.0%} | {recall} | {r['rel_l2']:.4f} | {search} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# (c): end to end on a model
# ---------------------------------------------------------------------------------------------------------------


def end_to_end(args, device) -> dict:
    from core.model_loader import DEFAULT_MODEL, resolve_model
    from core.pipeline import Engine
    from core.request import GenerationRequest
    from training.eval.metrics import psnr, ssim

    model = args.model
    if model is None:
        try:
            resolve_model(DEFAULT_MODEL)
            model = DEFAULT_MODEL
        except ValueError:
            model = "random:small"
    defaults = resolve_model(model).defaults
    engine = Engine(device=str(device), output_dir=tempfile.mkdtemp(prefix="kelp-bench-"))
    if args.text_embeddings:
        from bench.recorded_text import RecordedTextEncoder

        engine.use_text_encoder(RecordedTextEncoder(args.text_embeddings, device))
    base = GenerationRequest(prompt=END_TO_END_PROMPT, model=model, seed=0, steps=args.steps)
    cases = {
        # The model's own size is far below the default 4096-token threshold: search from the first token.
        f"default size {defaults.width}x{defaults.height}x{defaults.num_frames}, min_tokens=0, block 16":
            (base, SparsitySettings(min_tokens=0, block_size=16)),
        f"default size {defaults.width}x{defaults.height}x{defaults.num_frames}, min_tokens=0, block 16, recall 0.95":
            (base, SparsitySettings(min_tokens=0, block_size=16, target_recall=0.95)),
    }
    if not args.quick:
        big = replace(base, width=256, height=256, num_frames=65)  # 17 x 16 x 16 = 4352 video tokens
        cases["256x256x65 (4352 tokens), default settings"] = (big, SparsitySettings())
    if not args.quick and device.type == "cuda":  # lengths where attention is most of the work
        for width, height, num_frames in ((512, 512, 65), (832, 480, 81)):
            tokens = (1 + (num_frames - 1) // 4) * (height // 16) * (width // 16)  # kelp-small: a token per 16x16 px
            sized = replace(base, width=width, height=height, num_frames=num_frames)
            # Forced on: below CUDA's default thresholds (32K tokens, 75% sparsity) the default runs dense.
            cases[f"{width}x{height}x{num_frames} ({tokens} tokens), sparse forced on (min_tokens=0, min_sparsity=0.5)"] = (
                sized, SparsitySettings(block_size=128, min_tokens=0, min_sparsity=0.5))
            if num_frames == 81:
                cases[f"{width}x{height}x{num_frames} ({tokens} tokens), default settings"] = (
                    sized, SparsitySettings(block_size=128))
    results = {"model": model, "untrained": model.startswith("random:"), "cases": {}}
    for name, (request, settings) in cases.items():
        sparse_request = replace(request, attention="sparse", sparse_attention=settings)
        if device.type == "cuda":  # untimed short runs first: CUDA start-up and FlexAttention's compilation
            for warm in (request, sparse_request):
                engine.sample(replace(warm, steps=min(settings.search_steps) + 2))  # a search, then reuse
        dense = engine.sample(request)
        dense_frames = np.concatenate(list(engine.iter_frames(dense)))
        sparse = engine.sample(sparse_request)
        sparse_frames = np.concatenate(list(engine.iter_frames(sparse)))
        report = sparse.attention
        results["cases"][name] = {
            "psnr_db": psnr(dense_frames, sparse_frames), "ssim": ssim(dense_frames, sparse_frames),
            "dense_sampling_s": dense.timings["sampling_s"], "sparse_sampling_s": sparse.timings["sampling_s"],
            "searches": report["searches"], "search_share": report.get("search_share"),
            "mean_sparsity": report.get("mean_sparsity"), "mean_recall": report.get("mean_recall"),
            "layers": report.get("layers", []), "settings": report["settings"],
        }
        case = results["cases"][name]
        print(f"  {name}: {case['psnr_db']:.2f} dB, dense {case['dense_sampling_s']:.2f} s, sparse "
              f"{case['sparse_sampling_s']:.2f} s, sparsity {case['mean_sparsity']}", flush=True)
    return results


def end_to_end_table(results: dict) -> str:
    lines = [f"model: {results['model']}" + (" (untrained random weights)" if results["untrained"] else ""), "",
             "| case | PSNR dB | SSIM | sparsity | recall | search share | dense s | sparse s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results["cases"].items():
        pct = lambda x: f"{x:.0%}" if x is not None else "-"  # noqa: E731
        lines.append(f"| {name} | {r['psnr_db']:.2f} | {r['ssim']:.4f} | {pct(r['mean_sparsity'])} | "
                     f"{pct(r['mean_recall'])} | {pct(r['search_share'])} | {r['dense_sampling_s']:.2f} | "
                     f"{r['sparse_sampling_s']:.2f} |")
    for name, r in results["cases"].items():
        if r["layers"]:
            lines += ["", f"sparsity per layer and head ({name}):"]
            lines += [f"  layer {layer['layer']}: " + " ".join(f"{s:.0%}" for s in layer["sparsity"])
                      for layer in r["layers"]]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    results = {**machine_info(device, "bench.attention"), "block_size": args.block_size, "heads": args.heads,
               "inputs": "synthetic video-shaped q/k (3D-local random Fourier features), random v"}
    out = Path(args.out or f"bench/results/attention-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_kernels:
        results["kernels"] = []
        for length in args.lengths:
            for head_dim in args.head_dims:
                if length > args.max_length_dim128 and head_dim > 64:
                    continue
                rows = kernel_rows(length, head_dim, args, device)
                results["kernels"] += rows
                print(kernel_table(rows), flush=True)  # long runs: each size as it finishes, and saved
                out.write_text(json.dumps(results, indent=2, default=str))
    if not args.skip_end_to_end:
        results["end_to_end"] = end_to_end(args, device)
        print()
        print(end_to_end_table(results["end_to_end"]))
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
