"""The job queue's state changes on a real SQLite file: order, claiming, places, cancel, requeue, dead workers."""

import os
import threading
from datetime import timedelta

import pytest

from core.store import Store
from core.store import queue
from core.store.schema import Generation, utc_now


@pytest.fixture
def job_store(tmp_path):
    with Store.open(tmp_path / "data") as store:
        yield store


def add_jobs(store, count, **values):
    def add(session):
        ids = []
        for i in range(count):
            job = Generation(request={"prompt": f"job {i}"}, prompt=f"job {i}", status="queued",
                             queue_position=queue.next_queue_position(session), **values)
            session.add(job)
            session.flush()
            ids.append(job.id)
        return ids

    return store.db.write(add)


def status_of(store, generation_id):
    with store.db.session() as session:
        return session.get(Generation, generation_id).status


def test_jobs_are_claimed_in_queue_order_once(job_store):
    ids = add_jobs(job_store, 3)
    claimed = [job_store.db.write(lambda s: queue.claim_next(s, "w:1")) for _ in range(4)]
    assert [job.id for job in claimed[:3]] == ids
    assert claimed[3] is None
    assert all(status_of(job_store, i) == "running" for i in ids)


def test_two_threads_never_claim_the_same_job(job_store):
    ids = add_jobs(job_store, 40)
    claims: list[list[int]] = [[], []]

    def worker(index):
        with Store.open(job_store.data_dir.root) as store:
            while (job := store.db.write(lambda s: queue.claim_next(s, f"w:{index}"))) is not None:
                claims[index].append(job.id)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claims[0] + claims[1]) == ids
    assert not set(claims[0]) & set(claims[1])


def test_queue_place_and_moving_a_job(job_store):
    a, b, c = add_jobs(job_store, 3)
    with job_store.db.session() as session:
        assert [queue.queue_place(session, i) for i in (a, b, c)] == [1, 2, 3]
        queue.move_in_queue(session, c, before_id=a)
    with job_store.db.session() as session:
        assert [queue.queue_place(session, i) for i in (c, a, b)] == [1, 2, 3]
        queue.move_in_queue(session, c, before_id=None)
    job_store.db.write(lambda s: queue.claim_next(s, "w:1"))
    with job_store.db.session() as session:
        assert queue.queue_place(session, a) == 0  # running
        assert [queue.queue_place(session, i) for i in (b, c)] == [1, 2]
        assert [job.id for job in queue.queued_jobs(session)] == [a, b, c]


def test_cancel_a_queued_job_at_once_and_a_running_one_by_request(job_store):
    a, b = add_jobs(job_store, 2)
    job_store.db.write(lambda s: queue.claim_next(s, "w:1", a))
    assert job_store.db.write(lambda s: queue.request_cancel(s, b)) == "cancelled"
    assert job_store.db.write(lambda s: queue.request_cancel(s, a)) == "running"
    with job_store.db.session() as session:
        assert queue.cancel_requested(session, a)
        assert not queue.cancel_requested(session, b)
        assert queue.queue_place(session, b) is None


def test_requeue_only_finished_jobs_and_to_the_end(job_store):
    a, b = add_jobs(job_store, 2)
    with pytest.raises(ValueError, match="re-queued.*'queued'"):
        job_store.db.write(lambda s: queue.requeue(s, a))
    job_store.db.write(lambda s: queue.request_cancel(s, a))
    job = job_store.db.write(lambda s: queue.requeue(s, a))
    assert job.status == "queued"
    with job_store.db.session() as session:
        assert [j.id for j in queue.queued_jobs(session)] == [b, a]
    with pytest.raises(ValueError, match="existing generation but is 999"):
        job_store.db.write(lambda s: queue.requeue(s, 999))


def test_dead_workers_are_found_by_pid_and_by_silence(job_store):
    live, gone, silent = add_jobs(job_store, 3)
    me = queue.worker_id()
    host = me.rpartition(":")[0]
    job_store.db.write(lambda s: queue.claim_next(s, me, live))
    job_store.db.write(lambda s: queue.claim_next(s, f"{host}:{2**22 + 12345}", gone))  # no such pid
    job_store.db.write(lambda s: queue.claim_next(s, me, silent))

    def go_silent(session):
        session.get(Generation, silent).heartbeat_at = utc_now() - queue.STALE_AFTER - timedelta(seconds=1)

    job_store.db.write(go_silent)
    with job_store.db.session() as session:
        assert sorted(job.id for job in queue.dead_running_jobs(session)) == [gone, silent]
    assert queue.worker_is_dead(f"otherhost:{os.getpid()}", utc_now()) is False  # another host: trust heartbeats


def test_a_reader_does_not_wait_for_a_writer(job_store):
    (a,) = add_jobs(job_store, 1)
    with job_store.db.session() as writing:  # holds the write lock
        writing.get(Generation, a).prompt = "changed, not committed"
        writing.flush()
        with job_store.db.read() as reading:  # would block for the busy timeout under BEGIN IMMEDIATE
            assert reading.get(Generation, a).prompt == "job 0"


def test_unknown_status_is_named(job_store):
    with pytest.raises(ValueError, match="'sleeping'"):
        queue.check_status("sleeping")
