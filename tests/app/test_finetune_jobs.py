"""Studio fine-tunes end to end on the random tiny model: uploaded clips become a LoRA run in a subprocess, its
metrics reach the store, the LoRA is registered and generates; cancelling stops the trainer; bad uploads write
nothing; runs left by a dead studio become interrupted."""

import os
import time
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image

from app.finetune_jobs import (
    cancel_finetune, finetune_status, recover_finetune_runs, run_folder, start_finetune,
)  # fmt: skip
from app.service import StudioService
from core.lora import check_lora_file, read_lora_info
from core.request import GenerationRequest, LoraSpec
from core.store.loras import list_loras, lora_path
from core.store.queue import worker_id
from core.store.schema import utc_now
from core.store.training_runs import (
    create_training_run, finish_training_run, get_training_run, list_training_runs, record_training_progress,
)  # fmt: skip
from core.video_io import write_video

BASE = "random:tiny"


def moving_square(path, shift: int, frames: int = 16):
    """A 64x64, 2-second clip at 8 fps of a red square crossing the frame."""
    video = np.zeros((frames, 64, 64, 3), np.uint8)
    for i in range(frames):
        x = (3 * i + shift) % 44
        video[i, 22:42, x:x + 20] = (220, 40, 40)
    return write_video(video, path, 8.0)


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    """What a browser uploads: three clips and an image, each in its own folder as Gradio keeps them."""
    root = tmp_path_factory.mktemp("uploads")
    paths = []
    for k in range(3):
        (root / str(k)).mkdir()
        paths.append(moving_square(root / str(k) / f"square {k}.mp4", 7 * k))
    (root / "3").mkdir()
    image = np.zeros((64, 64, 3), np.uint8)
    image[10:30, 10:30] = (220, 40, 40)
    Image.fromarray(image).save(root / "3" / "still.png")
    return [*paths, root / "3" / "still.png"]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    studio = StudioService.open(tmp_path_factory.mktemp("data"), device="cpu", model=BASE)
    yield studio
    studio.close()


def wait_finished(service, run_id, timeout=240.0):
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = finetune_status(service, run_id)
        if not seen or seen[-1] != status.status:
            seen.append(status.status)
        if status.finished:
            return status, seen
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish within {timeout} s: {seen}\n"
                         f"{run_folder(service.store, run_id).log_tail()}")


@pytest.fixture(scope="module")
def trained(service, uploads):
    started = time.monotonic()
    run_id = start_finetune(service, name="Red square", files=[str(p) for p in uploads],
                            captions={"square 0.mp4": "a red square sliding right", "still.png": ""},
                            base_model=BASE, steps=4, rank=4, learning_rate=1e-3, trigger="sqr", threads=1)
    status, seen = wait_finished(service, run_id)
    return run_id, status, seen, time.monotonic() - started


@pytest.mark.slow
def test_a_run_trains_records_its_metrics_and_registers_its_lora(service, trained):
    run_id, status, seen, seconds = trained
    assert seen[0] == "running" and seen[-1] == "done", (seen, status.error)
    assert status.step == status.total_steps == 4 and status.progress == 1.0
    assert [step for step, _ in status.losses] == [1, 2, 3, 4]
    assert all(np.isfinite(loss) and loss > 0 for _, loss in status.losses)
    with service.store.db.read() as session:
        run = get_training_run(session, run_id)
        assert run.kind == "lora" and run.base_model == BASE and run.error == ""
        assert [m["step"] for m in run.metrics] == [1, 2, 3, 4] and "seconds_per_step" in run.metrics[0]
        (lora,) = list_loras(session)
        path = lora_path(service.store, session, lora.id)
        assert lora.training_run_id == run_id and lora.name == "Red square" and lora.base_model == BASE
        assert lora.trigger == "sqr" and lora.info["rank"] == 4 and lora.info["steps"] == 4
        assert status.lora_id == lora.id
    check_lora_file("lora", path, 1.0)
    trained_file = run_folder(service.store, run_id).lora_file("Red-square")
    assert read_lora_info(trained_file)["base_model"] == BASE and read_lora_info(trained_file)["rank"] == 4
    assert status.validation_clips and status.validation_clips[-1].stat().st_size > 0
    print(f"tiny fine-tune, 4 steps, start to registered LoRA: {seconds:.1f} s")


@pytest.mark.slow
def test_footage_is_copied_under_safe_names_with_captions_that_carry_the_trigger(service, trained):
    run_id = trained[0]
    footage = run_folder(service.store, run_id).footage
    names = sorted(p.name for p in footage.iterdir())
    assert names == ["000-square-0.mp4", "000-square-0.txt", "001-square-1.mp4", "001-square-1.txt",
                     "002-square-2.mp4", "002-square-2.txt", "003-still.png", "003-still.txt"]
    assert (footage / "000-square-0.txt").read_text() == "sqr a red square sliding right\n"
    assert (footage / "001-square-1.txt").read_text() == "sqr square 1\n"  # no caption given: the file name
    assert (footage / "003-still.txt").read_text() == "sqr still\n"
    recipe = get_recipe(service, run_id)
    assert [(s["name"], s["frames"]) for s in recipe["stages"]] == [("images", 1), ("video", 9)]


def get_recipe(service, run_id):
    with service.store.db.read() as session:
        return get_training_run(session, run_id).recipe["recipe"]


@pytest.mark.slow
def test_the_registered_lora_generates(service, trained):
    with service.store.db.read() as session:
        (lora,) = list_loras(session, base_model=BASE)
        path = lora_path(service.store, session, lora.id)
    request = GenerationRequest(prompt="sqr a red square", model=BASE, steps=2, num_frames=5, seed=1,
                                loras=(LoraSpec(path=str(path), strength=1.0),))
    job = service.wait(service.submit(request), timeout=180)
    assert job.status == "done", job.error
    assert job.video_path.is_file()


def test_cancel_stops_the_trainer_and_odd_names_stay_inside_the_run(service, uploads, tmp_path):
    odd = tmp_path / "..\\..\\evil name.mp4"  # a legal file name on Linux that looks like a path elsewhere
    odd.write_bytes(uploads[0].read_bytes())
    before = set(service.store.data_dir.root.rglob("*"))
    run_id = start_finetune(service, name="../../escape", files=[str(odd)], captions={}, base_model=BASE,
                            steps=2000, rank=2, threads=1)
    folder = run_folder(service.store, run_id)
    with pytest.raises(ValueError, match="is still training"):
        start_finetune(service, name="second", files=[str(odd)], captions={}, base_model=BASE, steps=2, rank=2)
    pid = int(folder.pid.read_text())
    assert cancel_finetune(service, run_id) == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the monitor waited for it: gone, not a zombie
    assert finetune_status(service, run_id).lora_id is None
    written = set(service.store.data_dir.root.rglob("*")) - before
    outside = [p for p in written if not p.is_relative_to(folder.root) and "kelp.db" not in p.name]
    assert outside == [], outside
    assert sorted(p.name for p in folder.footage.iterdir()) == ["000-evil-name.mp4", "000-evil-name.txt"]
    assert get_recipe(service, run_id)["name"] == "escape"


@pytest.mark.parametrize("files, message", [
    ([], "`files` must list at least one video or image"),
    (["notes.txt"], "is not a video or image"),
    (["fake.mp4"], "`files` hold no readable video or image"),
    (["missing.mp4"], "is not an existing file"),
    (["short.mp4"], "every video is shorter than 5 frames at 8 fps"),
])  # fmt: skip
def test_bad_uploads_are_refused_and_write_nothing(service, tmp_path, files, message):
    (tmp_path / "notes.txt").write_text("not footage")
    (tmp_path / "fake.mp4").write_text("not a video either")
    moving_square(tmp_path / "short.mp4", 0, frames=3)  # 0.375 s
    training = service.store.data_dir.training
    before, runs_before = sorted(training.iterdir()), runs_count(service)
    with pytest.raises(ValueError, match=message):
        start_finetune(service, name="bad", files=[str(tmp_path / f) for f in files], captions={}, base_model=BASE,
                       steps=2, rank=2)
    assert sorted(training.iterdir()) == before and runs_count(service) == runs_before


@pytest.mark.parametrize("settings, message", [
    ({"steps": 0}, "`steps` must be a whole number from 1"),
    ({"rank": 1000}, "`rank` must be a whole number from 1 to 128"),
    ({"base_model": "no-such-model"}, "`base_model` 'no-such-model' is not a model"),
    ({"name": "  "}, "`name` must be a non-empty text"),
    ({"trigger": "two\nlines"}, "`trigger` must be one line"),
    ({"captions": {"square 0.mp4": "x" * 2000}}, r"`captions\['square 0.mp4'\]` must be a text of at most 1000"),
])  # fmt: skip
def test_bad_settings_are_refused_and_write_nothing(service, uploads, settings, message):
    training = service.store.data_dir.training
    before = sorted(training.iterdir())
    arguments = dict(name="ok", files=[str(uploads[0])], captions={}, base_model=BASE, steps=2, rank=2) | settings
    with pytest.raises(ValueError, match=message):
        start_finetune(service, **arguments)
    assert sorted(training.iterdir()) == before


def runs_count(service):
    with service.store.db.read() as session:
        return len(list_training_runs(session, include_deleted=True))


def test_runs_left_by_a_dead_studio_become_interrupted(service):
    def make(session):
        dead = create_training_run(session, "dead studio", total_steps=10).id
        record_training_progress(session, dead, step=3, worker="elsewhere:1")
        get_training_run(session, dead).heartbeat_at = utc_now() - timedelta(hours=1)
        never_started = create_training_run(session, "never started", total_steps=10).id
        alive = create_training_run(session, "this studio", total_steps=10).id
        record_training_progress(session, alive, step=1, worker=worker_id())
        return dead, never_started, alive

    dead, never_started, alive = service.store.db.write(make)
    assert sorted(recover_finetune_runs(service.store)) == sorted([dead, never_started])
    assert finetune_status(service, dead).status == "interrupted"
    assert "studio stopped" in finetune_status(service, dead).error
    assert finetune_status(service, alive).status == "running"
    service.store.db.write(lambda session: finish_training_run(session, alive, "cancelled"))


def test_a_trainer_whose_studio_dies_stops_by_itself(tmp_path):
    """The trainer watches its parent: a studio killed with SIGKILL leaves no trainer running."""
    import signal
    import subprocess
    import sys

    pid_file, recipe = tmp_path / "trainer.pid", tmp_path / "long.toml"
    recipe.write_text(f'name = "long"\noutput_dir = "{tmp_path / "out"}"\n[model]\npreset = "tiny"\n'
                      '[[stages]]\nsteps = 100000\nwidth = 32\nheight = 32\nframes = 1\n')  # would run for hours
    studio = subprocess.Popen(  # stands in for the studio: starts the trainer as its child, then waits
        ["bash", "-c", f'"{sys.executable}" -m app.finetune_train --recipe "{recipe}" --parent-pid $$ & '
                       f'echo $! > "{pid_file}"; wait'], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 10
    while not pid_file.is_file() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    trainer = int(pid_file.read_text())
    studio.send_signal(signal.SIGKILL)
    studio.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(trainer, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"trainer {trainer} still runs after its studio died")
