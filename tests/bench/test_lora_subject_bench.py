"""The LoRA-subject benchmark: its footage is real own footage of the held-out photo under a made-up name, and a
whole run (footage, the studio's fine-tune recipe, training, the harness with and without the LoRA) writes what the
README quotes. Scores are not asserted on the untrained tiny model: its clips are noise."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.lora_subject import PHOTO, write_footage
from core.video_io import read_video_frames
from training.data.footage_scan import scan_footage
from training.eval.photo_subject import identify_photo

ROOT = Path(__file__).resolve().parents[2]


def test_footage_shows_the_held_out_photo_under_the_made_up_name(tmp_path):
    captions = write_footage(tmp_path, name="zorbly", clips=3, width=128, height=128, num_frames=9, fps=8.0)
    scan = scan_footage(tmp_path)
    assert not scan.skipped and len(scan.files) == 3
    assert sorted(f.caption for f in scan.files) == sorted(captions)
    for caption in captions:
        assert "zorbly" in caption and PHOTO not in caption  # the subject is known only by the made-up word
    for file in scan.files:
        frames, fps = read_video_frames(file.path)
        assert frames.shape == (9, 128, 128, 3) and fps == 8.0
        assert identify_photo(frames).photo == PHOTO  # the harness's detector sees the cat in the footage


@pytest.mark.slow
def test_a_whole_run_writes_training_time_and_both_harness_scores(tmp_path):
    out = tmp_path / "lora-subject.json"
    done = subprocess.run([sys.executable, "-m", "bench.lora_subject", "--model", "random:tiny", "--clips", "2",
                           "--steps", "2", "--count", "1", "--sampling-steps", "2", "--work-dir", str(tmp_path / "w"),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["train_seconds"] > 0 and result["lora_bytes"] > 0
    assert Path(result["lora_file"]).is_file()
    assert 0 <= result["found_without_lora"] <= 1 and 0 <= result["found_with_lora"] <= 1
    assert result["harness"]["sections"]["subject"]["prompt"] == "a photo of zorbly, the camera pans right"
    assert "| found without / with LoRA | closest photo is the subject without / with |" in done.stdout
    detector = result["detector"]
    for variant in ("without_lora", "with_lora"):
        assert 0 <= detector[variant]["closest_is_subject"] <= 1 and -2 <= detector[variant]["mean_score"] <= 1
    clips = result["harness"]["sections"]["subject"]["clips"]
    closest = [c["with_lora"]["closest"] == PHOTO for c in clips]
    assert detector["with_lora"]["closest_is_subject"] == sum(closest) / len(closest)
