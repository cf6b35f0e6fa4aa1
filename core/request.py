"""What a user asks for: the typed generation request, and its validation before any weights load.

One request type covers every task:
- text-to-video: `prompt` only;
- image-to-video: `image` becomes the first frame;
- first+last frame: `image` and `last_image`;
- extend a clip: `extend_video`; its last `extend_context_frames` frames open the new window;
- multi-shot: `shots`, each with its own prompt and length; `prompt` then describes the subject and
  style shared by every shot (it is put in front of each shot's caption).

Images of any size or aspect are scaled to cover the output size, keeping their aspect ratio, and
then cropped to it around the centre.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from PIL import Image

from core.attention.adaptive_sparsity import SparsitySettings
from core.lora import check_lora_file
from core.model_loader import DEFAULT_MODEL, ModelSource, resolve_model
from core.models.vae import DEFAULT_TILE_OVERLAP
from core.quant.modes import MODES as QUANT_MODES
from core.sampling import SAMPLERS, model_calls

MAX_IMAGE_SIDE = 8192  # pixels; a larger image is refused before it is decoded
MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**63 - 1
MIN_VAE_TILE = DEFAULT_TILE_OVERLAP  # pixels; tiles under 2 * DEFAULT_TILE_OVERLAP overlap by half their size
ATTENTION_MODES = ("dense", "sparse")  # sparse: adaptive block-sparse (core.attention.adaptive_sparsity)


@dataclass(frozen=True)
class ShotSpec:
    prompt: str
    num_frames: int  # 1 + 4k


@dataclass(frozen=True)
class LoraSpec:
    path: str  # a .safetensors LoRA written by Kelp's fine-tuning
    strength: float = 1.0  # 0: no effect, 1: as trained, above 1: exaggerated


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str = ""
    negative_prompt: str = ""
    model: str = DEFAULT_MODEL
    width: int | None = None  # None: the model's default
    height: int | None = None
    num_frames: int | None = None  # 1 + 4k; for `extend_video`, the new window including its context
    fps: float | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    sampler: str | None = None
    shift: float | None = None  # None: scaled from the model's shift by clip size
    seed: int | None = None  # None: a random seed, recorded in the result
    image: str | None = None
    last_image: str | None = None
    extend_video: str | None = None
    extend_context_frames: int = 5  # 1 + 4k frames of the clip's end that the new window starts from
    shots: tuple[ShotSpec, ...] = ()
    loras: tuple[LoraSpec, ...] = ()
    attention: str = "dense"  # one of ATTENTION_MODES
    sparse_attention: SparsitySettings | None = None  # with attention="sparse"; None: the default settings
    quant: str = "none"  # the transformer's weights: "none", "int8", "nf4" or "fp8" (core.quant; device permitting)
    text_encoder_quant: str = "none"  # the text encoder's projections, in the same modes
    offload: bool = False  # CUDA only: keep the models in CPU memory, each moved to the GPU while it runs
    vae_tile_size: int | None = None  # pixels: decode in overlapping tiles this size (VAE memory follows the tile,
    #                                  not the frame); None: whole frames

    @property
    def task(self) -> str:
        if self.shots:
            return "multishot"
        if self.extend_video:
            return "extend"
        if self.last_image:
            return "first_last_frame"
        return "image_to_video" if self.image else "text_to_video"

    @property
    def total_frames(self) -> int:
        """Frames the model generates: all shots together, or `num_frames`."""
        return sum(s.num_frames for s in self.shots) if self.shots else int(self.num_frames or 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenerationRequest":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown request fields {unknown}; known: {sorted(known)}")
        data = dict(data)
        data["shots"] = tuple(ShotSpec(**s) if isinstance(s, dict) else s for s in data.get("shots") or ())
        data["loras"] = tuple(LoraSpec(**s) if isinstance(s, dict) else s for s in data.get("loras") or ())
        if isinstance(data.get("sparse_attention"), dict):
            data["sparse_attention"] = sparsity_settings_from_dict(data["sparse_attention"])
        return cls(**data)


def sparsity_settings_from_dict(data: dict[str, Any]) -> SparsitySettings:
    """SparsitySettings from JSON (a stored request or an API call); its own checks name a bad value."""
    known = {f.name for f in fields(SparsitySettings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown `sparse_attention` fields {unknown}; known: {sorted(known)}")
    data = dict(data)
    if "search_steps" in data:
        data["search_steps"] = tuple(data["search_steps"])
    return SparsitySettings(**data)


@dataclass(frozen=True)
class ValidatedRequest:
    """A request with every default filled in, and the model it names resolved."""

    request: GenerationRequest
    model: ModelSource
    shot_frames: tuple[int, ...] = field(default=())  # pixel frames per shot (one shot unless multi-shot)


def _bad(name: str, value: Any, rule: str) -> ValueError:
    return ValueError(f"`{name}` {rule}, got {value!r}")


def _is_1_plus_4k(frames: Any) -> bool:
    return isinstance(frames, int) and not isinstance(frames, bool) and frames >= 1 and (frames - 1) % 4 == 0


def _check_frames(name: str, frames: Any, limit: int) -> None:
    if not _is_1_plus_4k(frames):
        lower = max(1, (int(frames) - 1) // 4 * 4 + 1) if isinstance(frames, (int, float)) and frames >= 1 else 1
        raise _bad(name, frames, f"must be 1 + 4k (the causal VAE codes frame 1 alone, then 4 at a time), "
                                 f"e.g. {lower} or {lower + 4}")
    if frames > limit:
        raise _bad(name, frames, f"must be at most {limit} for this model")


def _check_prompt(name: str, text: Any, required: bool) -> None:
    if not isinstance(text, str):
        raise _bad(name, text, "must be a string")
    if required and not text.strip():
        raise _bad(name, text, "must not be empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"`{name}` must be at most {MAX_PROMPT_CHARS} characters, got {len(text)}")


def check_image_file(name: str, path: Any) -> tuple[int, int]:
    """Check that `path` is a readable image of sane size without decoding its pixels; return (w, h)."""
    if not isinstance(path, (str, Path)) or not str(path):
        raise _bad(name, path, "must be a path to an image file")
    if not Path(path).is_file():
        raise _bad(name, str(path), "must be an existing image file")
    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
            if max(width, height) > MAX_IMAGE_SIDE:
                raise ValueError(
                    f"`{name}` is {width}x{height} pixels; images up to {MAX_IMAGE_SIDE} pixels a side are "
                    f"accepted, got {str(path)!r}"
                )
            image.verify()
    except Image.DecompressionBombError as err:
        raise ValueError(
            f"`{name}` is too large to decode safely; images up to {MAX_IMAGE_SIDE} pixels a side are accepted, "
            f"got {str(path)!r} ({err})"
        ) from err
    except (OSError, SyntaxError) as err:
        raise ValueError(f"`{name}` could not be read as an image, got {str(path)!r} ({err})") from err
    return width, height


def _check_number(name: str, value: Any, low: float, high: float, integer: bool) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not (low <= value <= high):
        kind = "an integer" if integer else "a number"
        raise _bad(name, value, f"must be {kind} from {low} to {high}")


def validate_request(request: GenerationRequest, search_dirs=None) -> ValidatedRequest:
    """Check every field, fill defaults from the model, and resolve files. Loads no weights."""
    if not isinstance(request, GenerationRequest):
        raise TypeError(f"`request` must be a GenerationRequest, got {type(request).__name__}")
    source = resolve_model(request.model, search_dirs) if search_dirs else resolve_model(request.model)
    d = source.defaults
    r = replace(
        request,
        width=d.width if request.width is None else request.width,
        height=d.height if request.height is None else request.height,
        num_frames=d.num_frames if request.num_frames is None else request.num_frames,
        fps=d.fps if request.fps is None else request.fps,
        steps=d.steps if request.steps is None else request.steps,
        guidance_scale=d.guidance_scale if request.guidance_scale is None else request.guidance_scale,
        sampler=d.sampler if request.sampler is None else request.sampler,
        shots=tuple(request.shots),
        loras=tuple(request.loras),
    )
    _check_prompt("prompt", r.prompt, required=not r.shots)
    _check_prompt("negative_prompt", r.negative_prompt, required=False)
    for side in ("width", "height"):
        value = getattr(r, side)
        _check_number(side, value, 16, 4096, integer=True)
        if value % 16:
            raise _bad(side, value, "must be a multiple of 16 (8x VAE compression, then 2x2 patches)")
    _check_number("fps", r.fps, 1, 120, integer=False)
    _check_number("steps", r.steps, 1, 500, integer=True)
    _check_number("guidance_scale", r.guidance_scale, 0, 50, integer=False)
    if r.sampler not in SAMPLERS:
        raise _bad("sampler", r.sampler, f"must be one of {list(SAMPLERS)}")
    if r.shift is not None:
        _check_number("shift", r.shift, 0.01, 100, integer=False)
    if r.seed is not None:
        _check_number("seed", r.seed, 0, MAX_SEED, integer=True)

    if r.shots:
        if r.last_image or r.extend_video:
            raise ValueError("`shots` cannot be combined with `last_image` or `extend_video`")
        transformer_cfg = _max_shots(source)
        if len(r.shots) > transformer_cfg:
            raise _bad("shots", len(r.shots), f"must hold at most {transformer_cfg} shots")
        for i, shot in enumerate(r.shots):
            if not isinstance(shot, ShotSpec):
                raise _bad(f"shots[{i}]", shot, "must be a ShotSpec(prompt, num_frames)")
            _check_prompt(f"shots[{i}].prompt", shot.prompt, required=True)
            _check_frames(f"shots[{i}].num_frames", shot.num_frames, d.max_frames)
        if r.total_frames > d.max_frames:
            raise _bad("shots", r.total_frames, f"must total at most {d.max_frames} frames")
        shot_frames = tuple(s.num_frames for s in r.shots)
    else:
        _check_frames("num_frames", r.num_frames, d.max_frames)
        shot_frames = (r.num_frames,)

    for i, lora in enumerate(r.loras):
        if not isinstance(lora, LoraSpec):
            raise _bad(f"loras[{i}]", lora, "must be a LoraSpec(path, strength)")
        check_lora_file(f"loras[{i}]", lora.path, lora.strength)
    if r.image is not None:
        check_image_file("image", r.image)
    if r.last_image is not None:
        check_image_file("last_image", r.last_image)
        if r.num_frames < 5:
            raise _bad("num_frames", r.num_frames, "must be at least 5 with `last_image`")
    if r.extend_video is not None:
        _check_extend(r)
    r = _check_attention(r)
    if r.quant not in QUANT_MODES:
        raise _bad("quant", r.quant, f"must be one of {list(QUANT_MODES)}")
    if r.text_encoder_quant not in QUANT_MODES:
        raise _bad("text_encoder_quant", r.text_encoder_quant, f"must be one of {list(QUANT_MODES)}")
    if not isinstance(r.offload, bool):
        raise _bad("offload", r.offload, "must be true or false")
    if r.vae_tile_size is not None:
        _check_number("vae_tile_size", r.vae_tile_size, MIN_VAE_TILE, 4096, integer=True)
        if r.vae_tile_size % 16:
            raise _bad("vae_tile_size", r.vae_tile_size, "must be a multiple of 16 pixels")
    return ValidatedRequest(r, source, shot_frames)


def _check_attention(r: GenerationRequest) -> GenerationRequest:
    """The attention mode, and for sparse attention its settings filled in (recorded with the result)."""
    if r.attention not in ATTENTION_MODES:
        raise _bad("attention", r.attention, f"must be one of {list(ATTENTION_MODES)}")
    if r.attention == "dense":
        if r.sparse_attention is not None:
            raise ValueError("`sparse_attention` settings need `attention='sparse'`, got attention='dense'")
        return r
    settings = r.sparse_attention if r.sparse_attention is not None else SparsitySettings()
    if not isinstance(settings, SparsitySettings):
        raise _bad("sparse_attention", settings, "must be a SparsitySettings")
    calls = model_calls(r.sampler, r.steps)  # the settings count model calls: steps, or 2 a step for Heun
    if any(step >= calls for step in settings.search_steps):
        usable = tuple(step for step in settings.search_steps if step < calls)
        if not usable:  # a short run: search once, right after the warm-up
            first = min(settings.warmup_steps, calls - 1)
            settings = replace(settings, search_steps=(first,), warmup_steps=first)
        else:
            settings = replace(settings, search_steps=usable)
    return replace(r, sparse_attention=settings)


def _max_shots(source: ModelSource) -> int:
    from core.models.presets import MODEL_PRESETS

    return MODEL_PRESETS[source.preset].transformer.max_shots


def _check_extend(r: GenerationRequest) -> None:
    from core.video_io import read_video_info

    if r.image is not None or r.last_image is not None:
        raise ValueError("`extend_video` cannot be combined with `image` or `last_image`")
    if not _is_1_plus_4k(r.extend_context_frames):
        raise _bad("extend_context_frames", r.extend_context_frames, "must be 1 + 4k")
    if r.extend_context_frames >= r.num_frames:
        raise _bad("extend_context_frames", r.extend_context_frames,
                   f"must be fewer than `num_frames` ({r.num_frames}) so that something new is made")
    if not isinstance(r.extend_video, (str, Path)) or not Path(r.extend_video).is_file():
        raise _bad("extend_video", r.extend_video, "must be an existing video file")
    try:
        info = read_video_info(r.extend_video)
    except (ValueError, OSError) as err:
        raise ValueError(f"`extend_video` could not be read as a video, got {str(r.extend_video)!r} ({err})") from err
    if info.num_frames < r.extend_context_frames:
        raise _bad("extend_video", str(r.extend_video),
                   f"must have at least `extend_context_frames` ({r.extend_context_frames}) frames, "
                   f"it has {info.num_frames}")
