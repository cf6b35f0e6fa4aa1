"""Tests for training.data.footage: scanning and captions, fps resampling, clip splitting, buckets, caching."""

import os
import shutil
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from core.models.vae import build_vae, encode_video
from core.text.encoder import MiniLMTextEncoder
from core.video_io import write_gif, write_video
from training.data.footage import (
    DEFAULT_BUCKETS,
    BucketBatchSampler,
    FootageDataset,
    cache_footage,
    make_buckets,
    scan_footage,
)

WIDTH, HEIGHT = 160, 96  # the wide default bucket, so video frames are never rescaled
BANDS = 8  # a frame's index is drawn as 8 horizontal bands, white for a 1 bit: survives lossy codecs


def numbered_frames(count: int) -> np.ndarray:
    """uint8 (count, 96, 160, 3): frame i shows i in binary, least significant bit in the top band."""
    frames = np.zeros((count, HEIGHT, WIDTH, 3), np.uint8)
    band = HEIGHT // BANDS
    for i in range(count):
        for bit in range(BANDS):
            if i >> bit & 1:
                frames[i, bit * band:(bit + 1) * band] = 255
    return frames


def frame_numbers(video: torch.Tensor) -> list[int]:
    """The numbers drawn by numbered_frames, read back from a (3, F, 96, 160) clip in [-1, 1]."""
    band = HEIGHT // BANDS
    centres = video.mean(dim=(0, 3))[:, band // 2::band]  # (F, BANDS): each band's middle row
    return [sum(1 << bit for bit in range(BANDS) if row[bit] > 0) for row in centres]


def write_with_ffmpeg(path: Path, frames: np.ndarray, fps: float, codec: str) -> None:
    writer = imageio_ffmpeg.write_frames(
        str(path), (frames.shape[2], frames.shape[1]), fps=fps, codec=codec, macro_block_size=1,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def has_vp9() -> bool:
    import subprocess

    encoders = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-encoders"],
                              capture_output=True, text=True).stdout
    return "libvpx-vp9" in encoders


def two_colour_image(width: int, height: int) -> Image.Image:
    """Red left half, blue right half: shows where a centre crop cut."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2:] = (0, 0, 255)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> Path:
    """A folder of good footage captioned three ways, plus broken and uncaptioned files."""
    root = tmp_path_factory.mktemp("footage")
    write_video(numbered_frames(72), root / "long.mp4", fps=24)  # 3 s at 24 fps
    (root / "long.txt").write_text("a long numbered clip\n")
    two_colour_image(200, 100).save(root / "wide.png")  # 2:1
    (root / "wide.txt").write_text("red and blue")
    two_colour_image(90, 170).convert("RGB").save(root / "tall.jpg", quality=95)  # odd, portrait
    if has_vp9():
        write_with_ffmpeg(root / "short.webm", numbered_frames(15), 15, "libvpx-vp9")  # 1 s at 15 fps
    (root / "metadata.csv").write_text(
        'file_name,caption\nshort.webm,"a webm, with a comma"\ntall.jpg,a tall picture\ngone.mp4,never there\n'
    )
    clips = root / "clips"
    clips.mkdir()
    write_gif(numbered_frames(10), clips / "anim.gif", fps=10)  # 1 s at 10 fps
    write_with_ffmpeg(clips / "short.mov", numbered_frames(15), 15, "libx264")  # 1 s at 15 fps
    (clips / "metadata.jsonl").write_text(
        '{"file_name": "anim.gif", "caption": "a gif"}\n{"file_name": "short.mov", "caption": "a mov"}\n'
    )

    # Broken, each with a caption so that only the damage can be the reason.
    (root / "random.mp4").write_bytes(np.random.default_rng(0).bytes(20_000))
    data = (root / "long.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "empty.mov").write_bytes(b"")
    (root / "text.png").write_text("this is not a picture")
    for name in ("random", "truncated", "empty", "text"):
        (root / f"{name}.txt").write_text("a caption")
    write_video(numbered_frames(9), root / "uncaptioned.mp4", fps=8)
    (root / "orphan.txt").write_text("a caption with no video")

    outside = tmp_path_factory.mktemp("outside")
    shutil.copy(root / "long.mp4", outside / "elsewhere.mp4")
    (root / "linked.mp4").symlink_to(outside / "elsewhere.mp4")
    (root / "linked.txt").write_text("a caption")
    return root


def test_scan_finds_captions_from_every_source_and_reports_broken_files(footage):
    scan = scan_footage(footage)
    found = {f.path.relative_to(footage).as_posix(): f for f in scan.files}
    expected = {"long.mp4": "a long numbered clip", "wide.png": "red and blue", "tall.jpg": "a tall picture",
                "clips/anim.gif": "a gif", "clips/short.mov": "a mov"}
    if (footage / "short.webm").exists():
        expected["short.webm"] = "a webm, with a comma"
    assert {name: f.caption for name, f in found.items()} == expected
    assert found["long.mp4"].caption_source.endswith("long.txt")
    assert found["tall.jpg"].caption_source.endswith("metadata.csv")
    assert found["clips/anim.gif"].caption_source.endswith("metadata.jsonl")
    assert (found["long.mp4"].fps, found["long.mp4"].num_frames) == (24.0, 72)
    assert (found["tall.jpg"].kind, found["tall.jpg"].width, found["tall.jpg"].height) == ("image", 90, 170)

    reasons = {p.relative_to(footage).as_posix(): why for p, why in scan.skipped}
    assert "unreadable video" in reasons["random.mp4"]
    assert "damaged video" in reasons["truncated.mp4"] and "partial file" in reasons["truncated.mp4"]
    assert reasons["empty.mov"] == "empty file"
    assert "unreadable image" in reasons["text.png"]
    assert "no caption" in reasons["uncaptioned.mp4"]
    assert "no video or image" in reasons["orphan.txt"]
    assert "metadata.csv" in reasons["gone.mp4"]
    assert "outside the folder" in reasons["linked.mp4"]
    assert "linked.mp4" not in found


def test_default_caption_fills_in_missing_captions(footage):
    scan = scan_footage(footage, default_caption="sks footage")
    by_name = {f.path.name: f for f in scan.files}
    assert by_name["uncaptioned.mp4"].caption == "sks footage"
    assert by_name["uncaptioned.mp4"].caption_source == "default_caption"
    assert by_name["long.mp4"].caption == "a long numbered clip"  # a real caption still wins


def test_fps_resampling_picks_source_frames_by_timestamp(footage):
    dataset = FootageDataset(footage, fps=8, num_frames=17)
    index = next(i for i, c in enumerate(dataset.clips) if c.source.name == "long.mp4")
    assert [c.source.name for c in dataset.clips].count("long.mp4") == 1  # 24 frames at 8 fps: one window of 17
    item = dataset[index]
    # 24 fps to 8 fps: target frame j at j/8 s is source frame 3j.
    assert frame_numbers(item["video"]) == [3 * j for j in range(17)]
    assert item["start_s"] == 0.0 and item["caption"] == "a long numbered clip"


def test_long_video_splits_into_back_to_back_clips(footage):
    dataset = FootageDataset(footage, fps=8, num_frames=5)
    clips = [i for i, c in enumerate(dataset.clips) if c.source.name == "long.mp4"]
    assert len(clips) == 4  # 24 frames at 8 fps make 4 windows of 5; the last 4 frames are dropped
    assert [dataset.clips[i].start_s for i in clips] == [0.0, 0.625, 1.25, 1.875]
    third = dataset[clips[2]]  # decoding from the middle of the file: target frames 10..14
    assert frame_numbers(third["video"]) == [30, 33, 36, 39, 42]

    limited = FootageDataset(footage, fps=8, num_frames=5, max_clips_per_video=2)
    assert [c.start_s for c in limited.clips if c.source.name == "long.mp4"] == [0.0, 1.25]


def test_short_videos_give_a_shorter_clip_and_images_one_frame(footage):
    dataset = FootageDataset(footage, fps=8, num_frames=17)
    by_name = {c.source.name: i for i, c in enumerate(dataset.clips)}
    # 1 s at 8 fps is 8 frames: too few for 17, so one clip of 5 (the longest 1 + 4k).
    mov = dataset[by_name["short.mov"]]
    assert frame_numbers(mov["video"]) == [0, 1, 3, 5, 7]  # 15 fps: floor(j * 15 / 8)
    gif = dataset[by_name["anim.gif"]]
    assert frame_numbers(gif["video"]) == [0, 1, 2, 3, 5]  # 10 fps: floor(j * 10 / 8)
    if "short.webm" in by_name:
        assert frame_numbers(dataset[by_name["short.webm"]]["video"]) == [0, 1, 3, 5, 7]
    assert dataset[by_name["wide.png"]]["video"].shape == (3, 1, 96, 160)

    # 9 frames at 8 fps is 1.1 s; at 3 fps it is 4 frames, under the 5 a clip needs.
    slow = FootageDataset(footage, fps=3, num_frames=17, default_caption="x")
    reasons = {p.name: why for p, why in slow.skipped}
    assert "too short" in reasons["uncaptioned.mp4"]
    assert "long.mp4" in {c.source.name for c in slow.clips}  # 3 s at 3 fps: 9 frames, one clip of 9
    assert next(c for c in slow.clips if c.source.name == "long.mp4").num_frames == 9


def test_items_are_float_clips_in_range(footage):
    dataset = FootageDataset(footage, fps=8, num_frames=17)
    assert len(dataset) >= 5
    for i in range(len(dataset)):
        item = dataset[i]
        video, clip = item["video"], dataset.clips[i]
        assert video.dtype == torch.float32
        assert video.shape == (3, clip.num_frames, clip.height, clip.width)
        assert video.min() >= -1 and video.max() <= 1
        assert isinstance(item["caption"], str) and item["source"] == str(clip.source)


def test_buckets_by_aspect_with_centre_crop(footage):
    assert make_buckets(128 * 128, (1, 4 / 3, 3 / 4, 5 / 3, 3 / 5)) == DEFAULT_BUCKETS
    dataset = FootageDataset(footage)
    by_name = {c.source.name: i for i, c in enumerate(dataset.clips)}
    wide, tall = dataset.clips[by_name["wide.png"]], dataset.clips[by_name["tall.jpg"]]
    assert (wide.width, wide.height) == (160, 96)
    assert (tall.width, tall.height) == (96, 160)
    # 200x100 scales to 192x96 to cover 160x96, then loses 16 columns each side: the split stays centred.
    video = dataset[by_name["wide.png"]]["video"]  # (3, 1, 96, 160)
    assert video[0, 0, :, :78].min() > 0.9 and video[2, 0, :, :78].max() < -0.9  # red left
    assert video[2, 0, :, 82:].min() > 0.9 and video[0, 0, :, 82:].max() < -0.9  # blue right

    custom = FootageDataset(footage, buckets=[(64, 32), (32, 64)])
    assert {(c.width, c.height) for c in custom.clips} == {(64, 32), (32, 64)}
    assert custom[0]["video"].shape[-2:] in {(32, 64), (64, 32)}
    with pytest.raises(ValueError, match="`buckets`"):
        FootageDataset(footage, buckets=[(100, 64)])


def test_bucket_sampler_batches_hold_one_bucket_and_are_seeded(footage):
    dataset = FootageDataset(footage, fps=8, num_frames=5)
    keys = dataset.bucket_keys
    assert len(set(keys)) >= 2  # wide videos, a tall image, a wide image
    sampler = BucketBatchSampler(keys, batch_size=2, seed=3)
    batches = list(sampler)
    assert all(len({keys[i] for i in batch}) == 1 for batch in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(len(dataset)))
    assert len(batches) == len(sampler)
    assert list(BucketBatchSampler(keys, batch_size=2, seed=3)) == batches
    sampler.set_epoch(1)
    assert list(sampler) != batches or len(batches) == 1  # a new order each epoch
    assert sorted(i for batch in sampler for i in batch) == list(range(len(dataset)))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=BucketBatchSampler(keys, batch_size=2))
    first = next(iter(loader))
    assert first["video"].ndim == 5 and len(first["caption"]) == first["video"].shape[0]


def test_argument_validation(footage, tmp_path):
    with pytest.raises(ValueError, match="`num_frames`"):
        FootageDataset(footage, num_frames=16)
    with pytest.raises(ValueError, match="`fps`"):
        FootageDataset(footage, fps=0)
    with pytest.raises(ValueError, match="`folder`"):
        scan_footage(tmp_path / "missing")


class CountingTextEncoder:
    """Passes through to MiniLM, remembering every prompt it was asked to encode."""

    def __init__(self, inner: MiniLMTextEncoder):
        self.inner, self.name, self.dim, self.max_length = inner, inner.name, inner.dim, inner.max_length
        self.prompts: list[str] = []

    def encode(self, prompts):
        self.prompts += prompts
        return self.inner.encode(prompts)


def test_cache_reuses_encodings_and_re_encodes_changed_files(footage, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    for name in ("long.mp4", "long.txt", "wide.png", "wide.txt"):
        shutil.copy(footage / name, folder / name)
    dataset = FootageDataset(folder, fps=8, num_frames=5, buckets=[(32, 32), (64, 32)], max_clips_per_video=2)
    assert len(dataset) == 3  # 2 clips of long.mp4 and the image

    torch.manual_seed(0)
    vae = build_vae("tiny")
    encode_calls = []
    original_encode = vae.encode
    vae.encode = lambda *args, **kwargs: encode_calls.append(1) or original_encode(*args, **kwargs)
    text_encoder = CountingTextEncoder(MiniLMTextEncoder())
    cache_dir = tmp_path / "cache"

    cached = cache_footage(dataset, vae, text_encoder, cache_dir)
    assert len(encode_calls) == 3 and sorted(text_encoder.prompts) == ["a long numbered clip", "red and blue"]
    assert len(cached) == 3 and cached.skipped == []
    item = cached[0]
    assert item["latents"].shape == (4, 2, 4, 8)  # 5 frames of 64x32 -> 1 + 1 latent frames of 8x4
    assert item["text"].shape == (77, 384) and item["text_mask"].dtype == torch.bool
    assert item["text_mask"].sum() > 0 and item["text"][~item["text_mask"]].abs().max() == 0
    for i in range(len(dataset)):
        fresh = encode_video(vae, dataset[i]["video"][None])[0]
        assert torch.equal(cached[i]["latents"], fresh)
    assert not list(cache_dir.rglob(".*.tmp"))

    again = cache_footage(dataset, vae, text_encoder, cache_dir)
    assert len(encode_calls) == 3 + len(dataset) and len(text_encoder.prompts) == 2  # only the fresh checks above
    assert (again.stats.encoded_clips, again.stats.reused_clips, again.stats.encoded_captions) == (0, 3, 0)

    stat = (folder / "long.mp4").stat()
    os.utime(folder / "long.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    touched = cache_footage(dataset, vae, text_encoder, cache_dir)
    assert (touched.stats.encoded_clips, touched.stats.reused_clips, touched.stats.encoded_captions) == (2, 1, 0)

    next(iter(sorted((cache_dir / "text").glob("*.safetensors")))).write_bytes(b"damaged")
    repaired = cache_footage(dataset, vae, text_encoder, cache_dir)
    assert repaired.stats.encoded_captions == 1 and len(text_encoder.prompts) == 3

    (folder / "long.mp4").write_bytes(b"no longer a video")  # damaged after the scan
    with pytest.raises(ValueError, match="long.mp4"):
        dataset[0]
    broken = cache_footage(dataset, vae, text_encoder, cache_dir)
    assert len(broken) == 1 and [p.name for p, _ in broken.skipped] == ["long.mp4", "long.mp4"]
