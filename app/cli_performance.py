"""The generate command's performance options (attention, quantization, offload, tiled VAE decode) and the request
fields they set."""

from __future__ import annotations

import argparse


def add_performance_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("performance")
    group.add_argument("--attention", choices=["dense", "sparse"], default="dense",
                       help="sparse: adaptive block-sparse attention (pays from ~4K tokens; shorter clips run dense)")
    budget = group.add_mutually_exclusive_group()
    budget.add_argument("--sparsity", type=float, metavar="S",
                        help="sparse: drop this share of key blocks per query block (0-1), instead of a target recall")
    budget.add_argument("--attention-recall", type=float, metavar="R",
                        help="sparse: keep the fewest blocks holding this share of attention (0-1, default 0.9)")
    group.add_argument("--sparse-block-size", type=int, metavar="TOKENS", help="sparse: tokens per block (default 64)")
    group.add_argument("--sparse-warmup-steps", type=int, metavar="N",
                       help="sparse: dense model calls before the first search (default 2)")
    group.add_argument("--sparse-search-steps", metavar="I,J,...",
                       help="sparse: model calls that search a fresh pattern, e.g. 2,10 (default)")
    group.add_argument("--sparse-min-tokens", type=int, metavar="N",
                       help="sparse: shorter sequences run dense (default 4096 on a CPU, 32768 on a CUDA GPU)")
    group.add_argument("--quant", choices=["none", "int8", "nf4", "fp8"], default="none",
                       help="transformer weights: int8 (CPU and CUDA), nf4 (CUDA), fp8 (Hopper/Ada GPUs)")
    group.add_argument("--text-encoder-quant", choices=["none", "int8", "nf4", "fp8"], default="none",
                       help="the text encoder's projections, in the same modes")
    group.add_argument("--offload", action="store_true",
                       help="CUDA: keep the models in CPU memory, each on the GPU only while it runs")
    group.add_argument("--vae-tile-size", type=int, metavar="PX",
                       help="decode in overlapping tiles of PX pixels (a multiple of 16, at least 128): the VAE's memory "
                            "then follows the tile, not the frame; smaller tiles hold less and take longer (default: "
                            "whole frames)")


SPARSE_OPTIONS = {  # argparse dest -> SparsitySettings field
    "sparsity": "sparsity", "attention_recall": "target_recall", "sparse_block_size": "block_size",
    "sparse_warmup_steps": "warmup_steps", "sparse_search_steps": "search_steps", "sparse_min_tokens": "min_tokens",
}


def performance_fields(args: argparse.Namespace) -> dict:
    """`attention`, `sparse_attention`, `quant`, `text_encoder_quant`, `offload` and `vae_tile_size` for
    GenerationRequest."""
    return {**attention_fields(args), "quant": args.quant, "text_encoder_quant": args.text_encoder_quant,
            "offload": args.offload, "vae_tile_size": args.vae_tile_size}


def attention_fields(args: argparse.Namespace) -> dict:
    """`attention` and `sparse_attention` for GenerationRequest; sparse options without --attention sparse are
    refused rather than silently ignored."""
    from core.attention.adaptive_sparsity import SparsitySettings

    given = {field: getattr(args, dest) for dest, field in SPARSE_OPTIONS.items() if getattr(args, dest) is not None}
    if args.attention != "sparse":
        if given:
            flags = ", ".join("--" + dest.replace("_", "-") for dest in SPARSE_OPTIONS if getattr(args, dest) is not None)
            raise ValueError(f"{flags}: only with `--attention sparse`, got --attention {args.attention}")
        return {"attention": args.attention, "sparse_attention": None}
    if "search_steps" in given:
        text = given["search_steps"]
        try:
            given["search_steps"] = tuple(int(part) for part in text.split(",") if part.strip())
        except ValueError as err:
            raise ValueError(f"`--sparse-search-steps` must be comma-separated integers, got {text!r}") from err
    return {"attention": "sparse", "sparse_attention": SparsitySettings(**given)}
