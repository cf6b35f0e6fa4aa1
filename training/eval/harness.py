"""Evaluation harness: how well a Kelp model does the toy world's tasks, section by section.

Run from the repo root: `python -m training.eval.harness --model MODEL [--sections adherence,i2v,...]
[--count N] [--seed S] [--steps K] [--sampler euler|heun|unipc] [--guidance-scale G] [--shift S]
[--lora PATH[:STRENGTH]] [--subject-photo cat --subject-prompt "..."] [--out bench/results/harness-<name>.json]`.
Prints a markdown table and writes JSON: the model and its weights hash, the settings, per-section scores and
per-clip details, timestamps and wall time. Exit status 2 for bad arguments (checked before any weights load), else 0.

Sections (see harness_sections): adherence to held-out prompts (and, to tell why it falls short, to prompts
training shows and of the held-out clips through the VAE alone), caption sensitivity (which caption words the
model's denoising uses, graded and without sampling), image-to-video fidelity of frame 0, multi-shot
subject consistency, VAE reconstruction, and whether a photo subject appears with and without a LoRA. One Engine
serves every generation, and every clip has a fixed seed.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from core.lora import MAX_STRENGTH, check_lora_file
from core.model_loader import file_sha256, resolve_model
from core.pipeline import Engine
from core.request import LoraSpec
from core.sampling import SAMPLERS
from training.data.toy_world.vocabulary import PHOTOS
from training.eval.harness_run import HarnessRun
from training.eval.harness_sections import DEFAULT_COUNTS, MAX_COUNTS, SECTIONS, TARGETS, default_subject_prompt

DEFAULT_PHOTO = "cat"  # held out of training (HELD_OUT_PHOTOS): what a subject LoRA would teach
RESULTS_DIR = Path("bench/results")


@dataclass(frozen=True)
class HarnessSettings:
    model: str
    sections: tuple[str, ...]
    counts: dict[str, int]
    seed: int = 0
    steps: int | None = None
    sampler: str | None = None
    guidance_scale: float | None = None
    loras: tuple[LoraSpec, ...] = ()
    subject_photo: str = DEFAULT_PHOTO
    subject_prompt: str | None = None
    device: str = "auto"
    out: Path | None = None
    shift: float | None = None


def parse_lora(text: str) -> LoraSpec:
    """`PATH[:STRENGTH]` -> LoraSpec; raises ValueError naming a missing file or a bad strength."""
    path, strength = text, 1.0
    head, colon, tail = text.rpartition(":")
    if colon and head.endswith(".safetensors"):
        try:
            path, strength = head, float(tail)
        except ValueError:
            rule = f"must be a number from 0 to {MAX_STRENGTH}"
            raise ValueError(f"`--lora` strength {rule}, got {tail!r} in {text!r}") from None
    check_lora_file("--lora", path, strength)
    return LoraSpec(path, strength)


def parse_args(argv: list[str] | None) -> HarnessSettings:
    """Read and check the command line; exits with status 2 and a message naming the bad value."""
    parser = argparse.ArgumentParser(prog="python -m training.eval.harness", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder, bundled name or random:<preset>[:seed]")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {','.join(SECTIONS)}")
    parser.add_argument("--count", type=int, default=None, help=f"clips per section (default {DEFAULT_COUNTS})")
    parser.add_argument("--seed", type=int, default=0, help="harness seed: every clip's seed derives from it")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--sampler", default=None, choices=SAMPLERS, help="sampler (default: the model's)")
    parser.add_argument("--guidance-scale", type=float, default=None,
                        help="classifier-free guidance (default: the model's)")
    parser.add_argument("--shift", type=float, default=None,
                        help="timestep shift (default: the model's, scaled by clip size)")
    parser.add_argument("--lora", action="append", default=[], metavar="PATH[:STRENGTH]",
                        help="LoRA for the subject section's 'with LoRA' clips (repeatable)")
    parser.add_argument("--subject-photo", default=DEFAULT_PHOTO, help=f"toy-world photo, one of {sorted(PHOTOS)}")
    parser.add_argument("--subject-prompt", default=None, help="default: a toy-world caption of a pan over the photo")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/harness-<model name>.json")
    args = parser.parse_args(argv)

    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        parser.error(f"--sections must name some of {list(SECTIONS)}, got {args.sections!r} (unknown: {unknown})")
    if args.count is not None and args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    if args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")
    if args.steps is not None and not 1 <= args.steps <= 500:
        parser.error(f"--steps must be from 1 to 500, got {args.steps}")
    if args.guidance_scale is not None and not 0 <= args.guidance_scale <= 50:
        parser.error(f"--guidance-scale must be from 0 to 50, got {args.guidance_scale}")
    if args.shift is not None and not 0.01 <= args.shift <= 100:
        parser.error(f"--shift must be from 0.01 to 100, got {args.shift}")
    if args.subject_photo not in PHOTOS:
        parser.error(f"--subject-photo must be one of {sorted(PHOTOS)}, got {args.subject_photo!r}")
    if args.subject_prompt is not None and not args.subject_prompt.strip():
        parser.error(f"--subject-prompt must not be empty, got {args.subject_prompt!r}")
    try:
        resolve_model(args.model)
        loras = tuple(parse_lora(text) for text in args.lora)
    except ValueError as err:
        parser.error(str(err))
    counts = {s: min(args.count or DEFAULT_COUNTS[s], MAX_COUNTS.get(s, math.inf)) for s in sections}
    return HarnessSettings(args.model, sections, counts, args.seed, args.steps, args.sampler, args.guidance_scale,
                           loras, args.subject_photo, args.subject_prompt, args.device, args.out, args.shift)


def default_out(model: str) -> Path:
    """bench/results/harness-<model>.json, the model's name made safe for a file name."""
    name = Path(model.rstrip("/\\")).name if ("/" in model or "\\" in model) else model
    return RESULTS_DIR / f"harness-{re.sub(r'[^A-Za-z0-9._-]+', '-', name).strip('-')}.json"


def run_harness(settings: HarnessSettings, engine: Engine | None = None) -> dict:
    """Run every chosen section with one Engine (made here unless given) and return the report."""
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    engine = engine or Engine(device=settings.device)
    source = resolve_model(settings.model, engine.model_dirs)
    run = HarnessRun(engine, source, settings.seed, settings.steps, settings.sampler, settings.guidance_scale,
                     settings.loras, settings.shift)
    results = {}
    for section in settings.sections:
        results[section] = run_section(run, section, settings)
        print(f"{section}: {results[section]['clip_count']} clips in {results[section]['wall_s']:.0f} s",
              file=sys.stderr, flush=True)
    folder = str(source.folder) if source.folder else None
    return {
        "model": {"spec": settings.model, "preset": source.preset, "folder": folder,
                  "weights_sha256": run.model().weights_hash},
        "settings": settings_record(settings, run),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - clock, 1),
        "sections": results,
    }


def run_section(run: HarnessRun, section: str, settings: HarnessSettings) -> dict:
    """One section's result, with its clip count, wall time and, where it has one, whether it met its target."""
    mark = time.perf_counter()
    extra = {"photo": settings.subject_photo, "prompt": settings.subject_prompt} if section == "subject" else {}
    result = SECTIONS[section](run, settings.counts[section], **extra)
    result["clip_count"] = len(result["clips"])
    result["wall_s"] = round(time.perf_counter() - mark, 2)
    if section in TARGETS:
        name, lowest = TARGETS[section]
        value = result["scores"][name]
        result["target"] = {"score": name, "at_least": lowest, "met": value is not None and value >= lowest}
    return result


def settings_record(settings: HarnessSettings, run: HarnessRun) -> dict:
    """Everything that decides the clips: sections and counts, seed, sampling settings, LoRAs, subject."""
    d = run.defaults
    loras = [{"path": l.path, "strength": l.strength, "sha256": file_sha256(Path(l.path))} for l in settings.loras]
    return {
        "sections": list(settings.sections), "counts": settings.counts, "seed": settings.seed,
        "steps": settings.steps or d.steps, "width": d.width, "height": d.height, "num_frames": d.num_frames,
        "guidance_scale": d.guidance_scale if settings.guidance_scale is None else settings.guidance_scale,
        "sampler": settings.sampler or d.sampler, "shift": settings.shift,  # None: the model's, scaled by size
        "device": str(run.engine.device), "loras": loras,
        "subject_photo": settings.subject_photo,
        "subject_prompt": settings.subject_prompt or default_subject_prompt(settings.subject_photo),
    }


def markdown_table(report: dict) -> str:
    """One row per section score: its value, its target where it has one, clips and seconds."""
    lines = ["| section | score | value | target | clips | seconds |", "|---|---|---:|---|---:|---:|"]
    for section, result in report["sections"].items():
        target = result.get("target")
        for name, value in result["scores"].items():
            goal = ""
            if target and target["score"] == name:
                goal = f"≥ {target['at_least']:g} ({'met' if target['met'] else 'missed'})"
            shown = "-" if value is None else f"{value:.3f}"
            lines.append(f"| {section} | {name} | {shown} | {goal} | {result['clip_count']} | {result['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    report = {"command": "python -m training.eval.harness " + " ".join(sys.argv[1:] if argv is None else argv)}
    report |= run_harness(settings)
    print(markdown_table(report))
    print(f"\n{report['model']['spec']} in {report['wall_s']:.0f} s")
    out = settings.out or default_out(settings.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(report), indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def _finite(value):
    """The report with infinite or NaN numbers (PSNR of identical frames) as null, so that it is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
