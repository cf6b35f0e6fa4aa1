"""The training recipe of a studio fine-tune: a small LoRA on the chosen base model, sized for the footage it got.

Clips train at the base model's default size and fps, at most MAX_VIDEO_FRAMES frames long (about a second), so a
few hundred steps take minutes on a CPU. Images train as one-frame clips, in a stage of their own.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from core.model_loader import ModelSource
from training.data.footage import FootageScan
from training.data.footage_clips import MIN_VIDEO_FRAMES

MAX_VIDEO_FRAMES = 9  # frames per training clip: 1.1 s at 8 fps
MAX_STEPS = 5000
MAX_RANK = 128
# Measured with bench.lora_subject on kelp-small (6 clips of a photo it never saw, 2-core CPU): 200 steps at rank 8
# and 5e-4 taught nothing the harness could find in 2 minutes, nor did 800 steps at 5e-4; 800 steps at rank 16 and
# 1e-3 (8 minutes) did, in 4 of 6 clips.
DEFAULT_STEPS = 800
DEFAULT_RANK = 16
DEFAULT_LEARNING_RATE = 1e-3  # far above the usual 1e-4: studio runs are hundreds of steps, not thousands
VALIDATION_MAX_STEPS = 10  # sampling steps of the validation clip rendered at the end


@dataclass(frozen=True, kw_only=True)
class FinetuneSettings:
    name: str  # shown in the LoRA picker; also names the LoRA file (letters and digits kept)
    base_model: str  # a model name, folder, or random:<preset>
    steps: int = DEFAULT_STEPS  # optimizer steps
    rank: int = DEFAULT_RANK  # LoRA rank; alpha is set equal, so strength 1 is the trained update
    learning_rate: float = DEFAULT_LEARNING_RATE
    trigger: str = ""  # a word every caption carries, to call the LoRA up in prompts

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name.strip()) > 200:
            raise ValueError(f"`name` must be a non-empty text of at most 200 characters, got {self.name!r}")
        object.__setattr__(self, "name", self.name.strip())
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"`steps` must be a whole number from 1 to {MAX_STEPS}, got {self.steps!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or not 1 <= self.rank <= MAX_RANK:
            raise ValueError(f"`rank` must be a whole number from 1 to {MAX_RANK}, got {self.rank!r}")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 1e-6 <= lr <= 1e-1:
            raise ValueError(f"`learning_rate` must be a number from 1e-6 to 0.1, got {lr!r}")


def video_frames(duration_s: float, fps: float) -> int:
    """The longest 1 + 4k clip, up to MAX_VIDEO_FRAMES, that a video of `duration_s` gives at `fps`."""
    available = min(MAX_VIDEO_FRAMES, max(1, math.ceil(duration_s * fps - 1e-9)))
    return 1 + (available - 1) // 4 * 4


def too_short(scan: FootageScan, fps: float) -> list[Path]:
    """Videos that give no training clip at `fps` (shorter than MIN_VIDEO_FRAMES frames)."""
    return [f.path for f in scan.files if f.kind == "video" and video_frames(f.duration_s, fps) < MIN_VIDEO_FRAMES]


def plan_stages(scan: FootageScan, *, width: int, height: int, fps: float, steps: int) -> list[dict]:
    """One stage per kind of footage: one-frame clips for images, the shortest video's clip length for videos.
    ValueError when nothing is long enough to train on."""
    images = [f for f in scan.files if f.kind == "image"]
    lengths = [video_frames(f.duration_s, fps) for f in scan.files if f.kind == "video"]
    lengths = [n for n in lengths if n >= MIN_VIDEO_FRAMES]
    if not images and not lengths:
        raise ValueError(f"`files`: every video is shorter than {MIN_VIDEO_FRAMES} frames at {fps:g} fps "
                         f"({MIN_VIDEO_FRAMES / fps:.2f} s); add longer clips or images")
    if images and lengths and steps < 2:
        raise ValueError(f"`steps` must be at least 2 for images and videos together, got {steps}")
    image_steps = 0 if not images else steps if not lengths else max(1, round(steps * len(images) /
                                                                              (len(images) + len(lengths))))
    image_steps = min(image_steps, steps - 1) if lengths else image_steps
    stages = []
    if image_steps:
        stages.append({"name": "images", "steps": image_steps, "width": width, "height": height, "frames": 1})
    if lengths:
        stages.append({"name": "video", "steps": steps - image_steps, "width": width, "height": height,
                       "frames": min(lengths)})
    return stages


def recipe_table(settings: FinetuneSettings, base: ModelSource, scan: FootageScan, *, footage_folder: Path,
                 lora_name: str, output_dir: Path) -> dict:
    """The TOML-shaped recipe (training.config) of this fine-tune; `scan` is of the footage now in `footage_folder`."""
    defaults = base.defaults
    stages = plan_stages(scan, width=defaults.width, height=defaults.height, fps=defaults.fps, steps=settings.steps)
    return {
        "kind": "dit", "name": lora_name, "output_dir": str(output_dir), "seed": 0,
        "model": {"preset": base.preset, "init_from": settings.base_model},
        "data": {"source": "footage", "batch_size": min(2, len(scan.files)), "cache_latents": True,
                 "options": {"folder": str(footage_folder), "fps": float(defaults.fps)}},
        "optim": {"learning_rate": float(settings.learning_rate), "warmup_steps": min(20, settings.steps // 10),
                  "ema_decay": 0.0},
        "lora": {"rank": settings.rank, "alpha": float(settings.rank),
                 "trigger_words": [settings.trigger] if settings.trigger else []},
        "checkpoint": {"interval": settings.steps, "keep": 1},
        "validation": {"interval": settings.steps, "prompts": [scan.files[0].caption],
                       "steps": min(defaults.steps, VALIDATION_MAX_STEPS), "guidance_scale": defaults.guidance_scale},
        "stages": stages,
    }  # fmt: skip


def toml_text(table: dict) -> str:
    """TOML for a recipe table: top-level scalars and lists, then [tables] and [[arrays of tables]]; deeper tables
    are written inline."""
    lines, nested = [], []
    for key, value in table.items():
        if isinstance(value, dict):
            nested.append((f"[{key}]", [value]))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            nested.append((f"[[{key}]]", value))
        else:
            lines.append(f"{key} = {_value(value)}")
    for header, tables in nested:
        for sub in tables:
            lines += ["", header] + [f"{k} = {_value(v)}" for k, v in sub.items()]
    return "\n".join(lines) + "\n"


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)  # JSON numbers and strings (with \\uXXXX escapes) are valid TOML
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise ValueError(f"`recipe` value {value!r} cannot be written as TOML")
