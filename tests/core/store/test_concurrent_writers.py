"""Two processes record 200 generations each into one database at the same time: every row arrives, and no
"database is locked" reaches them."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from core.store import Store
from core.store.database import integrity_check
from core.store.schema import Generation
from core.video_io import write_video

WRITER = Path(__file__).with_name("write_generations.py")
REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_two_processes_write_200_generations_each(tmp_path):
    data_dir = tmp_path / "data"
    Store.open(data_dir).close()  # migrate once, as start-up does
    video = tmp_path / "clip.mp4"
    write_video(np.zeros((1, 16, 16, 3), np.uint8), video, 8.0)
    Image.new("RGB", (16, 16)).save(video.with_suffix(".png"))  # the thumbnail, made once (reading it is ffmpeg's job)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    writers = [
        subprocess.Popen([sys.executable, str(WRITER), str(data_dir), str(video), "200", name], env=env, cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("alpha", "beta")
    ]
    results = [writer.communicate(timeout=600) for writer in writers]
    for writer, (out, err) in zip(writers, results):
        assert writer.returncode == 0, err
        assert "locked" not in err.lower()
    with Store.open(data_dir) as store:
        assert integrity_check(store.db.engine) == "ok"
        with store.db.session() as session:
            for name in ("alpha", "beta"):
                rows = session.execute(select(Generation.prompt, Generation.status).where(Generation.source == name)).all()
                assert sorted(prompt for prompt, _ in rows) == sorted(f"{name} clip {i}" for i in range(200))
                assert {status for _, status in rows} == {"done"}
            assert session.scalar(select(func.count()).select_from(Generation).where(Generation.video_asset_id.is_(None))) == 0
