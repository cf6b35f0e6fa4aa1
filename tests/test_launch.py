"""The command line: `python launch.py generate ...` writes a clip, and says clearly what is wrong."""

import json
import subprocess
import sys
from pathlib import Path

from core.video_io import read_video_info, read_video_metadata

ROOT = Path(__file__).resolve().parents[1]


def launch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_generate_writes_clip_and_sidecar(tmp_path):
    out = tmp_path / "clip.mp4"
    done = launch("generate", "--model", "random:tiny", "--prompt", "a blue square", "--seed", "3",
                  "--steps", "2", "--seconds", "1", "--fps", "8", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "seed 3" in done.stdout and "sampling" in done.stderr  # tqdm draws on stderr
    assert read_video_info(out).num_frames == 9  # 1 s at 8 fps -> nearest 1 + 4k
    assert read_video_metadata(out)["request"]["prompt"] == "a blue square"
    assert json.loads(out.with_suffix(".json").read_text())["seed"] == 3


def test_generate_multishot_from_json(tmp_path):
    shots = tmp_path / "shots.json"
    shots.write_text(json.dumps({"subject": "a red circle", "shots": [
        {"prompt": "it rests", "num_frames": 5}, {"prompt": "it moves left", "num_frames": 5}]}))
    out = tmp_path / "story.mp4"
    done = launch("generate", "--model", "random:tiny", "--shots", str(shots), "--steps", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert read_video_info(out).num_frames == 10
    assert read_video_metadata(out)["task"] == "multishot"


def test_bad_input_exits_2_with_a_named_field(tmp_path):
    done = launch("generate", "--model", "random:tiny", "--prompt", "x", "--frames", "10", "--out", str(tmp_path / "a.mp4"))
    assert done.returncode == 2
    assert "error: `num_frames` must be 1 + 4k" in done.stderr and "got 10" in done.stderr
    assert not (tmp_path / "a.mp4").exists()
    done = launch("generate", "--model", "nope", "--prompt", "x", "--out", str(tmp_path / "a.mp4"))
    assert done.returncode == 2 and "`model` 'nope'" in done.stderr


def test_no_subcommand_says_what_to_do():
    done = launch()
    assert done.returncode == 2 and "launch.py generate --help" in done.stderr
