"""Train from a recipe: `python -m training.train --recipe training/recipes/<name>.toml [--output-dir DIR] [--resume]`.

Runs as one process, or as several under `accelerate launch --num_processes N [--cpu] -m training.train ...`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from training.config import load_recipe


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    p.add_argument("--recipe", required=True, help="a TOML recipe, e.g. training/recipes/small-cpu.toml")
    p.add_argument("--output-dir", help="where checkpoints, metrics and exports go (default: the recipe's)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the output dir")
    return p


def run(recipe_path: str, *, output_dir: str | None = None, resume: bool = False) -> None:
    recipe = load_recipe(recipe_path, output_dir=output_dir)  # validated before any weights load
    if recipe.kind == "vae":
        from training.vae_trainer import VAETrainer as Trainer
    else:
        from training.dit_trainer import DiTTrainer as Trainer
    Trainer(recipe, resume=resume).train()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        run(args.recipe, output_dir=args.output_dir, resume=args.resume)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
