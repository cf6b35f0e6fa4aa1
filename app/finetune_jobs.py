"""LoRA fine-tunes started from the studio: start one on uploaded footage, follow it, cancel it, and mark the runs a
dead studio left behind. The trainer runs as its own process (`python -m app.finetune_train`), so it can be stopped
at any moment and never holds up the studio's generation thread; one runs at a time.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from core.model_loader import resolve_model
from core.store import Store
from core.store.queue import worker_id, worker_is_dead
from core.store.schema import Lora
from training.data.footage_clips import MIN_VIDEO_FRAMES
from core.store.training_runs import (
    create_training_run, finish_training_run, get_training_run, list_training_runs, record_training_progress,
)  # fmt: skip

from app.finetune_monitor import FinetuneMonitor, RunFolder
from app.finetune_recipe import (
    DEFAULT_LEARNING_RATE, FinetuneSettings, plan_stages, recipe_table, toml_text, too_short,
)  # fmt: skip
from app.finetune_uploads import check_files, check_trigger, copy_footage, safe_stem

REPO = Path(__file__).resolve().parents[1]
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class FinetuneStatus:
    run_id: int
    name: str
    base_model: str
    status: str  # queued, running, done, failed, cancelled, interrupted
    phase: str  # what it is doing now, in words
    step: int
    total_steps: int
    progress: float  # 0..1
    eta_s: float | None  # for the remaining steps, from the measured time per step
    losses: list[tuple[int, float]]  # (step, loss) per logged step
    validation_clips: list[Path]
    skipped: list[tuple[str, str]]  # (uploaded name, why) for files that gave no training data
    lora_id: int | None  # the registered LoRA, once done
    error: str

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE


def run_folder(store: Store, run_id: int) -> RunFolder:
    return RunFolder(store.data_dir.training / str(run_id))


def start_finetune(service, *, name: str, files: list, captions: dict, base_model: str, steps: int, rank: int,
                   learning_rate: float = DEFAULT_LEARNING_RATE, trigger: str = "", threads: int | None = None) -> int:
    """Copy the footage into a new run's folder, write its LoRA recipe and start the trainer; returns the run id.
    ValueError naming the bad argument, before anything is written, for bad settings and unusable footage."""
    store = service.store
    settings = FinetuneSettings(name=name, base_model=base_model, steps=steps, rank=rank,
                                learning_rate=learning_rate, trigger=check_trigger(trigger))
    try:
        base = resolve_model(base_model)  # reads an index at most; nothing loads
    except ValueError as err:
        raise ValueError(f"`base_model` {base_model!r} is not a model Kelp can find ({err})") from err
    paths, threads = check_files(files), _check_threads(threads)
    _refuse_second_run(store)
    copied, run_id = _new_run(store, settings, base, paths, captions)
    folder = run_folder(store, run_id)
    try:
        table = recipe_table(settings, base, copied.scan, footage_folder=folder.footage,
                             lora_name=safe_stem(settings.name, "lora", 60), output_dir=folder.output)
        folder.recipe.write_text(toml_text(table))
        process = _spawn_trainer(folder, threads, cuda=service.engine.device.type == "cuda")
    except BaseException as err:
        reason = f"the run could not start: {err}"
        store.db.write(lambda session: finish_training_run(session, run_id, "failed", error=reason))
        raise
    fps = base.defaults.fps
    short = [[copied.uploaded.get(path.name, path.name), f"too short: under {MIN_VIDEO_FRAMES / fps:.2f} s"]
             for path in too_short(copied.scan, fps)]
    worker = worker_id()

    def begin(session) -> None:
        run = get_training_run(session, run_id)
        run.recipe = {"recipe": table, "skipped": [list(pair) for pair in copied.skipped] + short}
        run.output_dir = str(folder.output)
        record_training_progress(session, run_id, step=0, worker=worker)  # running, with a heartbeat

    store.db.write(begin)
    FinetuneMonitor(store, run_id, process, folder, worker).start()
    return run_id


def _new_run(store: Store, settings: FinetuneSettings, base, paths: list[Path], captions: dict):
    """(copied footage, run id): the footage is copied and checked in a staging folder, then the run's row is made
    and the folder becomes the run's. On any error nothing is left behind."""
    staging = store.data_dir.training / f".new-{secrets.token_hex(4)}"
    try:
        copied = copy_footage(paths, captions, settings.trigger, staging / "footage")
        if not copied.usable:
            reasons = "; ".join(f"{upload}: {why}" for upload, why in copied.skipped)
            raise ValueError(f"`files` hold no readable video or image ({reasons})")
        d = base.defaults
        plan_stages(copied.scan, width=d.width, height=d.height, fps=d.fps, steps=settings.steps)  # enough footage?
        run_id = store.db.write(lambda session: create_training_run(
            session, settings.name, kind="lora", base_model=settings.base_model, total_steps=settings.steps).id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(staging, run_folder(store, run_id).root)
    return copied, run_id  # its scan's paths name the staging folder: only names, kinds and captions are used


def cancel_finetune(service, run_id: int, *, wait_s: float = 30.0) -> str:
    """Ask run `run_id`'s trainer to stop; returns the run's status after waiting up to `wait_s` for it to stop."""
    store = service.store
    with store.db.read() as session:
        run = get_training_run(session, run_id)
        status, worker, heartbeat = run.status, run.worker, run.heartbeat_at
    if status not in ACTIVE:
        return status
    if worker_is_dead(worker, heartbeat):  # nobody is watching it: nothing left to stop
        store.db.write(lambda session: finish_training_run(session, run_id, "cancelled"))
        return "cancelled"
    folder = run_folder(store, run_id)
    folder.cancel_request.touch()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        with store.db.read() as session:
            status = get_training_run(session, run_id).status
        if status not in ACTIVE:
            break
        time.sleep(0.2)
    return status


def finetune_status(service, run_id: int) -> FinetuneStatus:
    store = service.store
    with store.db.read() as session:
        run = get_training_run(session, run_id)
        lora_id = session.scalar(select(Lora.id).where(Lora.training_run_id == run_id))
        row = (run.name, run.base_model, run.status, run.step, run.total_steps, run.progress, list(run.metrics),
               dict(run.recipe), run.error)
    name, base_model, status, step, total, progress, metrics, recipe, error = row
    losses = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    times = [m["seconds_per_step"] for m in metrics[-20:] if "seconds_per_step" in m]
    eta = sum(times) / len(times) * (total - step) if times and status == "running" else None
    skipped = [tuple(pair) for pair in recipe.get("skipped", [])]
    return FinetuneStatus(run_id, name, base_model, status, _phase(status, step, total), step, total, progress, eta,
                          losses, run_folder(store, run_id).validation_clips(), skipped, lora_id, error)


def list_finetunes(service, limit: int = 20) -> list[FinetuneStatus]:
    """The newest `limit` LoRA fine-tunes, newest first."""
    with service.store.db.read() as session:
        ids = [run.id for run in list_training_runs(session) if run.kind == "lora"][:limit]
    return [finetune_status(service, run_id) for run_id in ids]


def recover_finetune_runs(store: Store) -> list[int]:
    """Runs left queued or running by a studio that is gone become "interrupted"; returns their ids.
    Call at start-up (a trainer whose studio died stops by itself: app.finetune_train watches its parent)."""

    def recover(session) -> list[int]:
        stale = [run for status in ACTIVE for run in list_training_runs(session, status=status, include_deleted=True)
                 if not run.worker or worker_is_dead(run.worker, run.heartbeat_at)]
        for run in stale:
            finish_training_run(session, run.id, "interrupted", error="the studio stopped while this run was "
                                "training; start a new fine-tune to train again")
        return [run.id for run in stale]

    return store.db.write(recover)


def _phase(status: str, step: int, total: int) -> str:
    if status == "running" and step == 0:
        return "loading the base model and reading the footage"
    if status == "running" and step >= total:
        return "saving the LoRA and rendering a validation clip"
    if status == "running":
        return f"training, step {step} of {total}"
    return status


def _check_threads(threads) -> int:
    if threads is None:
        return max(1, (os.cpu_count() or 2) // 2)  # leave the other half to the studio's own generations
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"`threads` must be a positive whole number or None, got {threads!r}")
    return threads


def _refuse_second_run(store: Store) -> None:
    with store.db.read() as session:
        active = [(run.name, run.id) for status in ACTIVE for run in list_training_runs(session, status=status)
                  if not worker_is_dead(run.worker, run.heartbeat_at)]
    if active:
        raise ValueError(f"fine-tune {active[0][0]!r} (run {active[0][1]}) is still training; "
                         f"cancel it or wait for it before starting another")


def _spawn_trainer(folder: RunFolder, threads: int, *, cuda: bool) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if not cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the studio runs on the CPU: so does its fine-tune
    command = [sys.executable, "-m", "app.finetune_train", "--recipe", str(folder.recipe),
               "--parent-pid", str(os.getpid())]
    with open(folder.log, "ab") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    folder.pid.write_text(f"{process.pid}\n")
    return process
