"""The Create tab's form as plain values: sizes and durations offered for a model, and the conversion between the
form and a GenerationRequest (both ways, so that Remix can fill the form from a past job)."""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields

from core.models.presets import GenerationDefaults
from core.attention.adaptive_sparsity import DEFAULT_TARGET_RECALL, SparsitySettings
from core.request import GenerationRequest, LoraSpec

NO_LORA = ""


@dataclass
class FormValues:
    """One value per form field, in the order of the form's components (see CreateForm.components)."""

    prompt: str = ""
    negative_prompt: str = ""
    model: str = ""
    size: str = ""  # "WxH"
    seconds: float = 1.0  # clip length; see seconds_to_frames
    steps: int = 20
    guidance: float = 5.0
    random_seed: bool = True
    seed: float | None = None  # gr.Number gives floats
    lora: str = NO_LORA  # a LoRA file's path, or NO_LORA
    lora_strength: float = 1.0
    image: str | None = None
    last_image: str | None = None
    extend_video: str | None = None
    sampler: str = "euler"
    shift: float | None = None  # None or 0: scaled from the model's shift by clip size
    fps: float = 8.0
    attention: str = "dense"  # ATTENTION_MODES
    attention_recall: float = DEFAULT_TARGET_RECALL  # with sparse attention: share of attention mass kept
    quant: str = "none"  # the transformer's weights (core.quant modes)
    text_encoder_quant: str = "none"  # the text encoder's projections (the same modes)
    vae_tile_size: int = 0  # pixels; 0: decode whole frames

    def values(self) -> tuple:
        return astuple(self)


FORM_FIELDS = tuple(field.name for field in fields(FormValues))


def round16(value: float) -> int:
    return max(16, int(round(value / 16)) * 16)


def size_presets(defaults: GenerationDefaults) -> list[tuple[str, str]]:
    """Square, landscape (16:9-ish) and portrait sizes near the model's default pixel count, as (label, "WxH")."""
    width, height = defaults.width, defaults.height
    area = width * height
    square = round16(math.sqrt(area))
    if width > height:
        landscape = (width, height)
    elif width < height:
        landscape = (height, width)
    else:
        landscape = (round16(math.sqrt(area * 16 / 9)), round16(math.sqrt(area * 9 / 16)))
    portrait = (landscape[1], landscape[0])
    sizes = [("Square", (square, square)), ("Landscape", landscape), ("Portrait", portrait)]
    return [(f"{name} {w}×{h}", f"{w}x{h}") for name, (w, h) in sizes]


def default_size(defaults: GenerationDefaults) -> str:
    return f"{defaults.width}x{defaults.height}"


def size_choices(defaults: GenerationDefaults, current: str | None = None) -> list[tuple[str, str]]:
    """The presets, plus the model's default and `current` (e.g. a remixed job's size) when they are not among them."""
    choices = size_presets(defaults)
    for extra in (default_size(defaults), current):
        if extra and extra not in {value for _, value in choices}:
            width, height = parse_size(extra)
            choices.append((f"{width}×{height}", extra))
    return choices


def parse_size(size: str) -> tuple[int, int]:
    width, sep, height = str(size or "").partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ValueError(f"`size` must be WIDTHxHEIGHT in pixels, e.g. 128x128, got {size!r}")
    return int(width), int(height)


def seconds_to_frames(seconds: float, fps: float) -> int:
    """The nearest valid frame count (1 + 4k) for a clip `seconds` long: frame 0 at 0 s, the last at `seconds`."""
    return max(1, 4 * round(float(seconds) * float(fps) / 4) + 1)


def frames_to_seconds(frames: int, fps: float) -> float:
    return (int(frames) - 1) / float(fps)


def duration_note(seconds: float, fps: float) -> str:
    if not fps or fps <= 0:
        return "set a positive fps to see the frame count"
    frames = seconds_to_frames(seconds, fps)
    return f"**{frames} frames** at {fps:g} fps ({frames / fps:.1f} s of video)"


def request_from_form(form: FormValues) -> GenerationRequest:
    """The request the form describes; the engine validates it when it is queued."""
    width, height = parse_size(form.size)
    if form.fps is None or form.fps <= 0:
        raise ValueError(f"`fps` must be a positive number, got {form.fps!r}")
    seed = None if form.random_seed or form.seed is None else int(form.seed)
    loras = (LoraSpec(path=form.lora, strength=float(form.lora_strength)),) if form.lora else ()
    return GenerationRequest(
        prompt=form.prompt or "", negative_prompt=form.negative_prompt or "", model=form.model,
        width=width, height=height, num_frames=seconds_to_frames(form.seconds, form.fps), fps=float(form.fps),
        steps=int(form.steps), guidance_scale=float(form.guidance), sampler=form.sampler,
        shift=float(form.shift) if form.shift else None, seed=seed,
        image=form.image or None, last_image=form.last_image or None, extend_video=form.extend_video or None,
        loras=loras, attention=form.attention, sparse_attention=_sparse_settings(form), quant=form.quant or "none",
        text_encoder_quant=form.text_encoder_quant or "none", vae_tile_size=int(form.vae_tile_size) if form.vae_tile_size else None,
    )


def _sparse_settings(form: FormValues) -> SparsitySettings | None:
    if form.attention != "sparse":
        return None
    return SparsitySettings(target_recall=float(form.attention_recall))


def form_from_request(request: GenerationRequest, defaults: GenerationDefaults) -> FormValues:
    """The form filled from `request` (its unset fields from the model's `defaults`); the first LoRA only."""
    fps = request.fps or defaults.fps
    frames = request.num_frames or defaults.num_frames
    lora = request.loras[0] if request.loras else None
    return FormValues(
        prompt=request.prompt, negative_prompt=request.negative_prompt, model=request.model,
        size=f"{request.width or defaults.width}x{request.height or defaults.height}",
        seconds=frames_to_seconds(frames, fps), steps=request.steps or defaults.steps,
        guidance=defaults.guidance_scale if request.guidance_scale is None else request.guidance_scale,
        random_seed=request.seed is None, seed=request.seed,
        lora=str(lora.path) if lora else NO_LORA, lora_strength=lora.strength if lora else 1.0,
        image=request.image, last_image=request.last_image, extend_video=request.extend_video,
        sampler=request.sampler or defaults.sampler, shift=request.shift, fps=fps, attention=request.attention,
        attention_recall=_recall_of(request.sparse_attention), quant=request.quant,
        text_encoder_quant=request.text_encoder_quant, vae_tile_size=request.vae_tile_size or 0,
    )


def _recall_of(settings: SparsitySettings | None) -> float:
    """The recall a past request asked for; a fixed-sparsity request shows the default recall."""
    if settings is None or settings.target_recall is None:
        return DEFAULT_TARGET_RECALL
    return settings.target_recall
