"""kill -9 a worker process in the middle of generations, again and again: after each restart the database is
sound, the killed job is interrupted (or done, if its video was complete), every done row has its whole file,
and no finished output is lost."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from core.request import GenerationRequest
from core.store import Store
from core.store import queue
from core.store.database import integrity_check
from core.store.files import sha256_of_file
from core.store.jobs import enqueue_generation, recover_jobs
from core.store.schema import Generation
from core.video_io import read_video_info

REPO = Path(__file__).resolve().parents[3]


def snapshot(store):
    """{id: (status, stage, video sha256 or None)} of every job."""
    with store.db.session() as session:
        return {
            job.id: (job.status, job.progress_stage, job.video.sha256 if job.video else None)
            for job in session.scalars(select(Generation))
        }


def start_worker(data_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "launch.py", "queue", "run", "--device", "cpu", "--data-dir", str(data_dir)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_until(condition, store, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = snapshot(store)
        if condition(jobs):
            return jobs
        time.sleep(0.01)
    raise AssertionError(f"timed out; jobs: {snapshot(store)}")


def check_consistent(store, done_before):
    assert integrity_check(store.db.engine) == "ok"
    jobs = snapshot(store)
    assert not [i for i, (status, _, _) in jobs.items() if status == "running"]
    with store.db.session() as session:
        for job in session.scalars(select(Generation).where(Generation.status == "done")):
            path = store.asset_path(job.video)
            assert path.is_file() and sha256_of_file(path) == job.video.sha256, f"job {job.id}: file missing or altered"
            assert read_video_info(path).num_frames > 0
    for generation_id, sha256 in done_before.items():  # nothing finished is ever lost
        assert jobs[generation_id][0] == "done" and jobs[generation_id][2] == sha256
    assert not list(store.data_dir.staging.glob(".*tmp*")), "a partial video survived recovery"
    return jobs


# Where each round kills the worker: while sampling, while decoding/writing, or just after a job finished.
KILL_POINTS = {
    "sampling": lambda jobs: any(s == "running" and stage == "sampling" for s, stage, _ in jobs.values()),
    "decoding": lambda jobs: any(s == "running" and stage == "decoding" for s, stage, _ in jobs.values()),
    "after a job": lambda jobs: sum(s == "done" for s, _, _ in jobs.values()) >= 1
    and any(s == "running" for s, _, _ in jobs.values()),
}


@pytest.mark.slow
def test_kill_9_during_generations_loses_nothing(tmp_path):
    data_dir = tmp_path / "data"
    with Store.open(data_dir) as store:
        ids = [enqueue_generation(store, GenerationRequest(prompt=f"a red circle {i}", model="random:tiny", seed=i,
                                                           steps=25, num_frames=33)) for i in range(8)]
        done_before: dict[int, str] = {}
        interrupted_seen = 0
        for round_index, (point, condition) in enumerate([*KILL_POINTS.items(), *list(KILL_POINTS.items())[:1]]):
            worker = start_worker(data_dir)
            try:
                wait_until(lambda jobs: condition(jobs) or worker.poll() is not None, store)
            finally:
                worker.send_signal(signal.SIGKILL)
                worker.wait()
            assert worker.returncode == -signal.SIGKILL, f"round {round_index}: the worker ended by itself"
            recovered = recover_jobs(store)  # what start-up does
            jobs = check_consistent(store, done_before)
            interrupted_seen += len(recovered["interrupted"])
            done_before = {i: sha for i, (status, _, sha) in jobs.items() if status == "done"}
            for generation_id in recovered["interrupted"]:
                store.db.write(lambda s, i=generation_id: queue.requeue(s, i))
            if len(done_before) == len(ids):
                break
        assert interrupted_seen >= 3  # the kills really landed inside generations
        final = start_worker(data_dir)
        _, err = final.communicate(timeout=300)
        assert final.returncode == 0, err
        jobs = check_consistent(store, done_before)
        assert {status for status, _, _ in jobs.values()} == {"done"}
        assert len({sha for _, _, sha in jobs.values()}) == len(ids)  # eight different clips, all kept
