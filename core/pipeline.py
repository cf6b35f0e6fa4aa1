"""The one engine API: `Engine.generate(request, on_progress, cancel)` turns a request into a video file.

The CLI, the UI, training-time validation and the benchmarks all call it. An Engine owns the loaded
models (built at start-up by whoever serves requests); `generate()` is a shortcut with a fresh one.
"""

from __future__ import annotations

import platform
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.attention.per_generation import attention_report, generation_attention
from core.cancellation import check_cancel
from core.conditioning import Condition, build_condition, video_tensor_to_frames
from core.lora import load_lora, unload_loras
from core.memory import enable_model_cpu_offload, release_memory, vae_dtype_for
from core.quant.apply import quantize_text_encoder, weight_bytes
from core.quant.base import QuantizationInfo
from core.quant.modes import check_mode
from core.model_loader import BUNDLED_MODELS_DIR, LoadedModel, ModelSource, file_sha256, load_model
from core.models.vae import iter_decode
from core.request import GenerationRequest, LoraSpec, ValidatedRequest, validate_request
from core.sampling import classifier_free_guidance, model_calls, resolution_shift, sample_flow
from core.text.encoder import TextEncoder, build_text_encoder
from core.video_io import write_gif, write_sidecar, write_video_stream

KELP_VERSION = "0.1.0"


@dataclass(frozen=True)
class Progress:
    stage: str  # "loading", "encoding", "sampling", "decoding", "writing"
    step: int  # model calls done (sampling) or latent frames decoded (decoding)
    total: int
    elapsed_s: float  # since the request started
    eta_s: float | None  # seconds left in this stage, once it can be estimated


@dataclass
class SampledVideo:
    """A denoised request, ready to decode."""

    validated: ValidatedRequest
    model: LoadedModel
    seed: int
    shift: float
    latents: torch.Tensor  # (1, C, T, h, w) clean latents of all shots, given frames included
    shot_latent_frames: list[int]
    condition: Condition
    timings: dict
    started: float  # perf_counter() when the request arrived
    attention: dict = field(default_factory=lambda: {"mode": "dense"})  # what attention did (attention_report)
    text_encoder_quantization: QuantizationInfo | None = None


@dataclass
class GenerationResult:
    video_path: Path
    metadata_path: Path
    seed: int
    metadata: dict
    gif_path: Path | None = None
    timings: dict = field(default_factory=dict)


class Engine:
    """Holds models between requests. Not thread-safe: one generation at a time per Engine."""

    def __init__(
        self,
        device: str = "auto",
        output_dir: str | Path = "outputs",
        model_dirs: Sequence[str | Path] = (BUNDLED_MODELS_DIR,),
    ):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda") and not device.startswith(("cuda:", "cpu:")):
            raise ValueError(f"`device` must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"`device` {device!r} was asked for, but this machine has no CUDA GPU")
        self.device = torch.device(device)
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32  # exact and deterministic on CPU
        self.vae_dtype = vae_dtype_for(self.device)
        self.output_dir = Path(output_dir)
        self.model_dirs = tuple(Path(d) for d in model_dirs)
        self._models: dict[str, LoadedModel] = {}
        self._text_encoders: dict[str, TextEncoder] = {}

    def validate(self, request: GenerationRequest) -> ValidatedRequest:
        """The request checked, and checked against this engine's device (e.g. NF4 needs CUDA)."""
        validated = validate_request(request, self.model_dirs)
        check_mode(validated.request.quant, self.device)
        check_mode(validated.request.text_encoder_quant, self.device)
        if validated.request.offload and self.device.type != "cuda":
            raise ValueError(f"`offload` needs a CUDA GPU to offload from; this device is {self.device}")
        return validated

    def model(self, source: ModelSource, quant: str = "none", offload: bool = False) -> LoadedModel:
        key = (str(source.folder or source.name), quant, offload)
        if key not in self._models:
            self._models.clear()  # keep one model resident: video models are large
            release_memory()  # give the previous model's memory back before the next one loads
            if offload:  # loaded into CPU memory; each part moves to the GPU while it runs
                loaded = load_model(source, "cpu", self.dtype, quant=quant, vae_dtype=self.vae_dtype)
                loaded.offload = enable_model_cpu_offload([loaded.transformer, loaded.vae], self.device)
            else:
                loaded = load_model(source, self.device, self.dtype, quant=quant, vae_dtype=self.vae_dtype)
            self._models[key] = loaded
        return self._models[key]

    def apply_loras(self, loaded: LoadedModel, loras: tuple[LoraSpec, ...]) -> None:
        """Make the transformer carry exactly the request's LoRAs (reloaded only when they change)."""
        wanted = tuple((str(Path(l.path).resolve()), Path(l.path).stat().st_mtime_ns, l.strength) for l in loras)
        if loaded.applied_loras == wanted:
            return
        unload_loras(loaded.transformer)
        loaded.applied_loras = ()
        for index, lora in enumerate(loras):
            load_lora(loaded.transformer, lora.path, lora.strength, adapter_name=f"lora_{index}")
        loaded.applied_loras = wanted

    def text_encoder(self, name: str, quant: str = "none") -> TextEncoder:
        """The text encoder `name`, its projections quantized to `quant`; one variant of each is kept loaded."""
        encoder = self._text_encoders.get(name)
        if encoder is None or (encoder.quantization.mode if encoder.quantization else "none") != quant:
            self._text_encoders.pop(name, None)
            release_memory()
            encoder = build_text_encoder(name, device=str(self.device))
            encoder.encode([""])  # load now, so that loading time is reported as loading, not as encoding
            if quant != "none":
                encoder.quantization = quantize_text_encoder(encoder.loaded_model(), quant, self.device)
            self._text_encoders[name] = encoder
        return encoder

    def use_text_encoder(self, encoder: TextEncoder) -> None:
        """Serve unquantized requests for `encoder.name` with this already-built encoder (for example embeddings
        computed on another machine, as the GPU benchmarks do); a quantized request builds its own as usual."""
        if getattr(encoder, "quantization", None) is not None:
            raise ValueError(f"`encoder` must be unquantized, got one quantized to {encoder.quantization.mode!r}")
        self._text_encoders[encoder.name] = encoder

    def sample(
        self,
        request: GenerationRequest | ValidatedRequest,
        on_progress: Callable[[Progress], None] | None = None,
        cancel=None,
    ) -> SampledVideo:
        """Validate (if needed) and denoise: the clean latent of the whole request, not yet decoded."""
        started = time.perf_counter()
        validated = request if isinstance(request, ValidatedRequest) else self.validate(request)  # before any weights
        r = validated.request
        seed = r.seed if r.seed is not None else random.SystemRandom().randrange(2**31)
        report = _Reporter(on_progress, started)
        timings: dict[str, float] = {}

        report("loading", 0, 1)
        loaded = self.model(validated.model, r.quant, r.offload)
        self.apply_loras(loaded, r.loras)
        encoder = self.text_encoder(validated.model.text_encoder, r.text_encoder_quant)
        timings["load_s"] = time.perf_counter() - started

        check_cancel(cancel)
        report("encoding", 0, 1)
        mark = time.perf_counter()
        shot_latents = [1 + (f - 1) // 4 for f in validated.shot_frames]
        latent_shape = (loaded.vae.config.z_dim, sum(shot_latents), r.height // 8, r.width // 8)
        condition = build_condition(validated, loaded.vae, latent_shape)
        guided = r.guidance_scale != 1.0
        text, text_mask, text_lengths = _encode_captions(encoder, r, guided, self.device)
        timings["encode_s"] = time.perf_counter() - mark

        patch_h, patch_w = loaded.transformer.config.patch_size
        video_tokens = latent_shape[1] * (latent_shape[2] // patch_h) * (latent_shape[3] // patch_w)
        d = validated.model.defaults
        shift = r.shift if r.shift is not None else resolution_shift(video_tokens, d.shift, d.shift_base_tokens)
        noise = torch.randn((1, *latent_shape), generator=torch.Generator().manual_seed(seed))  # CPU: same on every device
        noise = noise.to(self.device, self.dtype)
        batch = 2 if guided else 1
        cond_latents = condition.latents.to(self.dtype).expand(batch, -1, -1, -1, -1)
        cond_mask = condition.mask.to(self.dtype).expand(batch, -1, -1, -1, -1)

        def predict_velocity(latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                velocity = loaded.transformer(
                    latents.expand(batch, -1, -1, -1, -1),
                    timestep.expand(batch).to(self.dtype),
                    text,
                    text_mask,
                    condition_latents=cond_latents,
                    condition_mask=cond_mask,
                    shot_latent_frames=shot_latents,
                    text_lengths=text_lengths,
                ).sample
            return classifier_free_guidance(velocity, r.guidance_scale) if guided else velocity

        mark = time.perf_counter()
        report("sampling", 0, model_calls(r.sampler, r.steps))
        with generation_attention(loaded.transformer, r.attention, r.sparse_attention) as sparsity:

            def predict_at_step(latents: torch.Tensor, timestep: torch.Tensor, call: int) -> torch.Tensor:
                if sparsity is not None:
                    sparsity.set_step(call)
                return predict_velocity(latents, timestep)

            latents = sample_flow(
                predict_at_step, noise, r.sampler, r.steps, shift,
                on_step=lambda done, total: report("sampling", done, total, since=mark), cancel=cancel,
            )
        # The given frames are known exactly: keep them rather than their re-synthesis.
        given = condition.mask.bool().expand_as(latents)
        latents = torch.where(given, condition.latents.to(latents.dtype), latents).float()
        timings["sampling_s"] = time.perf_counter() - mark
        attention = attention_report(r.attention, sparsity, timings["sampling_s"])
        return SampledVideo(validated, loaded, seed, shift, latents, shot_latents, condition, timings, started, attention,
                            encoder.quantization)

    def iter_frames(
        self, sampled: SampledVideo, on_progress: Callable[[Progress], None] | None = None, cancel=None
    ) -> Iterator[np.ndarray]:
        """Decode shot by shot, a latent frame at a time: uint8 chunks (f, H, W, 3) of the final video."""
        r, condition = sampled.validated.request, sampled.condition
        report, mark = _Reporter(on_progress, sampled.started), time.perf_counter()
        if condition.prefix_frames is not None:
            yield condition.prefix_frames  # extension: the original clip, then the window after its context
        skip = r.extend_context_frames if condition.prefix_frames is not None else 0
        done, total = 0, sampled.latents.shape[2]
        for shot_latent in sampled.latents.split(sampled.shot_latent_frames, dim=2):  # each shot: its own causal clip
            decoded = iter_decode(sampled.model.vae, shot_latent, cancel=cancel, tile_size=r.vae_tile_size)
            for pixels in decoded:  # (1, 3, f, H, W)
                chunk = video_tensor_to_frames(pixels[0])
                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
                done += 1
                report("decoding", done, total, since=mark)
                if len(chunk):
                    yield chunk

    def generate(
        self,
        request: GenerationRequest,
        output_path: str | Path | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        cancel=None,
        gif: bool = False,
    ) -> GenerationResult:
        """Validate, sample, decode and write `request`; `cancel` (has is_set()) acts within one model call.

        The mp4 (with its metadata) appears only once complete; the JSON sidecar is written after it.
        """
        sampled = self.sample(request, on_progress, cancel)
        r, timings = sampled.validated.request, sampled.timings
        mark = time.perf_counter()
        output_path = Path(output_path) if output_path is not None else self._default_output_path(r.task, sampled.seed)
        metadata = self._metadata(sampled)
        kept: list[np.ndarray] = []

        def keep_for_gif(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            for chunk in chunks:
                if gif:
                    kept.append(chunk)
                yield chunk

        write_video_stream(keep_for_gif(self.iter_frames(sampled, on_progress, cancel)), output_path, r.fps, metadata)
        timings["decode_write_s"] = time.perf_counter() - mark
        timings["total_s"] = time.perf_counter() - sampled.started
        metadata["timings"] = {k: round(v, 4) for k, v in timings.items()}
        metadata_path = write_sidecar(output_path, metadata)
        gif_path = write_gif(np.concatenate(kept), output_path.with_suffix(".gif"), r.fps) if gif else None
        return GenerationResult(output_path, metadata_path, sampled.seed, metadata, gif_path, timings)

    def _default_output_path(self, task: str, seed: int) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.output_dir / f"{stamp}-{task}-{seed}.mp4"
        counter = 1
        while path.exists():
            path = self.output_dir / f"{stamp}-{task}-{seed}-{counter}.mp4"
            counter += 1
        return path

    def _metadata(self, sampled: SampledVideo) -> dict:
        validated, seed = sampled.validated, sampled.seed
        r = validated.request
        return {
            "kelp_version": KELP_VERSION,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "task": r.task,
            "request": {**r.to_dict(), "seed": seed},
            "seed": seed,
            "model": {
                "name": validated.model.name,
                "preset": validated.model.preset,
                "weights_sha256": sampled.model.weights_hash,
                "text_encoder": validated.model.text_encoder,
            },
            "loras": [
                {"path": str(l.path), "strength": l.strength, "sha256": file_sha256(Path(l.path))} for l in r.loras
            ],
            "settings": {
                "shift": sampled.shift,
                "model_calls": model_calls(r.sampler, r.steps),
                "dtype": str(self.dtype),
                "vae_dtype": str(self.vae_dtype),
            },
            "attention": sampled.attention,
            "quantization": _quantization_report(sampled.model, r, sampled.text_encoder_quantization),
            "output": {"width": r.width, "height": r.height, "fps": r.fps, "generated_frames": r.total_frames},
            "device": {"type": self.device.type, "torch": torch.__version__, "python": platform.python_version()},
            "timings": {k: round(v, 4) for k, v in sampled.timings.items()},
        }


def _quantization_report(loaded: LoadedModel, r: GenerationRequest, text_encoder: QuantizationInfo | None) -> dict:
    info = loaded.quantization
    report = {"mode": info.mode if info is not None else "none", "offload": r.offload,
              "transformer_weight_bytes": weight_bytes(loaded.transformer)}
    if info is not None:
        report |= {"backend": info.backend, "rule": info.rule, "quantized_layers": len(info.modules)}
    report["text_encoder"] = {"mode": "none"} if text_encoder is None else {
        "mode": text_encoder.mode, "backend": text_encoder.backend, "quantized_layers": len(text_encoder.modules)}
    return report


class _Reporter:
    """Turns (stage, step, total) into Progress with an ETA from the mean time per step so far."""

    def __init__(self, callback, started: float):
        self.callback, self.started = callback, started

    def __call__(self, stage: str, step: int, total: int, since: float | None = None) -> None:
        if self.callback is None:
            return
        now = time.perf_counter()
        eta = (now - since) / step * (total - step) if since is not None and step > 0 else None
        self.callback(Progress(stage, step, total, now - self.started, eta))


def _encode_captions(encoder: TextEncoder, r: GenerationRequest, guided: bool, device):
    """Each shot's caption (subject + shot prompt), then the negative prompt for each shot when guided.

    Returns text (B, shots * L, D), mask (B, shots * L), and [L] * shots.
    """
    if r.shots:
        subject = r.prompt.strip()
        captions = [f"{subject}. {s.prompt.strip()}" if subject else s.prompt.strip() for s in r.shots]
    else:
        captions = [r.prompt.strip()]
    prompts = captions + ([r.negative_prompt] * len(captions) if guided else [])
    encoded = encoder.encode(prompts)  # (B * shots, L, D), every caption padded to the longest
    embeddings, mask = encoded.embeddings, encoded.mask
    if r.shots:
        # Pad to a fixed length, so that editing one shot's caption leaves the others' maths untouched.
        pad = encoder.max_length - embeddings.shape[1]
        embeddings, mask = F.pad(embeddings, (0, 0, 0, pad)), F.pad(mask, (0, pad), value=False)
    shots, length = len(captions), embeddings.shape[1]
    text = embeddings.reshape(-1, shots * length, embeddings.shape[-1])  # (B, shots * L, D)
    mask = mask.reshape(-1, shots * length)
    return text.to(device), mask.to(device), [length] * shots


def generate(
    request: GenerationRequest,
    output_path: str | Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    cancel=None,
    engine: Engine | None = None,
) -> GenerationResult:
    """Generate with `engine`, or with a fresh CPU/GPU Engine that is dropped afterwards."""
    return (engine or Engine()).generate(request, output_path, on_progress, cancel)
