"""Training recipes: a TOML file parsed into frozen, typed, keyword-only settings, validated before anything loads.

A recipe names the model, the data, the optimiser and a curriculum of stages (each with its own size, frame
count and task mix). `load_recipe(path)` reads one; errors name the field and its value, e.g.
"`stages[1].frames` must be 1 + 4k ..., got 10".
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.models.presets import MODEL_PRESETS
from core.models.vae import VAE_PRESETS

TASKS = ("t2v", "i2v", "first_last", "extend", "multishot")
KINDS = ("dit", "vae")
MIXED_PRECISION = ("no", "bf16", "fp16")
LR_SCHEDULES = ("constant", "cosine", "wsd")
# Every attention and MLP projection of KelpVideoTransformer (core/models/video_dit.py), video and text streams.
DEFAULT_LORA_TARGETS = (
    "to_q", "to_k", "to_v", "to_out", "to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
    "ff_context.net.2",
)  # fmt: skip


class RecipeError(ValueError):
    """A bad recipe value; `field` is its dotted path, which grows as the error leaves nested settings."""

    def __init__(self, field: str, value: Any, rule: str):
        self.field, self.value, self.rule = field, value, rule
        super().__init__(f"`{field}` {rule}, got {value!r}")


def _check(ok: bool, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise RecipeError(name, value, rule)


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_1_plus_4k(frames: Any) -> bool:
    return _is_int(frames, 1) and (frames - 1) % 4 == 0


@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    preset: str = "tiny"  # dit: a MODEL_PRESETS key; vae: a VAE_PRESETS key
    init_from: str | None = None  # model name, folder or "random:<preset>[:seed]" to start from; None: fresh weights
    vae_from: str | None = None  # dit: VAE folder or model folder to encode with; None: init_from's VAE, else random
    gradient_checkpointing: bool = False  # recompute block activations in backward: less memory, about 30% slower
    mixed_precision: str = "no"  # "no", "bf16" or "fp16" (CUDA only); trainable weights stay float32
    # vae: train init_from's decoder alone; its encoder and latent statistics stay as they are, so the latents (and
    # a DiT trained on them) do not change while reconstructions get better.
    decoder_only: bool = False
    # vae: train init_from's encoder alone, its decoder fixed: the encoder learns latents that this decoder
    # reconstructs better, in the decoder's own latent space (latent statistics kept, so a DiT's latents still decode).
    encoder_only: bool = False
    # vae with decoder_only: first widen init_from's decoder to this base width (training.vae_widen: it decodes
    # exactly as before, then trains with the extra channels); None: the decoder's own width
    decoder_base_dim: int | None = None
    # dit: a folder holding the preset's text encoder (e.g. one packed by training.pack_text_encoder for a machine
    # without the encoder's package); None: the installed package's copy
    text_encoder_path: str | None = None

    def __post_init__(self):
        _check(self.mixed_precision in MIXED_PRECISION, "mixed_precision", self.mixed_precision,
               f"must be one of {list(MIXED_PRECISION)}")
        _check(self.decoder_base_dim is None or _is_int(self.decoder_base_dim, 4), "decoder_base_dim",
               self.decoder_base_dim, "must be an int >= 4 or absent")
        _check(self.text_encoder_path is None or (isinstance(self.text_encoder_path, str) and self.text_encoder_path),
               "text_encoder_path", self.text_encoder_path, "must be a folder path")


@dataclass(frozen=True, kw_only=True)
class DataSettings:
    source: str = "synthetic"  # a key of training.datasets.DATASETS
    options: dict = field(default_factory=dict)  # extra keyword arguments for the dataset factory
    batch_size: int = 4  # clips per process per micro-batch (a stage may override it)
    caption_dropout: float = 0.1  # chance a caption is replaced by "", so classifier-free guidance works
    cache_latents: bool = False  # keep each item's VAE latents in memory: only for deterministic datasets
    # With cache_latents: at each stage's start, read every item in this many worker processes and cache its
    # latents then (the values its first use would cache), instead of one by one as training first draws them.
    # 0: as drawn. For a GPU fed by many cores; on a small CPU the encoding, not the reading, is the cost.
    prefetch_workers: int = 0

    def __post_init__(self):
        _check(isinstance(self.source, str) and bool(self.source), "source", self.source, "must be a dataset name")
        _check(_is_int(self.batch_size, 1), "batch_size", self.batch_size, "must be a positive int")
        _check(0 <= self.caption_dropout < 1, "caption_dropout", self.caption_dropout, "must be in [0, 1)")
        _check(_is_int(self.prefetch_workers), "prefetch_workers", self.prefetch_workers, "must be an int >= 0")
        _check(not self.prefetch_workers or self.cache_latents, "prefetch_workers", self.prefetch_workers,
               "needs `data.cache_latents = true` (prefetched latents are kept in that cache)")


@dataclass(frozen=True, kw_only=True)
class OptimSettings:
    learning_rate: float = 1e-4  # peak AdamW learning rate
    # After warm-up: "constant", "cosine" (to 0 at the last step) or "wsd" (warm-up, stable, decay: constant, then
    # a cosine to 0 over the last `decay_steps`; a run can then be extended by adding steps before the decay).
    lr_schedule: str = "constant"
    warmup_steps: int = 100  # linear warm-up from 0, in optimizer steps
    decay_steps: int = 0  # "wsd" only: steps of the final decay
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    adam_betas: tuple[float, float] = (0.9, 0.999)  # AdamW moment decays
    adam_eps: float = 1e-8  # AdamW epsilon
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    ema_decay: float = 0.999  # EMA of the trained weights (diffusers EMAModel, warmed up); 0 turns EMA off

    def __post_init__(self):
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be positive")
        _check(self.lr_schedule in LR_SCHEDULES, "lr_schedule", self.lr_schedule,
               f"must be one of {list(LR_SCHEDULES)}")
        _check(_is_int(self.warmup_steps), "warmup_steps", self.warmup_steps, "must be an int >= 0")
        _check(_is_int(self.decay_steps), "decay_steps", self.decay_steps, "must be an int >= 0")
        _check(self.lr_schedule == "wsd" or self.decay_steps == 0, "decay_steps", self.decay_steps,
               f"applies to lr_schedule 'wsd' only, not {self.lr_schedule!r}")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        _check(all(0 <= b < 1 for b in self.adam_betas), "adam_betas", self.adam_betas, "must be in [0, 1)")
        _check(self.adam_eps > 0, "adam_eps", self.adam_eps, "must be positive")
        _check(self.grad_clip >= 0, "grad_clip", self.grad_clip, "must be >= 0")
        _check(_is_int(self.gradient_accumulation_steps, 1), "gradient_accumulation_steps",
               self.gradient_accumulation_steps, "must be a positive int")
        _check(0 <= self.ema_decay < 1, "ema_decay", self.ema_decay, "must be in [0, 1)")


@dataclass(frozen=True, kw_only=True)
class FlowSettings:
    logit_mean: float = 0.0  # noise levels: sigma = sigmoid(N(logit_mean, logit_std)), SD3's logit-normal
    logit_std: float = 1.0  # spread of the logit-normal; larger puts more weight near sigma 0 and 1
    shift: float | None = None  # then sigma is shifted as the sampler does; None: the engine's shift at stage size
    # Loss per latent position 1 + foreground_weight where an item's "foreground" marks its subject (the toy world
    # marks its objects), so a small object's shape counts against a large background; 0: every position alike.
    foreground_weight: float = 0.0
    # The weight applies to samples at noise levels sigma <= this only. Above it the noisy clip does not yet show
    # where the subject is, and a weight that depends on the answer pulls the prediction towards a subject at every
    # place it could be (objects drawn twice); 1: at every noise level.
    foreground_max_sigma: float = 1.0

    def __post_init__(self):
        _check(self.logit_std > 0, "logit_std", self.logit_std, "must be positive")
        _check(self.shift is None or self.shift > 0, "shift", self.shift, "must be positive")
        _check(self.foreground_weight >= 0, "foreground_weight", self.foreground_weight, "must be >= 0")
        _check(0 < self.foreground_max_sigma <= 1, "foreground_max_sigma", self.foreground_max_sigma,
               "must be in (0, 1]")


@dataclass(frozen=True, kw_only=True)
class CheckpointSettings:
    interval: int = 500  # optimizer steps between checkpoints; one is always written at the end
    keep: int = 3  # newest checkpoints kept; older ones are deleted

    def __post_init__(self):
        _check(_is_int(self.interval, 1), "interval", self.interval, "must be a positive int")
        _check(_is_int(self.keep, 1), "keep", self.keep, "must be a positive int")


@dataclass(frozen=True, kw_only=True)
class ValidationSettings:
    interval: int = 0  # optimizer steps between validation clips; 0 turns validation off
    prompts: tuple[str, ...] = ()  # one clip per prompt, at the current stage's size
    steps: int = 10  # sampling steps per clip
    guidance_scale: float = 5.0  # classifier-free guidance of the clips
    seed: int = 0  # the same noise at every validation, so clips compare across steps

    def __post_init__(self):
        _check(_is_int(self.interval), "interval", self.interval, "must be an int >= 0")
        _check(not self.interval or bool(self.prompts), "prompts", self.prompts, "must not be empty when interval > 0")
        _check(all(isinstance(p, str) and p.strip() for p in self.prompts), "prompts", self.prompts,
               "must be non-empty strings")
        _check(_is_int(self.steps, 1), "steps", self.steps, "must be a positive int")


@dataclass(frozen=True, kw_only=True)
class TaskRatios:
    """How often each conditioning task is drawn; only the ratios between them matter."""

    t2v: float = 1.0  # text only
    i2v: float = 0.0  # latent frame 0 given
    first_last: float = 0.0  # first and last latent frames given
    extend: float = 0.0  # the first k latent frames given, k drawn from 1 .. T-1
    multishot: float = 0.0  # a sample of several shots with a caption each; skipped if the data has none

    def __post_init__(self):
        for name in TASKS:
            _check(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0")
        _check(sum(self.as_dict().values()) > 0, "t2v", self.t2v, "and the other ratios must not all be 0")

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in TASKS}


@dataclass(frozen=True, kw_only=True)
class Stage:
    name: str = ""  # shown in logs
    steps: int  # optimizer steps in this stage
    width: int  # pixels; multiple of 16
    height: int  # pixels; multiple of 16
    frames: int  # 1 + 4k; 1 trains on images
    batch_size: int | None = None  # None: data.batch_size
    tasks: TaskRatios = TaskRatios()  # dit: how often each conditioning task is drawn; default T2V only

    def __post_init__(self):
        _check(_is_int(self.steps, 1), "steps", self.steps, "must be a positive int")
        for side in ("width", "height"):
            value = getattr(self, side)
            _check(_is_int(value, 16) and value % 16 == 0, side, value, "must be a positive multiple of 16")
        _check(_is_1_plus_4k(self.frames), "frames", self.frames, "must be 1 + 4k (1, 5, 9, 13, 17, ...)")
        _check(self.batch_size is None or _is_int(self.batch_size, 1), "batch_size", self.batch_size,
               "must be a positive int")
        latent_frames = 1 + (self.frames - 1) // 4
        # A task must leave a frame to predict: I2V and extension need 2 latent frames, first+last 3.
        for task, needed in (("i2v", 2), ("extend", 2), ("multishot", 2), ("first_last", 3)):
            ratio = getattr(self.tasks, task)
            _check(ratio == 0 or latent_frames >= needed, f"tasks.{task}", ratio,
                   f"must be 0 when frames = {self.frames} (needs {1 + 4 * (needed - 1)} frames or more)")


@dataclass(frozen=True, kw_only=True)
class LoraSettings:
    rank: int = 16  # LoRA rank r
    alpha: float = 16.0  # LoRA alpha; the update is scaled by alpha / rank
    dropout: float = 0.0  # dropout on the LoRA branch input
    targets: tuple[str, ...] = DEFAULT_LORA_TARGETS  # module names (peft target_modules), matched by suffix
    trigger_words: tuple[str, ...] = ()  # words the captions use to call up what the LoRA learned; recorded only

    def __post_init__(self):
        _check(_is_int(self.rank, 1), "rank", self.rank, "must be a positive int")
        _check(self.alpha > 0, "alpha", self.alpha, "must be positive")
        _check(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")
        _check(bool(self.targets), "targets", self.targets, "must name at least one module")


@dataclass(frozen=True, kw_only=True)
class VAELossSettings:
    l1: float = 1.0  # weight of the pixel L1 reconstruction loss
    l2: float = 0.0  # weight of the pixel mean squared error: larger pulls on large errors (what PSNR measures)
    kl: float = 1e-6  # weight of the KL to N(0, 1), per latent element (keeps the posterior from collapsing)
    ssim: float = 0.2  # weight of 1 - SSIM at full and half size: a structural stand-in for LPIPS (no VGG here)
    edge: float = 0.1  # weight of the L1 between image gradients (x, y and, for video, time)
    adversarial: float = 0.0  # weight of the hinge GAN loss from a small 3D PatchGAN; 0 turns it off
    adversarial_start: int = 0  # optimizer step from which the discriminator trains and the GAN loss applies
    disc_learning_rate: float | None = None  # None: optim.learning_rate
    latent_stats_samples: int = 64  # training items encoded after training to set latents_mean / latents_std
    # weight of the mean squared distance, in units of init_from's latents_std, between the encoder's latent means
    # and those of init_from's (frozen) encoder: the encoder learns while its latents stay close to the ones a
    # transformer was trained on; the export keeps init_from's latent statistics. 0 turns it off.
    latent_anchor: float = 0.0

    def __post_init__(self):
        for name in ("l1", "l2", "kl", "ssim", "edge", "adversarial", "latent_anchor"):
            _check(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0")
        _check(_is_int(self.adversarial_start), "adversarial_start", self.adversarial_start, "must be an int >= 0")
        _check(self.disc_learning_rate is None or self.disc_learning_rate > 0, "disc_learning_rate",
               self.disc_learning_rate, "must be positive")
        _check(_is_int(self.latent_stats_samples, 1), "latent_stats_samples", self.latent_stats_samples,
               "must be a positive int")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    kind: str = "dit"  # "dit" trains the video transformer (or a LoRA on it), "vae" the video autoencoder
    name: str  # recorded in exports
    output_dir: str  # checkpoints, metrics.csv, validation clips and the exported model go here
    seed: int = 0  # seeds weights, data order, noise and timesteps
    model: ModelSettings = ModelSettings()  # [model]: which weights, precision, checkpointing
    data: DataSettings = DataSettings()  # [data]: dataset and batch
    optim: OptimSettings = OptimSettings()  # [optim]: AdamW, LR schedule, clipping, accumulation, EMA
    flow: FlowSettings = FlowSettings()  # [flow]: dit noise-level sampling
    checkpoint: CheckpointSettings = CheckpointSettings()  # [checkpoint]: how often, how many kept
    validation: ValidationSettings = ValidationSettings()  # [validation]: dit clips through the engine
    stages: tuple[Stage, ...]  # the curriculum, trained in order
    lora: LoraSettings | None = None  # dit only: train a LoRA on `model.init_from` instead of all weights
    vae_loss: VAELossSettings = VAELossSettings()  # vae only

    def __post_init__(self):
        _check(self.kind in KINDS, "kind", self.kind, f"must be one of {list(KINDS)}")
        _check(isinstance(self.name, str) and bool(self.name), "name", self.name, "must be a non-empty string")
        _check(isinstance(self.output_dir, str) and bool(self.output_dir), "output_dir", self.output_dir,
               "must be a non-empty path")
        _check(_is_int(self.seed), "seed", self.seed, "must be an int >= 0")
        _check(bool(self.stages), "stages", self.stages, "must hold at least one stage")
        presets = MODEL_PRESETS if self.kind == "dit" else VAE_PRESETS
        _check(self.model.preset in presets, "model.preset", self.model.preset,
               f"must be one of {sorted(presets)} for kind {self.kind!r}")
        if self.kind == "vae":
            _check(self.lora is None, "lora", "[lora]", "is for kind 'dit' only")
            if self.model.decoder_only:
                _check(self.model.init_from is not None, "model.init_from", None,
                       "must name the VAE whose decoder model.decoder_only trains")
            if self.model.encoder_only:
                _check(self.model.init_from is not None, "model.init_from", None,
                       "must name the VAE whose encoder model.encoder_only trains")
                _check(not self.model.decoder_only, "model.encoder_only", True,
                       "and model.decoder_only together would train nothing")
            _check(self.model.decoder_base_dim is None or self.model.decoder_only, "model.decoder_base_dim",
                   self.model.decoder_base_dim, "widens init_from's decoder: it needs model.decoder_only = true")
            anchor = self.vae_loss.latent_anchor
            _check(anchor == 0 or self.model.init_from is not None, "vae_loss.latent_anchor", anchor,
                   "keeps init_from's latents: it needs model.init_from")
            _check(anchor == 0 or not self.model.decoder_only, "vae_loss.latent_anchor", anchor,
                   "trains the encoder: model.decoder_only already keeps the latents exactly")
        else:
            _check(not self.model.decoder_only, "model.decoder_only", True, "is for kind 'vae' only")
            _check(not self.model.encoder_only, "model.encoder_only", True, "is for kind 'vae' only")
            _check(self.model.decoder_base_dim is None, "model.decoder_base_dim", self.model.decoder_base_dim,
                   "is for kind 'vae' only")
        if self.lora is not None:
            _check(self.model.init_from is not None, "model.init_from", None,
                   "must name the base model when training a LoRA")
        for i, stage in enumerate(self.stages):
            if self.kind == "vae":
                _check(stage.tasks == TaskRatios(), f"stages[{i}].tasks", stage.tasks.as_dict(),
                       "is for kind 'dit' only")

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    def stage_at(self, step: int) -> tuple[int, Stage, int]:
        """(index, stage, first step of that stage) of the stage that optimizer step `step` (0-based) belongs to."""
        start = 0
        for index, stage in enumerate(self.stages):
            if step < start + stage.steps:
                return index, stage, start
            start += stage.steps
        raise ValueError(f"`step` must be below {self.total_steps}, got {step}")

    def batch_size(self, stage: Stage) -> int:
        return stage.batch_size if stage.batch_size is not None else self.data.batch_size


def load_recipe(path: str | Path, **overrides: Any) -> Recipe:
    """Read and validate a recipe; `overrides` replace top-level fields (e.g. output_dir)."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"`recipe` could not be read, got {str(path)!r} ({err})") from err
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"`recipe` {str(path)!r} is not valid TOML: {err}") from err
    table.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return parse_recipe(table)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def parse_recipe(table: dict) -> Recipe:
    """A Recipe from a TOML-shaped dict."""
    return _build(Recipe, table, "")


def _build(cls, table: Any, where: str):
    if not isinstance(table, dict):
        raise RecipeError(where.rstrip(".") or "recipe", table, "must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise RecipeError(f"{where}{unknown[0]}", table[unknown[0]], f"is not a setting; known: {sorted(known)}")
    values = {name: _convert(hints[name], value, f"{where}{name}") for name, value in table.items()}
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in values]
    if missing:
        raise RecipeError(f"{where}{missing[0]}", None, "is required")
    try:
        return cls(**values)
    except RecipeError as err:
        raise RecipeError(f"{where}{err.field}", err.value, err.rule) from None


def _convert(hint, value: Any, where: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):  # X | None: TOML has no null, so None only by omission
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{where}.")
    if origin is tuple:
        if not isinstance(value, list):
            raise RecipeError(where, value, "must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            if dataclasses.is_dataclass(args[0]):
                return tuple(_build(args[0], item, f"{where}[{i}].") for i, item in enumerate(value))
            return tuple(_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise RecipeError(where, value, f"must have {len(args)} entries")
        return tuple(_convert(a, item, f"{where}[{i}]") for i, (a, item) in enumerate(zip(args, value)))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(where, value, "must be a number")
        return float(value)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise RecipeError(where, value, "must be an integer")
    if hint in (str, bool, dict) and not isinstance(value, hint):
        raise RecipeError(where, value, f"must be a {hint.__name__ if hint is not dict else 'table'}")
    return value
