"""Generation jobs run from the store with the real engine (random tiny model): recorded outputs, inputs kept,
failures and cancels recorded, and start-up recovery of jobs a dead process left running."""

import threading

import numpy as np
import pytest
from PIL import Image

from core.store import Store
from core.store import queue
from core.store.files import sha256_of_file
from core.store.jobs import (
    enqueue_generation,
    recover_jobs,
    run_job_now,
    run_next_job,
    staged_video_path,
    stored_request,
)
from core.store.schema import Generation
from core.video_io import read_video_info, read_video_metadata, write_video
from tests.core.engine_helpers import tiny_request


@pytest.fixture
def job_store(tmp_path):
    with Store.open(tmp_path / "data") as store:
        yield store


def tiny(**overrides):
    return tiny_request(**{"steps": 2, **overrides})


def job(store, generation_id):
    with store.db.session() as session:
        row = session.get(Generation, generation_id)
        session.expunge(row)
        return row


def test_a_finished_job_has_its_video_thumbnail_and_settings(job_store, engine):
    generation_id = enqueue_generation(job_store, tiny(seed=None), source="ui", client_id="browser-1")
    outcome = run_next_job(job_store, engine)
    assert outcome.status == "done" and outcome.generation_id == generation_id
    with job_store.db.session() as session:
        row = session.get(Generation, generation_id)
        video, thumbnail = job_store.asset_path(row.video), job_store.asset_path(row.thumbnail)
        assert row.status == "done" and row.progress == 1.0 and row.finished_at is not None
        assert row.source == "ui" and row.client_id == "browser-1"
        assert isinstance(row.seed, int)  # the random seed the engine drew is recorded
        assert row.result["seed"] == row.seed and row.request["seed"] is None
        assert len(row.weights_hash) == 64
        assert row.timings["total_s"] > 0
        assert sha256_of_file(video) == row.video.sha256
    assert read_video_metadata(video)["seed"] == row.seed
    info = read_video_info(video)
    assert (info.num_frames, info.width) == (row.result["request"]["num_frames"], row.result["request"]["width"])
    assert Image.open(thumbnail).size == (info.width, info.height)
    assert list(job_store.data_dir.staging.iterdir()) == []  # nothing left behind


def test_input_image_is_kept_with_the_job(job_store, engine, tmp_path):
    image_path = tmp_path / "first.png"
    Image.fromarray(np.full((40, 60, 3), (200, 30, 30), np.uint8)).save(image_path)
    generation_id = enqueue_generation(job_store, tiny(image=str(image_path)))
    image_path.unlink()  # the original is gone; the stored copy runs the job
    with job_store.db.session() as session:
        request = stored_request(job_store, session, generation_id)
    assert request.image is not None and request.image.startswith(str(job_store.data_dir.files))
    assert run_job_now(job_store, engine, generation_id).status == "done"
    assert job(job_store, generation_id).task == "image_to_video"


def test_a_failing_job_is_recorded_and_the_worker_goes_on(job_store, engine):
    bad = enqueue_generation(job_store, tiny(model="no-such-model"))
    good = enqueue_generation(job_store, tiny())
    first = run_next_job(job_store, engine)
    assert first.status == "failed" and "no-such-model" in first.error
    assert job(job_store, bad).status == "failed" and "no-such-model" in job(job_store, bad).error
    assert run_next_job(job_store, engine).status == "done"
    assert job(job_store, good).status == "done"
    assert run_next_job(job_store, engine) is None


def test_cancel_through_the_database_stops_a_running_job(job_store, engine, monkeypatch):
    # The job reads the database every PROGRESS_INTERVAL_S; on a fast machine 200 tiny steps outran one interval
    # and the job finished first. Here it reads it at every step and waits at step 2 until the cancel is written.
    monkeypatch.setattr("core.store.jobs.PROGRESS_INTERVAL_S", 0.0)
    generation_id = enqueue_generation(job_store, tiny(steps=200))
    started, written = threading.Event(), threading.Event()

    def on_progress(update):
        if update.stage == "sampling" and update.step >= 2 and not started.is_set():
            started.set()
            assert written.wait(60)

    def cancel_when_started():
        started.wait(60)
        with Store.open(job_store.data_dir.root) as other:  # as another process (the UI, the CLI) would
            other.db.write(lambda s: queue.request_cancel(s, generation_id))
        written.set()

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    outcome = run_job_now(job_store, engine, generation_id, on_progress=on_progress)
    canceller.join()
    assert outcome.status == "cancelled"
    row = job(job_store, generation_id)
    assert row.status == "cancelled" and row.video_asset_id is None and 0 < row.progress < 0.85
    assert list(job_store.data_dir.staging.iterdir()) == []


def claim_as_dead_worker(store, generation_id):
    store.db.write(lambda s: queue.claim_next(s, f"{queue.worker_id().rpartition(':')[0]}:{2**22 + 7}", generation_id))


def test_recovery_finishes_a_job_whose_video_was_complete(job_store, engine):
    generation_id = enqueue_generation(job_store, tiny())
    claim_as_dead_worker(job_store, generation_id)
    # The worker died after the engine renamed its finished video into staging, before recording it.
    frames = np.zeros((5, 32, 32, 3), np.uint8)
    write_video(frames, staged_video_path(job_store, generation_id), 8.0, {"seed": 11, "timings": {"total_s": 1.0}})
    assert recover_jobs(job_store) == {"done": [generation_id], "interrupted": []}
    row = job(job_store, generation_id)
    assert row.status == "done" and row.seed == 11 and row.video_asset_id is not None


def test_recovery_marks_a_cut_short_job_interrupted_and_removes_its_partial_file(job_store):
    generation_id = enqueue_generation(job_store, tiny())
    running = enqueue_generation(job_store, tiny(prompt="still running here"))
    claim_as_dead_worker(job_store, generation_id)
    job_store.db.write(lambda s: queue.claim_next(s, queue.worker_id(), running))  # this live process
    partial = job_store.data_dir.staging / f".gen-{generation_id}.1a2b3c4d.tmp.mp4"
    partial.write_bytes(b"\x00" * 1000)
    assert recover_jobs(job_store) == {"done": [], "interrupted": [generation_id]}
    assert job(job_store, generation_id).status == "interrupted"
    assert job(job_store, running).status == "running"  # a live worker's job is left alone
    assert not partial.exists()
    job_store.db.write(lambda s: queue.requeue(s, generation_id))
    assert job(job_store, generation_id).status == "queued"
