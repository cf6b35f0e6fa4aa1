"""DiT training on the tiny preset: a few steps of every task, checkpoints, validation clips and an export that
the engine loads."""

import csv
import dataclasses
import math
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from core.models.vae import encode_video
from core.pipeline import Engine
from core.request import GenerationRequest
from core.video_io import read_video_info
from training.checkpointing import checkpoint_dirs, load_checkpoint
from training.config import TASKS, ValidationSettings, load_recipe
from training.dit_trainer import DiTTrainer
from training.datasets import LazyItems
from training.tasks import BatchBuilder, first_last_window

RECIPE = Path(__file__).resolve().parents[2] / "training" / "recipes" / "tiny-smoke.toml"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


def fresh_trainer(recipe, **kwargs) -> DiTTrainer:
    AcceleratorState._reset_state(reset_partial_state=True)  # each trainer configures accelerate anew
    return DiTTrainer(recipe, **kwargs)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The tiny-smoke recipe trained to the end (6 steps), with validation clips at steps 3 and 6."""
    output = tmp_path_factory.mktemp("dit") / "run"
    recipe = load_recipe(RECIPE, output_dir=str(output))
    recipe = dataclasses.replace(recipe, validation=dataclasses.replace(recipe.validation, interval=3))
    trainer = fresh_trainer(recipe)
    before = {name: p.detach().clone() for name, p in trainer.transformer.named_parameters()}
    trainer.train()
    return trainer, before, output


def test_training_runs_every_step_with_finite_losses_and_moves_the_weights(run):
    trainer, before, output = run
    rows = list(csv.DictReader(open(output / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert [r["stage"] for r in rows] == ["images"] * 2 + ["video"] * 4
    assert all(math.isfinite(float(r["loss"])) and float(r["grad_norm"]) > 0 for r in rows)
    assert float(rows[0]["lr"]) == 0.0 and float(rows[-1]["lr"]) == pytest.approx(1e-3)  # warm-up, then constant
    changed = [name for name, p in trainer.transformer.named_parameters() if not torch.equal(p, before[name])]
    assert len(changed) == len(before)  # AdaLN-Zero and the zero output layer included


def test_checkpoints_hold_the_full_state_and_the_export_holds_the_ema_weights(run):
    trainer, _, output = run
    assert [p.name for p in checkpoint_dirs(output / "checkpoints")] == ["step-000003", "step-000006"]
    state = load_checkpoint(output / "checkpoints" / "step-000006")
    assert state["step"] == 6 and state["ema"]["optimization_step"] == 6 and len(state["processes"]) == 1
    assert state["processes"][0]["streams"]["single"] > 0 and "multi" in state["processes"][0]["streams"]
    exported = load_file(output / "model" / "transformer" / "diffusion_pytorch_model.safetensors")
    names = [name for name, _ in trainer.transformer.named_parameters()]
    for name, shadow in zip(names, trainer.ema.shadow_params):
        assert torch.equal(exported[name], shadow)
    assert not torch.equal(exported["proj_out.weight"], trainer.transformer.proj_out.weight.detach())


def test_validation_clips_are_written_through_the_engine(run):
    _, _, output = run
    for step in ("step-000003", "step-000006"):
        clips = sorted((output / "validation" / step).glob("*.mp4"))
        assert [c.name for c in clips] == ["00-a-red-square-moving-left-on-black.mp4"]
        info = read_video_info(clips[0])
        assert (info.width, info.height, info.num_frames) == (32, 32, 9)


def test_exported_model_loads_in_the_engine_and_generates(run, tmp_path):
    _, _, output = run
    engine = Engine(device="cpu", output_dir=tmp_path)
    result = engine.generate(GenerationRequest(prompt="a blue square moving up on grey", model=str(output / "model"),
                                               steps=2, seed=1), tmp_path / "clip.mp4")
    info = read_video_info(result.video_path)
    assert (info.width, info.height, info.num_frames) == (64, 64, 9)  # the tiny preset's defaults
    assert result.metadata["model"]["preset"] == "tiny"


@pytest.mark.parametrize("task", TASKS)
def test_each_task_gives_the_model_the_right_frames(run, task):
    trainer, _, _ = run
    stage = trainer.recipe.stages[1]
    trainer._enter_stage(1)
    trainer.ratios = {name: float(name == task) for name in TASKS}
    batch = trainer.next_batch(stage)
    assert batch.tasks == [task] * 2
    given = batch.condition_mask[:, 0, :, 0, 0]  # (B, T): 9 frames -> 3 latent frames
    expected = {"t2v": [0, 0, 0], "i2v": [1, 0, 0], "first_last": [1, 0, 1], "multishot": [0, 0, 0]}
    for row in given.tolist():
        if task == "extend":
            assert row in ([1, 0, 0], [1, 1, 0])
        else:
            assert row == expected[task]
    assert torch.equal(batch.condition_latents * (1 - batch.condition_mask), torch.zeros_like(batch.latents))
    if task in ("i2v", "extend"):
        assert torch.equal(batch.condition_latents, batch.latents * batch.condition_mask)
    if task == "first_last":  # the last frame as the engine encodes it: after mid-grey frames, not after the clip
        assert torch.equal(batch.condition_latents[:, :, 0], batch.latents[:, :, 0])
        assert not torch.equal(batch.condition_latents[:, :, 2], batch.latents[:, :, 2])
        item = trainer.datasets["single"][0]
        one = trainer.builder.single([item], [("check", 0)], ["first_last"], (9, 32, 32), torch.Generator())
        window = encode_video(trainer.vae, first_last_window(item["video"])[None])
        assert torch.equal(one.condition_latents[:, :, 2], window[:, :, 2])
    if task == "multishot":
        assert batch.shot_latent_frames == [2, 1] and batch.text_lengths == [77, 77]
        assert batch.text.shape[1] == 154
    else:
        assert batch.shot_latent_frames is None
    loss = trainer.loss(batch)
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in trainer.trainable)
    trainer.optimizer.zero_grad(set_to_none=True)


class CountingDataset:
    """A dataset that records which items were read."""

    def __init__(self, dataset, reads: list):
        self.dataset, self.reads = dataset, reads

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.reads.append(index)
        return self.dataset[index]


@pytest.mark.parametrize("task", ["first_last", "multishot"])
def test_with_cached_latents_later_epochs_read_no_items_and_build_the_same_batches(run, task):
    trainer, _, _ = run
    trainer._enter_stage(1)
    stage = trainer.recipe.stages[1]
    size = (stage.frames, stage.height, stage.width)
    name = "multi" if task == "multishot" else "single"
    reads = []
    counting = CountingDataset(trainer.datasets[name], reads)

    def new_builder():
        return BatchBuilder(vae=trainer.vae, text_encoder=trainer.text_encoder, caption_dropout=0.5, cache_latents=True)

    def build(builder, dataset, indices, seed):
        items, keys = LazyItems(dataset, indices), [(name, i) for i in indices]
        generator = torch.Generator().manual_seed(seed)
        if task == "multishot":
            return builder.multishot(items, keys, size, generator)
        return builder.single(items, keys, [task] * len(indices), size, generator)

    builder = new_builder()
    batches = [[i, i + 1] for i in range(0, len(counting), 2)]
    for seed, indices in enumerate(batches):
        build(builder, counting, indices, seed)
    assert sorted(reads) == list(range(len(counting)))  # the first epoch reads each item once
    reads.clear()
    for seed, indices in enumerate(reversed(batches)):
        cached = build(builder, counting, indices, seed)
        fresh = build(new_builder(), trainer.datasets[name], indices, seed)
        for field, value in vars(fresh).items():
            assert torch.equal(getattr(cached, field), value) if torch.is_tensor(value) else getattr(cached, field) == value
    assert reads == []


def test_prefetch_caches_every_item_as_its_first_use_would_and_training_then_reads_none(tmp_path):
    recipe = load_recipe(RECIPE, output_dir=str(tmp_path / "run"))
    recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, cache_latents=True, prefetch_workers=2))
    trainer = fresh_trainer(recipe)
    trainer._enter_stage(1)  # 9 frames, every task: clips, first+last windows and two-shot items
    stage = recipe.stages[1]
    size = (stage.frames, stage.height, stage.width)
    lazily = BatchBuilder(vae=trainer.vae, text_encoder=trainer.text_encoder, caption_dropout=0.0, cache_latents=True)
    single, multi = trainer.datasets["single"], trainer.datasets["multi"]
    for i in range(len(single)):
        lazily.single([single[i]], [("single", i)], ["first_last"], size, torch.Generator())
    for i in range(len(multi)):
        lazily.multishot([multi[i]], [("multi", i)], size, torch.Generator())
    prefetched = trainer.builder._latents
    assert len(prefetched) == 2 * len(single) + 2 * len(multi) and prefetched.keys() == lazily._latents.keys()
    assert all(torch.equal(prefetched[key], lazily._latents[key]) for key in prefetched)
    reads = []
    trainer.datasets = {name: CountingDataset(dataset, reads) for name, dataset in trainer.datasets.items()}
    for task in TASKS:
        trainer.ratios = {name: float(name == task) for name in TASKS}
        trainer.next_batch(stage)
    assert reads == []


def test_caption_dropout_gives_empty_captions(run):
    trainer, _, _ = run
    trainer.builder.caption_dropout = 0.999
    trainer._enter_stage(1)
    trainer.ratios = {name: float(name == "t2v") for name in TASKS}
    batch = trainer.next_batch(trainer.recipe.stages[1])
    empty = trainer.builder.captions.get("")
    assert batch.text_mask.sum(dim=1).tolist() == [empty[1].sum().item()] * 2


def test_refuses_to_train_over_an_earlier_run_without_resume(run):
    trainer, _, output = run
    with pytest.raises(ValueError, match="already holds checkpoints; pass --resume"):
        fresh_trainer(trainer.recipe)


@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")  # RMSNorm's float32 weight
def test_bf16_autocast_runs_on_cpu(tmp_path):
    recipe = load_recipe(RECIPE, output_dir=str(tmp_path / "bf16"))
    stages = (dataclasses.replace(recipe.stages[1], steps=1),)
    recipe = dataclasses.replace(recipe, stages=stages, model=dataclasses.replace(recipe.model, mixed_precision="bf16"),
                                 validation=ValidationSettings())
    trainer = fresh_trainer(recipe)
    trainer.train()
    rows = list(csv.DictReader(open(tmp_path / "bf16" / "metrics.csv")))
    assert len(rows) == 1 and math.isfinite(float(rows[0]["loss"]))
    assert all(p.dtype == torch.float32 for p in trainer.trainable)
    AcceleratorState._reset_state(reset_partial_state=True)


def test_export_only_writes_the_newest_checkpoint_and_leaves_the_run_alone(run, tmp_path, capsys):
    from training.train import main

    _, _, output = run
    metrics_before = (output / "metrics.csv").read_bytes()
    checkpoints_before = sorted(p.name for p in checkpoint_dirs(output / "checkpoints"))
    AcceleratorState._reset_state(reset_partial_state=True)
    assert main(["--recipe", str(RECIPE), "--output-dir", str(output), "--export-only",
                 "--export-to", str(tmp_path / "snapshot")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "snapshot")
    weights = "transformer/diffusion_pytorch_model.safetensors"
    snapshot, final = load_file(tmp_path / "snapshot" / weights), load_file(output / "model" / weights)
    assert snapshot.keys() == final.keys()  # the last checkpoint is the end of the run: the same EMA weights
    assert all(torch.equal(snapshot[k], final[k]) for k in final)
    assert (output / "metrics.csv").read_bytes() == metrics_before
    assert sorted(p.name for p in checkpoint_dirs(output / "checkpoints")) == checkpoints_before


def test_export_only_without_a_checkpoint_is_an_error(tmp_path, capsys):
    from training.train import main

    assert main(["--recipe", str(RECIPE), "--output-dir", str(tmp_path / "empty"), "--export-only"]) == 2
    assert "--export-only: no checkpoint in" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "model").exists()
