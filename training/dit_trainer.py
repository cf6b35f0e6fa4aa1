"""Trains Kelp's video transformer, or a LoRA on it, with flow matching over a curriculum of stages.

The VAE and the text encoder stay frozen. Every optimizer step draws, per process and from one seeded generator,
a task per sample (or a multi-shot micro-batch), a logit-normal noise level per sample and the noise; the loss is
the velocity MSE on the frames that are not given. All of that state, the data positions, optimizer, LR schedule
and EMA are checkpointed, so a resumed run continues bit for bit on CPU.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from diffusers.training_utils import EMAModel

from core.model_loader import load_model, resolve_model
from core.models.presets import MODEL_PRESETS
from core.models.vae import build_vae
from core.text.encoder import build_text_encoder
from training.config import Recipe, Stage
from training.datasets import LazyItems, ShardedStream, build_dataset
from training.export import export_model, load_vae, render_validation_clips, shipped_weights
from training.flow_matching import (
    foreground_strengths, foreground_weights, masked_mse, noisy_latents, sample_sigmas, training_shift, velocity_target,
)  # fmt: skip
from training.lora import add_lora, save_lora
from training.metrics import MetricsLog
from training.run_setup import (
    build_optimizer, checkpoint_to_resume, clip_norm, load_training_state, make_accelerator, rng_preserved,
    save_training_state,
)  # fmt: skip
from training.tasks import SINGLE_SHOT_TASKS, BatchBuilder, DiTBatch, draw_task

logger = logging.getLogger("training")


class DiTTrainer:
    """`DiTTrainer(recipe, output_dir=..., resume=...).train()`; every setting comes from the recipe."""

    def __init__(self, recipe: Recipe, *, output_dir: str | Path | None = None, resume: bool = False):
        if recipe.kind != "dit":
            raise ValueError(f"`kind` must be 'dit' for DiTTrainer, got {recipe.kind!r}")
        self.recipe = recipe
        self.output_dir = Path(output_dir or recipe.output_dir)
        self.accelerator = acc = make_accelerator(recipe)
        resume_from = checkpoint_to_resume(self.output_dir, resume)
        self.preset = MODEL_PRESETS[recipe.model.preset]
        # Load the text encoder before seeding: building it may draw from the global RNG.
        encoder_path = {"model_path": recipe.model.text_encoder_path} if recipe.model.text_encoder_path else {}
        self.text_encoder = build_text_encoder(self.preset.text_encoder, device=str(acc.device), **encoder_path)
        self.text_encoder.encode([""])
        set_seed(recipe.seed)  # the same initial weights in every process
        self.transformer, self.vae, self.base_hash = self._load_models()
        if recipe.lora is not None:
            self.trainable = add_lora(self.transformer, recipe.lora)
        else:
            self.trainable = list(self.transformer.parameters())
        if recipe.model.gradient_checkpointing:
            self.transformer.enable_gradient_checkpointing()
        optimizer, self.lr_scheduler = build_optimizer(self.trainable, recipe.optim, recipe.total_steps)
        self.model, self.optimizer = acc.prepare(self.transformer.train(), optimizer)
        self.ema = None
        if recipe.optim.ema_decay > 0:
            self.ema = EMAModel(self.trainable, decay=recipe.optim.ema_decay)
        # Noise, timesteps, tasks and caption dropout: one generator per process, drawn on the CPU.
        self.generator = torch.Generator().manual_seed(recipe.seed * 1000 + acc.process_index + 1)
        self.builder = BatchBuilder(vae=self.vae, text_encoder=self.text_encoder,
                                    cache_latents=recipe.data.cache_latents,
                                    caption_dropout=recipe.data.caption_dropout)
        self.step, self.stage_index, self._saved_step, self._engine = 0, None, None, None
        self.datasets, self.streams, self.ratios, self.shift = {}, {}, {}, 1.0  # set per stage by _enter_stage
        if resume_from is not None:
            self.load(resume_from)
        self.metrics = MetricsLog(self.output_dir, resume_step=self.step) if acc.is_main_process else None
        logger.info("process %d/%d (%s) on %s starts at step %d of %d", acc.process_index, acc.num_processes,
                    acc.distributed_type.value, acc.device, self.step, recipe.total_steps)

    def _load_models(self):
        settings, preset = self.recipe.model, self.preset
        base_hash = ""
        if settings.init_from is not None:
            source = resolve_model(settings.init_from)
            if source.preset != settings.preset:
                raise ValueError(f"`model.init_from` {settings.init_from!r} is a {source.preset!r} model, "
                                 f"but `model.preset` is {settings.preset!r}")
            loaded = load_model(source)
            transformer, vae, base_hash = loaded.transformer, loaded.vae, loaded.weights_hash
        else:
            transformer, vae = preset.transformer.build(), build_vae(preset.vae)
        if settings.vae_from is not None:
            vae = load_vae(settings.vae_from)
        elif settings.init_from is None:
            logger.warning("no `model.vae_from`: encoding with an untrained VAE (fine for tests, useless otherwise)")
        if vae.config.z_dim != transformer.config.latent_channels:
            raise ValueError(f"`model.vae_from` has {vae.config.z_dim} latent channels, the {settings.preset!r} "
                             f"transformer needs {transformer.config.latent_channels}")
        vae = vae.to(self.accelerator.device).eval().requires_grad_(False)
        return transformer, vae, base_hash

    # ------------------------------------------------------------------------------------------------
    # The loop
    # ------------------------------------------------------------------------------------------------

    def train(self) -> None:
        acc, optim, recipe = self.accelerator, self.recipe.optim, self.recipe
        while self.step < recipe.total_steps:
            index, stage, _ = recipe.stage_at(self.step)
            if index != self.stage_index:
                self._enter_stage(index)
            started, losses, samples = time.perf_counter(), [], 0
            for _ in range(optim.gradient_accumulation_steps):
                batch = self.next_batch(stage)
                with acc.accumulate(self.model):
                    loss = self.loss(batch)
                    acc.backward(loss)
                    if acc.sync_gradients:
                        grad_norm = acc.clip_grad_norm_(self.trainable, clip_norm(optim))
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                losses.append(loss.detach())
                samples += len(batch.tasks)
            lr = self.lr_scheduler.get_last_lr()[0]
            self.lr_scheduler.step()
            if self.ema is not None:
                self.ema.step(self.trainable)
            self.step += 1
            seconds = time.perf_counter() - started
            self._log(stage, torch.stack(losses).mean(), lr, grad_norm, seconds, samples)
            if self.step % recipe.checkpoint.interval == 0:
                self.save()
            if recipe.validation.interval and self.step % recipe.validation.interval == 0:
                self.validate()
        self.finish()

    def next_batch(self, stage: Stage) -> DiTBatch:
        """This process's next micro-batch: a multi-shot batch, or one-shot samples with a task each."""
        size, count = (stage.frames, stage.height, stage.width), self.recipe.batch_size(stage)
        if draw_task(self.ratios, self.generator) == "multishot":
            indices = self.streams["multi"].take(count)
            items = LazyItems(self.datasets["multi"], indices)
            return self.builder.multishot(items, [("multi", i) for i in indices], size, self.generator)
        single = {task: self.ratios[task] for task in SINGLE_SHOT_TASKS}
        tasks = [draw_task(single, self.generator) for _ in range(count)]
        indices = self.streams["single"].take(count)
        items = LazyItems(self.datasets["single"], indices)
        return self.builder.single(items, [("single", i) for i in indices], tasks, size, self.generator)

    def loss(self, batch: DiTBatch) -> torch.Tensor:
        flow, device = self.recipe.flow, self.accelerator.device
        sigmas = sample_sigmas(len(batch.tasks), logit_mean=flow.logit_mean, logit_std=flow.logit_std,
                               shift=self.shift, generator=self.generator)  # (B,)
        noise = torch.randn(batch.latents.shape, generator=self.generator)  # (B, C, T, h, w), CPU: same on any device
        batch, sigmas, noise = batch.to(device), sigmas.to(device), noise.to(device)
        # Mixed precision: accelerate.prepare wrapped the model's forward in autocast.
        prediction = self.model(
            noisy_latents(batch.latents, noise, sigmas), sigmas * 1000, batch.text, batch.text_mask,
            condition_latents=batch.condition_latents, condition_mask=batch.condition_mask,
            shot_latent_frames=batch.shot_latent_frames, text_lengths=batch.text_lengths,
        ).sample  # (B, C, T, h, w)
        weights = None
        if flow.foreground_weight and batch.foreground is not None:
            strengths = foreground_strengths(sigmas, flow.foreground_weight, flow.foreground_max_sigma)
            weights = foreground_weights(batch.foreground, strengths)
        return masked_mse(prediction, velocity_target(batch.latents, noise), batch.condition_mask, weights)

    def _enter_stage(self, index: int, positions: dict[str, int] | None = None) -> None:
        recipe, acc = self.recipe, self.accelerator
        stage, data = recipe.stages[index], recipe.data
        size = dict(width=stage.width, height=stage.height, num_frames=stage.frames, seed=recipe.seed,
                    options=data.options)
        self.datasets = {"single": build_dataset(data.source, **size)}
        self.ratios = stage.tasks.as_dict()
        if self.ratios["multishot"] > 0:
            multi = build_dataset(data.source, multi_shot=True, **size)
            if multi is None:
                logger.warning("stage %d: %r has no multi-shot items at this size; multishot skipped", index,
                               data.source)
                self.ratios["multishot"] = 0.0
            else:
                self.datasets["multi"] = multi
        if not any(self.ratios.values()):
            raise ValueError(f"`stages[{index}].tasks` asks only for multishot, but `data.source` {data.source!r} "
                             f"has no multi-shot items at {stage.width}x{stage.height}, {stage.frames} frames")
        positions = positions or {}
        self.streams = {
            name: ShardedStream(len(dataset), seed=recipe.seed + index, rank=acc.process_index,
                                world_size=acc.num_processes, position=positions.get(name, 0))
            for name, dataset in self.datasets.items()
        }  # fmt: skip
        patch_h, patch_w = self.transformer.config.patch_size
        tokens = (1 + (stage.frames - 1) // 4) * (stage.height // 8 // patch_h) * (stage.width // 8 // patch_w)
        self.shift = training_shift(recipe.flow.shift, self.preset.defaults, tokens)
        self.builder.clear_cache()
        if data.prefetch_workers:
            self._prefetch(stage, data.prefetch_workers)
        self.stage_index = index
        logger.info("process %d: stage %d %r: %dx%d, %d frames, shift %.3f, tasks %s", acc.process_index, index,
                    stage.name, stage.width, stage.height, stage.frames, self.shift,
                    {k: v for k, v in self.ratios.items() if v})

    def _prefetch(self, stage: Stage, workers: int) -> None:
        """Every item of this stage's datasets read in `workers` processes, its latents cached as it arrives."""
        started, size = time.perf_counter(), (stage.frames, stage.height, stage.width)
        for name, dataset in self.datasets.items():
            # batch_size=None: items one by one, in index order, as the dataset returns them.
            loader = DataLoader(dataset, batch_size=None, num_workers=workers, prefetch_factor=8)
            for index, item in enumerate(loader):
                self.builder.prefill(item, (name, index), size, first_last=self.ratios["first_last"] > 0)
        logger.info("process %d: prefetched %s items in %.0f s with %d workers", self.accelerator.process_index,
                    {name: len(dataset) for name, dataset in self.datasets.items()}, time.perf_counter() - started,
                    workers)

    def _log(self, stage: Stage, loss: torch.Tensor, lr: float, grad_norm, seconds: float, samples: int) -> None:
        acc = self.accelerator
        loss = acc.reduce(loss.to(acc.device), reduction="mean").item()
        samples = int(acc.reduce(torch.tensor(samples, device=acc.device), reduction="sum"))
        if not acc.is_main_process:
            return
        row = {"step": self.step, "stage": stage.name or self.stage_index, "loss": loss, "lr": lr,
               "grad_norm": float(grad_norm), "seconds_per_step": seconds, "samples_per_s": samples / seconds}
        self.metrics.log(row)
        if self.step % 10 == 0 or self.step in (1, self.recipe.total_steps):
            logger.info("step %d/%d  loss %.4f  lr %.2e  grad %.3f  %.3f s/step", self.step,
                        self.recipe.total_steps, loss, lr, float(grad_norm), seconds)

    # ------------------------------------------------------------------------------------------------
    # State, exports, validation
    # ------------------------------------------------------------------------------------------------

    def save(self) -> Path | None:
        """Write a checkpoint of the full training state (main process); every process must call it."""
        return save_training_state(self, self.transformer)

    def load(self, path: str | Path) -> None:
        load_training_state(self, self.transformer, path)
        logger.info("process %d resumed from %s", self.accelerator.process_index, path)

    def export(self, path: str | Path | None = None) -> Path:
        """The trained weights (EMA if kept) as a Kelp model folder, or, for a LoRA run, the LoRA file."""
        recipe = self.recipe
        if recipe.lora is not None:
            path = Path(path or self.output_dir / "lora" / f"{recipe.name}.safetensors")
            return save_lora(path, shipped_weights(self.transformer, self.ema), base_model=recipe.model.init_from,
                             base_weights_sha256=self.base_hash, trigger_words=recipe.lora.trigger_words)
        return export_model(path or self.output_dir / "model", transformer=self.transformer, vae=self.vae,
                            preset=recipe.model.preset, ema=self.ema)

    def validate(self) -> list[Path]:
        """Clips of the validation prompts from the current (EMA) weights through the engine (main process)."""
        acc, settings = self.accelerator, self.recipe.validation
        paths = []
        if acc.is_main_process:
            from core.pipeline import Engine

            stage = self.recipe.stages[self.stage_index]
            device = acc.device
            self._engine = self._engine or Engine(device="cpu" if device.type == "cpu" else str(device))
            with rng_preserved(), tempfile.TemporaryDirectory() as tmp:
                folder = export_model(Path(tmp) / "model", transformer=self.transformer, vae=self.vae,
                                      preset=self.recipe.model.preset, ema=self.ema)
                paths = render_validation_clips(
                    self._engine, folder, settings.prompts, self.output_dir / "validation" / f"step-{self.step:06d}",
                    width=stage.width, height=stage.height, num_frames=stage.frames, steps=settings.steps,
                    guidance_scale=settings.guidance_scale, seed=settings.seed,
                )
            logger.info("validation clips for step %d in %s", self.step, paths[0].parent)
        acc.wait_for_everyone()
        return paths

    def finish(self) -> None:
        """Final checkpoint and export (main process), once the last step is done."""
        if self._saved_step != self.step:
            self.save()
        if self.accelerator.is_main_process:
            logger.info("exported %s", self.export())
            self.metrics.close()
        self.accelerator.wait_for_everyone()
