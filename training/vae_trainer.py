"""Trains Kelp's causal video VAE (diffusers' AutoencoderKLWan) on clips and images (one-frame clips).

Loss: L1 + KL (small weight) + a structural perceptual term (SSIM, image gradients; see vae_losses) and, from a
chosen step, an optional PatchGAN hinge loss; with `latent_anchor`, a pull of the encoder's latents towards those of
init_from's frozen encoder, so that a transformer trained on the old latents still fits. After training (unless the
latents are init_from's), the per-channel mean and std of the latents of training data go into the VAE config
(`latents_mean` / `latents_std`), so that `encode_video`'s normalized latents have about unit variance, which the
transformer's noise schedule assumes.
"""

from __future__ import annotations

import copy
import logging
import os
import secrets
import shutil
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed
from diffusers import AutoencoderKLWan
from diffusers.training_utils import EMAModel
from torch import nn
from torch.func import functional_call

from core.models.vae import VAE_PRESETS, build_vae, decoder_pixels, latent_stats
from training.config import Recipe, Stage
from training.datasets import ShardedStream, build_dataset, item_video
from training.export import load_vae, shipped_weights
from training.metrics import MetricsLog
from training.run_setup import (
    build_optimizer, checkpoint_to_resume, clip_norm, load_trainable_state, load_training_state, make_accelerator,
    save_training_state, trainable_state,
)  # fmt: skip
from training.vae_losses import (
    PatchDiscriminator3D, edge_loss, hinge_discriminator_loss, hinge_generator_loss, kl_loss, structural_loss,
)  # fmt: skip
from training.vae_widen import widen_decoder

logger = logging.getLogger("training")
LOSS_COLUMNS = ("l1", "l2", "kl", "ssim", "edge", "anchor", "gan", "disc", "psnr")


def decode_for_training(vae: AutoencoderKLWan, z: torch.Tensor) -> torch.Tensor:
    """Pixels (B, 3, F, H, W) from raw latents, as `AutoencoderKLWan._decode` but without its clamp to [-1, 1],
    which would stop the gradient wherever the untrained decoder overshoots."""
    vae.clear_cache()
    x = vae.post_quant_conv(z)
    frames = []
    for i in range(z.shape[2]):  # a latent frame at a time through the causal cache, frame 0 alone
        vae._conv_idx = [0]
        out = vae.decoder(x[:, :, i:i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=i == 0)
        frames.append(decoder_pixels(vae, out))
    vae.clear_cache()
    return torch.cat(frames, dim=2)


class Autoencode(nn.Module):
    """Encode, sample the posterior, decode: one module call, so that DDP sees the whole pass."""

    def __init__(self, vae: AutoencoderKLWan):
        super().__init__()
        self.vae = vae

    def forward(self, video: torch.Tensor, generator: torch.Generator):
        posterior = self.vae.encode(video).latent_dist
        z = posterior.sample(generator=generator)  # (B, z, T, h, w)
        return decode_for_training(self.vae, z), posterior.mean, posterior.logvar


class VAETrainer:
    """`VAETrainer(recipe, output_dir=..., resume=...).train()`; every setting comes from the recipe."""

    def __init__(self, recipe: Recipe, *, output_dir: str | Path | None = None, resume: bool = False):
        if recipe.kind != "vae":
            raise ValueError(f"`kind` must be 'vae' for VAETrainer, got {recipe.kind!r}")
        if recipe.model.gradient_checkpointing:
            raise ValueError("`model.gradient_checkpointing` is not supported by AutoencoderKLWan, got True")
        self.recipe, losses = recipe, recipe.vae_loss
        self.output_dir = Path(output_dir or recipe.output_dir)
        self.accelerator = acc = make_accelerator(recipe)
        resume_from = checkpoint_to_resume(self.output_dir, resume)
        set_seed(recipe.seed)
        init = recipe.model.init_from
        if init is not None:
            self.vae = load_vae(init, "model.init_from")
            if recipe.model.decoder_base_dim is not None:
                self.vae = widen_decoder(self.vae, recipe.model.decoder_base_dim, seed=recipe.seed)
        else:
            self.vae = build_vae(VAE_PRESETS[recipe.model.preset])
        # init_from's encoder, frozen: what vae_loss.latent_anchor pulls the encoder towards
        self.reference = None
        if losses.latent_anchor > 0:
            self.reference = copy.deepcopy(self.vae).eval().requires_grad_(False).to(acc.device)
        self.vae.train().requires_grad_(True)
        if recipe.model.decoder_only:  # the encoder (and quant_conv) fixed: the latents stay what they were
            self.vae.encoder.requires_grad_(False)
            self.vae.quant_conv.requires_grad_(False)
        if recipe.model.encoder_only:  # the decoder (and post_quant_conv) fixed: what a latent decodes to stays
            self.vae.decoder.requires_grad_(False)
            self.vae.post_quant_conv.requires_grad_(False)
        self.trainable = [p for p in self.vae.parameters() if p.requires_grad]
        optimizer, self.lr_scheduler = build_optimizer(self.trainable, recipe.optim, recipe.total_steps)
        self.autoencoder, self.optimizer = acc.prepare(Autoencode(self.vae), optimizer)
        self.disc = self.disc_model = self.disc_optimizer = self.disc_scheduler = None
        if losses.adversarial > 0:
            self.disc = PatchDiscriminator3D()
            disc_optimizer, self.disc_scheduler = build_optimizer(
                list(self.disc.parameters()), recipe.optim, recipe.total_steps, lr=losses.disc_learning_rate)
            self.disc_model, self.disc_optimizer = acc.prepare(self.disc, disc_optimizer)
        self.ema = EMAModel(self.trainable, decay=recipe.optim.ema_decay) if recipe.optim.ema_decay > 0 else None
        self.generator = torch.Generator().manual_seed(recipe.seed * 1000 + acc.process_index + 1)
        self.step, self.stage_index, self._saved_step = 0, None, None
        self.dataset, self.streams = None, {}
        if resume_from is not None:
            self.load(resume_from)
        self.metrics = None
        if acc.is_main_process:
            self.metrics = MetricsLog(self.output_dir, extra_columns=LOSS_COLUMNS, resume_step=self.step)
        logger.info("process %d/%d (%s) on %s starts at step %d of %d", acc.process_index, acc.num_processes,
                    acc.distributed_type.value, acc.device, self.step, recipe.total_steps)

    def train(self) -> None:
        acc, optim, recipe = self.accelerator, self.recipe.optim, self.recipe
        while self.step < recipe.total_steps:
            index, stage, _ = recipe.stage_at(self.step)
            if index != self.stage_index:
                self._enter_stage(index)
            gan = self.disc is not None and self.step >= recipe.vae_loss.adversarial_start
            started, parts = time.perf_counter(), []
            for _ in range(optim.gradient_accumulation_steps):
                video = self.next_batch(stage).to(acc.device)
                models = (self.autoencoder, self.disc_model) if self.disc is not None else (self.autoencoder,)
                with acc.accumulate(*models):
                    loss, part, reconstruction = self.autoencoder_loss(video, gan)
                    acc.backward(loss)
                    if acc.sync_gradients:
                        grad_norm = acc.clip_grad_norm_(self.trainable, clip_norm(optim))
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    if gan:
                        real_and_fake = self.disc_model(torch.cat([video, reconstruction.detach()]))  # one DDP call
                        disc_loss = hinge_discriminator_loss(*real_and_fake.chunk(2))
                        acc.backward(disc_loss)
                        self.disc_optimizer.step()
                        self.disc_optimizer.zero_grad(set_to_none=True)
                        part["disc"] = disc_loss.detach()
                parts.append(part)
            lr = self.lr_scheduler.get_last_lr()[0]
            self.lr_scheduler.step()
            if gan:  # the discriminator's warm-up starts with the GAN loss
                self.disc_scheduler.step()
            if self.ema is not None:
                self.ema.step(self.trainable)
            self.step += 1
            self._log(stage, parts, lr, grad_norm, time.perf_counter() - started)
            if self.step % recipe.checkpoint.interval == 0:
                self.save()
        self.finish()

    def autoencoder_loss(self, video: torch.Tensor, gan: bool):
        """Weighted loss, its parts (detached), and the reconstruction. video (B, 3, F, H, W) in [-1, 1]."""
        w = self.recipe.vae_loss
        reconstruction, mean, logvar = self.autoencoder(video, self.generator)
        reconstruction = reconstruction.float()
        error = reconstruction - video
        part = {"l1": error.abs().mean(), "l2": error.pow(2).mean(), "kl": kl_loss(mean.float(), logvar.float()),
                "ssim": structural_loss(reconstruction, video), "edge": edge_loss(reconstruction, video)}
        loss = (w.l1 * part["l1"] + w.l2 * part["l2"] + w.kl * part["kl"] + w.ssim * part["ssim"]
                + w.edge * part["edge"])
        if self.reference is not None:
            with torch.no_grad():
                anchor = self.reference.encode(video).latent_dist.mode().float()  # (B, z, T, h, w)
            std = latent_stats(self.reference, anchor)[1]  # (1, z, 1, 1, 1): drift in units of init_from's std
            part["anchor"] = ((mean.float() - anchor) / std).pow(2).mean()
            loss = loss + w.latent_anchor * part["anchor"]
        if gan:
            # The discriminator's weights as constants: the gradient reaches the VAE, not the discriminator.
            frozen = {name: p.detach() for name, p in self.disc.named_parameters()}
            part["gan"] = hinge_generator_loss(functional_call(self.disc, frozen, (reconstruction,)))
            loss = loss + w.adversarial * part["gan"]
        mse = (reconstruction.detach().clamp(-1, 1) - video).pow(2).mean()
        part = {k: v.detach() for k, v in part.items()} | {"psnr": 10 * torch.log10(4 / mse.clamp(min=1e-10))}
        return loss, part, reconstruction

    def next_batch(self, stage: Stage) -> torch.Tensor:
        indices = self.streams["single"].take(self.recipe.batch_size(stage))
        size = (stage.frames, stage.height, stage.width)
        return torch.stack([item_video(self.dataset[i], f"dataset item {i}", *size) for i in indices])

    def _enter_stage(self, index: int, positions: dict[str, int] | None = None) -> None:
        recipe, acc = self.recipe, self.accelerator
        stage = recipe.stages[index]
        self.dataset = build_dataset(recipe.data.source, width=stage.width, height=stage.height,
                                     num_frames=stage.frames, seed=recipe.seed, options=recipe.data.options)
        self.streams = {"single": ShardedStream(len(self.dataset), seed=recipe.seed + index, rank=acc.process_index,
                                                world_size=acc.num_processes,
                                                position=(positions or {}).get("single", 0))}
        self.stage_index = index
        logger.info("process %d: stage %d %r: %dx%d, %d frames", acc.process_index, index, stage.name, stage.width,
                    stage.height, stage.frames)

    def _log(self, stage: Stage, parts: list[dict], lr: float, grad_norm, seconds: float) -> None:
        acc = self.accelerator
        means = {k: acc.reduce(torch.stack([p[k] for p in parts]).mean().to(acc.device), reduction="mean").item()
                 for k in parts[0]}
        if not acc.is_main_process:
            return
        w = self.recipe.vae_loss
        loss = (sum(getattr(w, k) * means[k] for k in ("l1", "l2", "kl", "ssim", "edge"))
                + w.latent_anchor * means.get("anchor", 0) + w.adversarial * means.get("gan", 0))
        samples = self.recipe.batch_size(stage) * len(parts) * acc.num_processes
        self.metrics.log({"step": self.step, "stage": stage.name or self.stage_index, "loss": loss, "lr": lr,
                          "grad_norm": float(grad_norm), "seconds_per_step": seconds,
                          "samples_per_s": samples / seconds, **means})
        if self.step % 10 == 0 or self.step in (1, self.recipe.total_steps):
            drift = f"  latent drift {means['anchor'] ** 0.5:.3f} std" if "anchor" in means else ""
            logger.info("step %d/%d  l1 %.4f  ssim-loss %.4f  psnr %.2f dB%s  %.3f s/step", self.step,
                        self.recipe.total_steps, means["l1"], means["ssim"], means["psnr"], drift, seconds)

    # ------------------------------------------------------------------------------------------------
    # State and export
    # ------------------------------------------------------------------------------------------------

    def save(self) -> Path | None:
        """Write a checkpoint of the full training state (main process); every process must call it."""
        def discriminator_state() -> dict:
            if self.disc is None:
                return {}
            return {"disc": {"model": trainable_state(self.disc), "optimizer": self.disc_optimizer.state_dict(),
                             "lr_scheduler": self.disc_scheduler.state_dict()}}

        return save_training_state(self, self.vae, extra=discriminator_state)

    def load(self, path: str | Path) -> None:
        def restore_discriminator(state: dict) -> None:
            if self.disc is not None:
                load_trainable_state(self.disc, state["disc"]["model"])
                self.disc_optimizer.load_state_dict(state["disc"]["optimizer"])
                self.disc_scheduler.load_state_dict(state["disc"]["lr_scheduler"])

        load_training_state(self, self.vae, path, restore_extra=restore_discriminator)

    def latent_statistics(self, vae: AutoencoderKLWan) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the raw latents (posterior mode) of training items of the last stage."""
        count = min(self.recipe.vae_loss.latent_stats_samples, len(self.dataset))
        stage = self.recipe.stages[self.stage_index]
        total = total_sq = 0.0
        elements = 0
        with torch.no_grad():
            for index in range(count):
                video = item_video(self.dataset[index], f"dataset item {index}", stage.frames, stage.height,
                                   stage.width)
                mu = vae.encode(video[None].to(vae.device)).latent_dist.mode().double()  # (1, z, T, h, w)
                total = total + mu.sum(dim=(0, 2, 3, 4))
                total_sq = total_sq + mu.pow(2).sum(dim=(0, 2, 3, 4))
                elements += mu[0, 0].numel()
        mean = total / elements
        std = (total_sq / elements - mean.pow(2)).clamp(min=1e-12).sqrt()
        return mean.tolist(), std.tolist()

    def export(self, folder: str | Path | None = None) -> Path:
        """The trained VAE (EMA if kept) with its latent statistics, as a folder `model.vae_from` accepts."""
        folder = Path(folder or self.output_dir / "vae")
        vae = shipped_weights(self.vae, self.ema)
        # decoder_only: init_from's statistics (the same encoder, the same latents); encoder_only and latent_anchor:
        # init_from's too, the latent space the fixed decoder reads (and the anchor keeps) and a transformer was
        # trained on
        model = self.recipe.model
        if not (model.decoder_only or model.encoder_only) and self.recipe.vae_loss.latent_anchor == 0:
            mean, std = self.latent_statistics(vae)
            vae.register_to_config(latents_mean=mean, latents_std=std)
        tmp = folder.with_name(f".{folder.name}.tmp-{secrets.token_hex(4)}")
        try:
            vae.save_pretrained(tmp, safe_serialization=True)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def finish(self) -> None:
        if self._saved_step != self.step:
            self.save()
        if self.accelerator.is_main_process:
            logger.info("exported %s", self.export())
            self.metrics.close()
        self.accelerator.wait_for_everyone()
