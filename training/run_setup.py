"""What the DiT and VAE trainers share: the accelerator, the optimizer and LR schedule, the per-process state
that checkpoints carry (RNGs, data positions), trainable weights in and out, and the output folder's rules."""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, gather_object
from diffusers.optimization import get_scheduler
from transformers.optimization import get_wsd_schedule

from training.checkpointing import (
    global_rng_state, latest_checkpoint, load_checkpoint, save_checkpoint, set_global_rng_state,
)
from training.config import OptimSettings, Recipe

logger = logging.getLogger("training")


# The probe: the small preset's MLP matmul at 128x128x17 (tokens x width x MLP width), small enough to time in well
# under a second where bfloat16 is emulated. Above SLOW_BFLOAT16 times float32's time a run is warned.
BFLOAT16_PROBE_SHAPE = (512, 384, 1536)
SLOW_BFLOAT16 = 2.0


def make_accelerator(recipe: Recipe) -> Accelerator:
    if recipe.model.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("`model.mixed_precision` 'fp16' needs a CUDA GPU; use 'bf16' or 'no' on CPU, got 'fp16'")
    accelerator = Accelerator(
        # Without a GPU, processes started by `accelerate launch --multi_gpu` / torchrun join one gloo group.
        cpu=not torch.cuda.is_available(),
        mixed_precision=recipe.model.mixed_precision,
        gradient_accumulation_steps=recipe.optim.gradient_accumulation_steps,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )
    if recipe.model.mixed_precision == "bf16" and accelerator.device.type == "cpu" and accelerator.is_main_process:
        slowdown = cpu_bfloat16_slowdown()
        if slowdown > SLOW_BFLOAT16:
            logger.warning(
                "`model.mixed_precision` 'bf16' on a CPU without bfloat16 arithmetic (AVX512-BF16 or AMX on x86): "
                "a bfloat16 matmul takes %.0fx as long as a float32 one here, so this run will be many times slower "
                "than in float32. Stop it and pass --mixed-precision no (or set model.mixed_precision = \"no\").",
                slowdown)
    return accelerator


def cpu_bfloat16_slowdown(repeats: int = 2) -> float:
    """How many times as long a bfloat16 matmul takes as a float32 one on this CPU (best of `repeats` each): under 1
    where the CPU has bfloat16 arithmetic, tens of times where PyTorch emulates it (x86 CPUs with AVX2 but not
    AVX512). Leaves the random number generators alone."""
    m, k, n = BFLOAT16_PROBE_SHAPE
    seconds = []
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.full((m, k), 0.5, dtype=dtype), torch.full((k, n), 0.25, dtype=dtype)
        a @ b  # warm-up: first-call dispatch and allocation
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        seconds.append(best)
    return seconds[1] / seconds[0]


def build_optimizer(params: list[torch.nn.Parameter], optim: OptimSettings, total_steps: int, lr: float | None = None):
    """AdamW and its LR schedule (linear warm-up, then constant, cosine or stable-then-decay), stepped once per
    optimizer step."""
    optimizer = torch.optim.AdamW(params, lr=lr or optim.learning_rate, betas=optim.adam_betas, eps=optim.adam_eps,
                                  weight_decay=optim.weight_decay)
    if optim.lr_schedule == "wsd":
        if optim.warmup_steps + optim.decay_steps > total_steps:
            raise ValueError(f"`warmup_steps` + `decay_steps` ({optim.warmup_steps} + {optim.decay_steps}) must not "
                             f"exceed the recipe's {total_steps} steps")
        stable = total_steps - optim.warmup_steps - optim.decay_steps
        return optimizer, get_wsd_schedule(optimizer, num_warmup_steps=optim.warmup_steps,
                                           num_stable_steps=stable, num_decay_steps=optim.decay_steps)
    name = "constant_with_warmup" if optim.lr_schedule == "constant" else "cosine"
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=optim.warmup_steps, num_training_steps=total_steps)
    return optimizer, scheduler


def clip_norm(optim: OptimSettings) -> float:
    return optim.grad_clip if optim.grad_clip > 0 else math.inf  # inf: measure the norm, never clip


def gather_per_process(accelerator: Accelerator, state: dict) -> list[dict]:
    """Every process's `state`, in rank order, on every process."""
    if accelerator.num_processes == 1:
        return [state]
    return gather_object([state])


def process_state(generator: torch.Generator, streams: dict) -> dict:
    """What differs between processes and must come back on resume: RNG states and data positions."""
    return {"generator": generator.get_state(), "rng": global_rng_state(),
            "streams": {name: stream.position for name, stream in streams.items()}}


def restore_process_state(state: dict, generator: torch.Generator) -> dict[str, int]:
    """Set the RNGs from `state`; return the data positions."""
    generator.set_state(state["generator"])
    set_global_rng_state(state["rng"])
    return state["streams"]


@contextmanager
def rng_preserved():
    """Run a block (validation, exports) without moving any global RNG the training run depends on."""
    state = global_rng_state()
    try:
        yield
    finally:
        set_global_rng_state(state)


def checkpoint_to_resume(output_dir: Path, resume: bool) -> Path | None:
    """The newest checkpoint under output_dir when resuming; refuses to train over an earlier run otherwise."""
    latest = latest_checkpoint(output_dir / "checkpoints")
    if resume:
        if latest is None:
            logger.warning("--resume: no checkpoint in %s, starting from step 0", output_dir / "checkpoints")
        return latest
    if latest is not None:
        raise ValueError(f"`output_dir` {str(output_dir)!r} already holds checkpoints; pass --resume to continue "
                         f"that run or choose another --output-dir")
    return None


def check_world_size(state: dict, accelerator: Accelerator, path: Path) -> None:
    saved = len(state["processes"])
    if saved != accelerator.num_processes:
        raise ValueError(f"checkpoint {str(path)!r} was written by {saved} processes; exact resume needs the same "
                         f"number, got {accelerator.num_processes}")


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = set(trainable_state(module))
    if set(state) != expected:
        missing, extra = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
        raise ValueError(f"checkpoint weights do not fit this model: missing {missing}, unexpected {extra}")
    with torch.no_grad():
        params = dict(module.named_parameters())
        for name, value in state.items():
            params[name].copy_(value)


def save_training_state(trainer, model: torch.nn.Module, extra=None) -> Path | None:
    """Checkpoint what both trainers hold (model, optimizer, LR schedule, EMA, step, stage, per-process RNGs and
    data positions), plus `extra()` (main process only); every process must call it."""
    acc = trainer.accelerator
    processes = gather_per_process(acc, process_state(trainer.generator, trainer.streams))
    path = None
    if acc.is_main_process:
        state = {
            "step": trainer.step, "stage": trainer.stage_index, "model": trainable_state(model),
            "optimizer": trainer.optimizer.state_dict(), "lr_scheduler": trainer.lr_scheduler.state_dict(),
            "ema": trainer.ema.state_dict() if trainer.ema is not None else None, "processes": processes,
            **(extra() if extra is not None else {}),
        }  # fmt: skip
        path = save_checkpoint(trainer.output_dir / "checkpoints", trainer.step, state,
                               keep=trainer.recipe.checkpoint.keep)
    trainer._saved_step = trainer.step
    acc.wait_for_everyone()
    return path


def load_training_state(trainer, model: torch.nn.Module, path: str | Path, restore_extra=None) -> None:
    """Undo save_training_state: `restore_extra(state)` restores what `extra` added, before the stage is entered."""
    acc = trainer.accelerator
    state = load_checkpoint(path)
    check_world_size(state, acc, Path(path))
    load_trainable_state(model, state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.lr_scheduler.load_state_dict(state["lr_scheduler"])
    if trainer.ema is not None:
        trainer.ema.load_state_dict(state["ema"])
        trainer.ema.to(acc.device)
    if restore_extra is not None:
        restore_extra(state)
    trainer.step = trainer._saved_step = state["step"]
    positions = restore_process_state(state["processes"][acc.process_index], trainer.generator)
    trainer._enter_stage(state["stage"], positions)
