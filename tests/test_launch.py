"""The command line: `python launch.py generate ...` writes a clip, and says clearly what is wrong."""

import json
import sqlite3
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


def test_every_cli_generation_is_in_the_history(tmp_path):
    data = tmp_path / "data"
    done = launch("generate", "--model", "random:tiny", "--prompt", "a green star", "--seed", "4", "--steps", "1",
                  "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    refused = launch("generate", "--model", "random:tiny", "--prompt", "", "--data-dir", str(data))
    assert refused.returncode == 2  # refused input is not recorded
    listed = launch("history", "--json", "--data-dir", str(data))
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)["items"]
    assert [(i["prompt"], i["status"], i["seed"]) for i in items] == [("a green star", "done", 4)]
    assert read_video_metadata(items[0]["video"])["request"]["prompt"] == "a green star"
    assert launch("history", "--search", "star", "--data-dir", str(data)).stdout.count("a green star") == 1
    assert "(0 generations)" in launch("history", "--search", "circle", "--data-dir", str(data)).stdout


def test_doctor_and_backup(tmp_path):
    data = tmp_path / "data"
    assert launch("generate", "--model", "random:tiny", "--prompt", "a dot", "--steps", "1",
                  "--data-dir", str(data)).returncode == 0
    doctor = launch("doctor", "--data-dir", str(data))
    assert doctor.returncode == 0 and "integrity ok" in doctor.stdout, doctor.stdout + doctor.stderr
    backup = launch("backup", "--data-dir", str(data))
    assert backup.returncode == 0, backup.stderr
    database = Path(backup.stdout.split("database: ")[1].split()[0])
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("SELECT prompt FROM generations").fetchall() == [("a dot",)]


def test_no_subcommand_starts_the_studio_with_its_flags():
    import launch

    args = launch.parser().parse_args(["--port", "7999", "--auth", "me:secret", "--data-dir", "/tmp/x"])
    assert args.command is None and (args.port, args.auth, args.data_dir) == (7999, "me:secret", "/tmp/x")
    done = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    words = " ".join(done.stdout.split())  # argparse wraps lines
    assert done.returncode == 0 and "--share" in words and "starts the studio" in words


def test_sparse_attention_flags_reach_the_recorded_request(tmp_path):
    out = tmp_path / "clip.mp4"
    done = launch("generate", "--model", "random:tiny", "--prompt", "a blue square", "--seed", "3", "--steps", "4",
                  "--frames", "9", "--width", "64", "--height", "64", "--attention", "sparse", "--sparsity", "0.5",
                  "--sparse-block-size", "16", "--sparse-min-tokens", "0", "--sparse-search-steps", "2,3",
                  "--out", str(out))
    assert done.returncode == 0, done.stderr
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["request"]["attention"] == "sparse"
    assert sidecar["request"]["sparse_attention"]["search_steps"] == [2, 3]
    assert sidecar["attention"]["searches"] > 0 and sidecar["attention"]["mean_sparsity"] > 0


def test_sparse_flags_without_sparse_attention_are_refused(tmp_path):
    done = launch("generate", "--model", "random:tiny", "--prompt", "a blue square", "--sparsity", "0.5")
    assert done.returncode == 2
    assert "--sparsity: only with `--attention sparse`" in done.stderr
    bad = launch("generate", "--model", "random:tiny", "--prompt", "x", "--attention", "sparse", "--sparsity", "1.5")
    assert bad.returncode == 2 and "`sparsity` must be in [0, 1), got 1.5" in bad.stderr


def test_quant_the_cpu_cannot_run_is_refused_naming_mode_and_device():
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU machine runs nf4")
    done = launch("generate", "--model", "random:tiny", "--prompt", "a blue square", "--quant", "nf4")
    assert done.returncode == 2
    assert "quantization 'nf4' needs a CUDA GPU" in done.stderr and "this device is cpu" in done.stderr


def test_vae_tile_size_reaches_the_recorded_request_and_a_bad_one_is_named(tmp_path):
    out = tmp_path / "clip.mp4"
    done = launch("generate", "--model", "random:tiny", "--prompt", "a blue square", "--steps", "1",
                  "--vae-tile-size", "256", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.with_suffix(".json").read_text())["request"]["vae_tile_size"] == 256
    quantized = tmp_path / "text-int8.mp4"
    done = launch("generate", "--model", "random:tiny", "--prompt", "a blue square", "--steps", "1",
                  "--text-encoder-quant", "int8", "--out", str(quantized))
    assert done.returncode == 0, done.stderr
    sidecar = json.loads(quantized.with_suffix(".json").read_text())
    assert sidecar["request"]["text_encoder_quant"] == "int8"
    assert sidecar["quantization"]["text_encoder"]["mode"] == "int8"
    bad = launch("generate", "--model", "random:tiny", "--prompt", "x", "--vae-tile-size", "300")
    assert bad.returncode == 2 and "`vae_tile_size` must be a multiple of 16 pixels, got 300" in bad.stderr
