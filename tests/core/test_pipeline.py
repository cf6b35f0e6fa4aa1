"""The engine end to end on the random `tiny` preset: every task, determinism, cancel, files, metadata."""

import json
import shutil
import subprocess
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from core.cancellation import GenerationCancelled
from core.conditioning import frames_to_video_tensor, load_image_frame, video_tensor_to_frames
from core.models.vae import decode_latents, encode_video
from core.pipeline import Engine
from core.request import GenerationRequest, ShotSpec
from core.video_io import read_video_frames, read_video_metadata
from tests.core.engine_helpers import decoded_frames as frames_of, tiny_request

MODEL = "random:tiny"


def request(**overrides) -> GenerationRequest:
    return tiny_request(**{"model": MODEL, "seed": 7, **overrides})


@pytest.fixture
def photo(tmp_path) -> str:
    """A 150x90 photo-like image: neither the output size nor its aspect."""
    y, x = np.mgrid[0:90, 0:150]
    pixels = np.stack([x * 255 // 150, y * 255 // 90, (x + y) % 256], axis=-1).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def ffprobe(path) -> dict:
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def test_text_to_video_writes_a_browser_playable_mp4_with_metadata(engine, tmp_path):
    progress = []
    result = engine.generate(request(), tmp_path / "clip.mp4", on_progress=progress.append, gif=True)
    probe = ffprobe(result.video_path)
    stream = probe["streams"][0]
    assert (stream["codec_name"], stream["pix_fmt"]) == ("h264", "yuv420p")
    assert (stream["width"], stream["height"], int(stream["nb_read_frames"])) == (64, 64, 9)
    embedded = read_video_metadata(result.video_path)
    assert embedded["seed"] == 7 and embedded["request"]["prompt"] == "a red circle moving left"
    assert embedded["model"]["weights_sha256"] == result.metadata["model"]["weights_sha256"]
    assert len(embedded["model"]["weights_sha256"]) == 64
    sidecar = json.loads(result.metadata_path.read_text())
    assert sidecar["request"] == embedded["request"] and "total_s" in sidecar["timings"]
    assert sidecar["settings"]["vae_dtype"] == str(engine.vae_dtype) == "torch.float32"  # CPU: full precision
    assert result.gif_path.is_file() and result.gif_path.stat().st_size > 0
    sampling = [p for p in progress if p.stage == "sampling"]
    assert [p.step for p in sampling] == [0, 1, 2, 3] and sampling[-1].total == 3
    assert sampling[-1].eta_s == 0 and sampling[1].eta_s is not None
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_same_seed_same_video_bit_for_bit(engine):
    first, second = frames_of(engine, request()), frames_of(engine, request())
    assert first.shape == (9, 64, 64, 3) and np.array_equal(first, second)
    assert not np.array_equal(first, frames_of(engine, request(seed=8)))


def test_random_seed_is_chosen_and_reported(engine):
    sampled = engine.sample(request(seed=None))
    assert isinstance(sampled.seed, int)
    again = engine.sample(request(seed=sampled.seed))
    assert torch.equal(sampled.latents, again.latents)


def test_cancel_stops_within_one_step(engine, tmp_path):
    calls = []
    transformer = engine.model(engine.validate(request()).model).transformer
    hook = transformer.register_forward_hook(lambda *_: calls.append(1))
    cancel = threading.Event()

    def cancel_after_first_step(progress):
        if progress.stage == "sampling" and progress.step == 1:
            cancel.set()

    try:
        with pytest.raises(GenerationCancelled):
            engine.generate(request(steps=50), tmp_path / "never.mp4", on_progress=cancel_after_first_step, cancel=cancel)
    finally:
        hook.remove()
    assert len(calls) == 1
    assert not list(tmp_path.iterdir())


def test_image_to_video_first_frame_is_the_image_through_the_vae(engine, photo):
    frames = frames_of(engine, request(image=photo))
    vae = engine.model(engine.validate(request()).model).vae
    fitted = load_image_frame(photo, 64, 64)[None]  # (1, H, W, 3)
    with torch.inference_mode():
        through_vae = video_tensor_to_frames(decode_latents(vae, encode_video(vae, frames_to_video_tensor(fitted)))[0])
    assert np.array_equal(frames[0], through_vae[0])
    unconditioned = frames_of(engine, request())
    assert not np.array_equal(frames[0], unconditioned[0])


def test_image_is_scaled_to_cover_and_centre_cropped(photo):
    fitted = load_image_frame(photo, 64, 64)
    assert fitted.shape == (64, 64, 3)
    # 150x90 -> 107x64, centre crop keeps columns ~21..85 of the scaled image: the left edge is not black-red.
    assert fitted[:, 0, 0].mean() > 40


def test_first_and_last_frame(engine, photo, tmp_path):
    other = tmp_path / "last.png"
    Image.new("RGB", (40, 40), (10, 200, 30)).save(other)
    frames = frames_of(engine, request(image=photo, last_image=str(other)))
    assert frames.shape == (9, 64, 64, 3)
    plain = frames_of(engine, request(image=photo))
    assert np.array_equal(frames[0], plain[0]) and not np.array_equal(frames[-1], plain[-1])


def test_extend_appends_to_the_clip(engine, tmp_path):
    clip = engine.generate(request(num_frames=9), tmp_path / "clip.mp4").video_path
    result = engine.generate(request(extend_video=str(clip), num_frames=13, extend_context_frames=5),
                             tmp_path / "longer.mp4")
    original, _ = read_video_frames(clip)
    extended, _ = read_video_frames(result.video_path)
    assert len(extended) == 9 + 13 - 5
    assert np.abs(extended[:9].astype(int) - original.astype(int)).mean() < 3  # the clip itself, re-encoded


def test_multishot_rerender_of_shot_two_keeps_shot_one(engine, tmp_path):
    shots = (ShotSpec("a red circle", 5), ShotSpec("the circle moves left", 9))
    first = frames_of(engine, request(prompt="a red circle", shots=shots))
    assert first.shape == (14, 64, 64, 3)
    changed = (shots[0], ShotSpec("the circle grows", 9))
    second = frames_of(engine, request(prompt="a red circle", shots=changed))
    assert np.array_equal(first[:5], second[:5])
    assert not np.array_equal(first[5:], second[5:])


@pytest.mark.parametrize("sampler, calls", [("euler", 3), ("heun", 5), ("unipc", 3)])
def test_samplers(engine, sampler, calls):
    counted = []
    transformer = engine.model(engine.validate(request()).model).transformer
    hook = transformer.register_forward_hook(lambda *_: counted.append(1))
    try:
        sampled = engine.sample(request(sampler=sampler))
    finally:
        hook.remove()
    assert len(counted) == calls and torch.isfinite(sampled.latents).all()


def test_guidance_one_runs_a_single_branch(engine):
    shapes = []
    transformer = engine.model(engine.validate(request()).model).transformer
    hook = transformer.register_forward_hook(lambda module, args, out: shapes.append(args[0].shape[0]))
    try:
        engine.sample(request(guidance_scale=1.0))
        engine.sample(request(guidance_scale=4.0))
    finally:
        hook.remove()
    assert shapes == [1] * 3 + [2] * 3


def test_bad_request_fails_before_loading_weights(tmp_path):
    fresh = Engine(device="cpu", output_dir=tmp_path)
    with pytest.raises(ValueError, match="num_frames"):
        fresh.generate(request(num_frames=10))
    assert fresh._models == {} and not list(tmp_path.iterdir())
