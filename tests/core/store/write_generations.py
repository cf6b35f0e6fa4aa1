"""Run as a process by test_concurrent_writers: records COUNT generations through the job functions, the way a
worker would (enqueue, claim, progress, finish with a video), as fast as it can."""

import shutil
import sys
from pathlib import Path

from core.request import GenerationRequest
from core.store import Store
from core.store import queue
from core.store.jobs import enqueue_generation, record_finished_video


def main(data_dir: str, video: str, count: int, name: str) -> None:
    thumbnail = Path(video).with_suffix(".png").read_bytes()
    with Store.open(data_dir) as store:
        for i in range(count):
            request = GenerationRequest(prompt=f"{name} clip {i}", model="random:tiny", seed=i)
            generation_id = enqueue_generation(store, request, source=name)
            store.db.write(lambda s: queue.claim_next(s, queue.worker_id(), generation_id))
            for fraction in (0.25, 0.5, 0.75):
                store.db.write(lambda s: queue.report_progress(s, generation_id, fraction, "sampling"))
            staged = store.data_dir.staging / f"{name}-{i}.mp4"
            shutil.copyfile(video, staged)
            record_finished_video(store, generation_id, staged, {"seed": i}, thumbnail)
    print("ok", name)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
