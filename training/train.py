"""Train from a recipe: `python -m training.train --recipe training/recipes/<name>.toml [--output-dir DIR] [--resume]`.

`--mixed-precision no|bf16|fp16` replaces the recipe's `model.mixed_precision`: the CPU recipes autocast to bfloat16,
which is fast only on CPUs with bfloat16 arithmetic (the run warns at its start where it is not).

Runs as one process, or as several under `accelerate launch --num_processes N [--cpu] -m training.train ...`.
`--export-only [--export-to DIR]` writes what the run would export (model folder, VAE folder or LoRA file) from its
newest checkpoint and stops: a snapshot to try or ship, safe while the run itself goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from training.checkpointing import latest_checkpoint
from training.config import MIXED_PRECISION, Recipe, load_recipe


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    p.add_argument("--recipe", required=True, help="a TOML recipe, e.g. training/recipes/small-cpu.toml")
    p.add_argument("--output-dir", help="where checkpoints, metrics and exports go (default: the recipe's)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the output dir")
    p.add_argument("--export-only", action="store_true",
                   help="export the newest checkpoint (EMA weights if kept) without training, then stop")
    p.add_argument("--export-to", help="with --export-only: where to write (default: the run's own export path)")
    p.add_argument("--mixed-precision", choices=MIXED_PRECISION,
                   help="replace the recipe's model.mixed_precision (e.g. 'no' on a CPU without bfloat16 arithmetic)")
    return p


def run(recipe_path: str, *, output_dir: str | None = None, resume: bool = False,
        mixed_precision: str | None = None) -> None:
    recipe = load_recipe(recipe_path, output_dir=output_dir)  # validated before any weights load
    recipe = with_mixed_precision(recipe, mixed_precision)
    trainer_class(recipe)(recipe, resume=resume).train()


def with_mixed_precision(recipe: Recipe, mixed_precision: str | None) -> Recipe:
    """`recipe` with `model.mixed_precision` replaced (unchanged for None). Weights, optimizer and EMA stay float32
    either way, so a run may resume in another precision; it then no longer repeats the uninterrupted run exactly."""
    if mixed_precision is None:
        return recipe
    return dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, mixed_precision=mixed_precision))


def export_checkpoint(recipe_path: str, *, output_dir: str | None = None, export_to: str | None = None) -> Path:
    """What the run would export, from its newest checkpoint; nothing in the run's folder changes."""
    recipe = load_recipe(recipe_path, output_dir=output_dir)
    checkpoints = Path(recipe.output_dir) / "checkpoints"
    if latest_checkpoint(checkpoints) is None:
        raise ValueError(f"--export-only: no checkpoint in {str(checkpoints)!r} to export")
    return trainer_class(recipe)(recipe, resume=True).export(export_to)


def trainer_class(recipe):
    if recipe.kind == "vae":
        from training.vae_trainer import VAETrainer

        return VAETrainer
    from training.dit_trainer import DiTTrainer

    return DiTTrainer


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.export_to and not args.export_only:
        print("error: --export-to goes with --export-only", file=sys.stderr)
        return 2
    if args.mixed_precision and args.export_only:
        print("error: --mixed-precision is for training; --export-only trains nothing", file=sys.stderr)
        return 2
    try:
        if args.export_only:
            print(export_checkpoint(args.recipe, output_dir=args.output_dir, export_to=args.export_to))
        else:
            run(args.recipe, output_dir=args.output_dir, resume=args.resume, mixed_precision=args.mixed_precision)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
