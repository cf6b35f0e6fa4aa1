"""Teach a model a subject it never saw with a LoRA, on this machine, the way the studio's Fine-tune tab does, and
check with the evaluation harness that the subject appears with the LoRA and not without it.

    python -m bench.lora_subject [--model kelp-small] [--clips 6] [--steps 800] [--name zorbly] [--count 6]

1. Own footage: `--clips` short H.264 clips of camera moves over a photo that training never showed (the harness's
   held-out photo, the cat), each with a `.txt` caption that names the subject only by a made-up word.
2. The studio's fine-tune recipe for that folder (app.finetune_recipe), trained by `python -m training.train` in a
   subprocess: wall time measured, as a user would wait for it.
3. `python -m training.eval.harness --sections subject` with the made-up word in the prompt, with and without the
   LoRA: how often the harness's photo detector finds the cat.
Prints a table and writes JSON (default bench/results/lora-subject-<device>.json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from app.finetune_recipe import DEFAULT_LEARNING_RATE, DEFAULT_RANK, DEFAULT_STEPS
from bench.machine import machine_info
from training.eval.photo_subject import ACCEPT

RESULTS_DIR = Path("bench/results")
PHOTO = "cat"  # training.data.toy_world.HELD_OUT_PHOTOS: never in the base model's training data
CAMERA_MOVES = ("pan left", "pan right", "zoom in", "zoom out")


def write_footage(folder: Path, *, name: str, clips: int, width: int, height: int, num_frames: int,
                  fps: float) -> list[str]:
    """`clips` mp4 files of camera moves over the held-out photo, captions naming it `name`; returns the captions."""
    from core.video_io import write_video
    from training.data.toy_world.render import render_clip
    from training.data.toy_world.sampling import photo_truth

    folder.mkdir(parents=True, exist_ok=True)
    captions = []
    for i in range(clips):
        rng = np.random.default_rng(1000 + i)
        truth = photo_truth(rng, PHOTO, CAMERA_MOVES[i % len(CAMERA_MOVES)], width=width, height=height,
                            num_frames=num_frames, fps=fps, subject=name)
        write_video(render_clip(truth), folder / f"{name}-{i:02d}.mp4", fps)
        (folder / f"{name}-{i:02d}.txt").write_text(truth.caption + "\n")
        captions.append(truth.caption)
    return captions


def train_lora(model: str, footage: Path, work: Path, *, name: str, steps: int, rank: int,
               learning_rate: float) -> tuple[Path, float]:
    """The studio's fine-tune recipe for `footage`, trained in a subprocess; returns (LoRA file, wall seconds)."""
    from app.finetune_recipe import FinetuneSettings, recipe_table, toml_text
    from core.model_loader import resolve_model
    from training.data.footage_scan import scan_footage

    settings = FinetuneSettings(name=name, base_model=model, steps=steps, rank=rank, learning_rate=learning_rate)
    output = work / "output"
    table = recipe_table(settings, resolve_model(model), scan_footage(footage), footage_folder=footage,
                         lora_name=name, output_dir=output)
    recipe = work / "recipe.toml"
    recipe.write_text(toml_text(table))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "training.train", "--recipe", str(recipe)], check=True)
    seconds = time.perf_counter() - start
    loras = sorted((output / "lora").glob("*.safetensors"))
    if len(loras) != 1:
        raise RuntimeError(f"expected one LoRA file in {output / 'lora'}, found {[p.name for p in loras]}")
    return loras[0], seconds


def run_harness(model: str, lora: Path, *, prompt: str, count: int, steps: int | None, out: Path) -> dict:
    command = [sys.executable, "-m", "training.eval.harness", "--model", model, "--sections", "subject",
               "--count", str(count), "--lora", f"{lora}:1.0", "--subject-photo", PHOTO,
               "--subject-prompt", prompt, "--out", str(out)]
    if steps is not None:
        command += ["--steps", str(steps)]
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def detector_summary(harness: dict, variant: str) -> dict:
    """How near the clips of one variant ("without_lora", "with_lora") came to the photo: the share whose closest
    photo is it, and the mean of their best scores (the detector names a photo from ACCEPT)."""
    clips = [clip[variant] for clip in harness["sections"]["subject"]["clips"] if variant in clip]
    if not clips:
        return {}
    return {"closest_is_subject": sum(c["closest"] == PHOTO for c in clips) / len(clips),
            "mean_score": sum(c["score"] for c in clips) / len(clips)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lora_subject", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="base model (default: kelp-small, else random:small)")
    parser.add_argument("--name", default="zorbly", help="the made-up word the captions call the subject")
    parser.add_argument("--clips", type=int, default=6, help="footage clips to train on")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="LoRA training steps (the studio's default)")
    parser.add_argument("--rank", type=int, default=DEFAULT_RANK, help="(the studio's default)")
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_LEARNING_RATE, help="(the studio's default)")
    parser.add_argument("--count", type=int, default=6, help="harness clips with and without the LoRA")
    parser.add_argument("--sampling-steps", type=int, default=None, help="harness sampling steps (model default)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep footage, recipe and LoRA here")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    for flag in ("clips", "steps", "count"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if not args.name.isalpha():
        parser.error(f"--name must be one made-up word of letters, got {args.name!r}")

    from core.model_loader import DEFAULT_MODEL, resolve_model

    model = args.model or DEFAULT_MODEL
    try:
        source = resolve_model(model)
    except ValueError:
        if args.model is not None:
            raise
        model, source = "random:small", resolve_model("random:small")
    d = source.defaults
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="kelp-lora-subject-"))
    captions = write_footage(work / "footage", name=args.name, clips=args.clips, width=d.width, height=d.height,
                             num_frames=d.num_frames, fps=d.fps)
    lora, train_seconds = train_lora(model, work / "footage", work, name=args.name, steps=args.steps,
                                     rank=args.rank, learning_rate=args.learning_rate)
    prompt = f"a photo of {args.name}, the camera pans right"
    harness = run_harness(model, lora, prompt=prompt, count=args.count, steps=args.sampling_steps,
                          out=work / "harness-subject.json")
    scores = harness["sections"]["subject"]["scores"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where training.train and the harness run
    result = {
        "model": model, "machine": machine_info(device, "bench.lora_subject"), "photo": PHOTO, "name": args.name, "clips": args.clips,
        "captions": captions, "lora_steps": args.steps, "rank": args.rank, "learning_rate": args.learning_rate,
        "train_seconds": round(train_seconds, 1), "lora_file": str(lora), "lora_bytes": lora.stat().st_size,
        "prompt": prompt, "count": args.count, "found_without_lora": scores["found_without_lora"],
        "found_with_lora": scores.get("found_with_lora"),
        "detector": {"accept_score": ACCEPT, "without_lora": detector_summary(harness, "without_lora"),
                     "with_lora": detector_summary(harness, "with_lora")},
        "harness": harness,
    }
    out = args.out or RESULTS_DIR / f"lora-subject-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    near = result["detector"]
    print("| model | clips | steps | train time | LoRA | found without / with LoRA | closest photo is the subject "
          f"without / with | mean score without / with (found from {ACCEPT}) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {model} | {args.clips} | {args.steps} | {train_seconds / 60:.1f} min | {lora.stat().st_size / 1e6:.2f} MB "
          f"| {scores['found_without_lora']:.0%} / {scores.get('found_with_lora', 0):.0%} "
          f"| {near['without_lora']['closest_is_subject']:.0%} / {near['with_lora']['closest_is_subject']:.0%} "
          f"| {near['without_lora']['mean_score']:.2f} / {near['with_lora']['mean_score']:.2f} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
