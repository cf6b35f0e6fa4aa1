"""Cutting takes together: frame arithmetic of trims and crossfades, the encoding, and what a crossfade frame shows."""

import json
import subprocess

import numpy as np
import pytest

from app.cutting import CutPiece, cut_videos, plan_cut, split_video_frames
from core.video_io import read_video_frames, read_video_info, read_video_metadata, write_video

RED, GREEN, BLUE = (200, 40, 40), (40, 200, 40), (40, 40, 200)


def solid_clip(path, frames: int, colour) -> str:
    pixels = np.empty((frames, 32, 48, 3), np.uint8)
    pixels[:] = colour
    for index in range(frames):  # a white mark whose place tells the frame apart
        pixels[index, :4, index * 2: index * 2 + 2] = 255
    write_video(pixels, path, 8.0)
    return str(path)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return (solid_clip(folder / "red.mp4", 9, RED), solid_clip(folder / "green.mp4", 13, GREEN),
            solid_clip(folder / "blue.mp4", 9, BLUE))


def test_cuts_lay_trimmed_shots_end_to_end():
    pieces = [CutPiece("a", 0, 0), CutPiece("b", 2, 1), CutPiece("c", 0, 4)]
    timeline = plan_cut([9, 13, 9], pieces, 4)
    assert timeline.lengths == (9, 10, 5) and timeline.starts == (0, 9, 19) and timeline.total_frames == 24


def test_each_crossfade_overlaps_its_shots_by_n_frames():
    pieces = [CutPiece("a"), CutPiece("b", 1, 2, "crossfade"), CutPiece("c", transition="crossfade")]
    timeline = plan_cut([9, 13, 9], pieces, 3)
    assert timeline.starts == (0, 6, 13) and timeline.total_frames == 9 + 10 + 9 - 2 * 3


def test_a_crossfade_into_the_first_shot_changes_nothing():
    assert plan_cut([9], [CutPiece("a", transition="crossfade")], 4).total_frames == 9


@pytest.mark.parametrize("pieces, counts, frames, message", [
    ([CutPiece("a", 5, 4)], [9], 4, "Shot 1: `trim_start` + `trim_end` must leave at least one of its 9 frames"),
    ([CutPiece("a", 0, 6), CutPiece("b", transition="crossfade")], [9, 9], 4,
     "Shot 2: a crossfade of 4 frames needs that many frames in it and in shot 1 after trims, but they have 9 and 3"),
    ([CutPiece("a"), CutPiece("b", transition="wipe")], [9, 9], 4, "Shot 2: `transition` must be one of"),
    ([CutPiece("a")], [9], 0, "`crossfade_frames` must be a whole number of frames from 1 but is 0"),
])
def test_what_does_not_fit_is_named(pieces, counts, frames, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("+", r"\+")):
        plan_cut(counts, pieces, frames)


def test_the_cut_is_h264_yuv420p_with_the_planned_frames(clips, tmp_path):
    red, green, blue = clips
    pieces = [CutPiece(red, 1, 0), CutPiece(green, 0, 2, "crossfade"), CutPiece(blue, 0, 3)]
    out = cut_videos(pieces, tmp_path / "cut.mp4", crossfade_frames=4, metadata={"shots": 3})
    assert read_video_info(out).num_frames == 8 + 11 - 4 + 6 == 21
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(out)],
        check=True, capture_output=True, text=True).stdout)["streams"][0]
    assert (probe["codec_name"], probe["pix_fmt"], int(probe["nb_read_frames"])) == ("h264", "yuv420p", 21)
    assert probe["color_space"] == "bt709"
    assert read_video_metadata(out) == {"shots": 3}
    assert [path.name for path in tmp_path.iterdir()] == ["cut.mp4"]  # no temporary file left


def test_a_crossfade_frame_blends_both_shots_and_cuts_are_clean(clips, tmp_path):
    red, green, _ = clips
    out = cut_videos([CutPiece(red), CutPiece(green, transition="crossfade")], tmp_path / "fade.mp4",
                     crossfade_frames=4)
    frames, _ = read_video_frames(out)
    assert len(frames) == 9 + 13 - 4
    centre = frames[:, 16:, :, :].reshape(len(frames), -1, 3).mean(axis=1)  # below the frame marks
    assert np.allclose(centre[4], RED, atol=4) and np.allclose(centre[9], GREEN, atol=4)
    for step, index in enumerate(range(5, 9)):  # the overlap: green's weight 0, 1/4, 2/4, 3/4
        weight = step / 4
        expected = (1 - weight) * np.array(RED) + weight * np.array(GREEN)
        assert np.allclose(centre[index], expected, atol=6), (index, centre[index], expected)
    assert 80 < centre[7][0] < 160 and 80 < centre[7][1] < 160  # halfway: neither shot alone


def test_cutting_the_same_takes_twice_gives_the_same_frames(clips, tmp_path):
    pieces = [CutPiece(clips[0]), CutPiece(clips[2], transition="crossfade")]
    first, _ = read_video_frames(cut_videos(pieces, tmp_path / "one.mp4"))
    second, _ = read_video_frames(cut_videos(pieces, tmp_path / "two.mp4"))
    assert np.array_equal(first, second)


def test_takes_of_another_size_are_refused(clips, tmp_path):
    small = np.zeros((5, 16, 16, 3), np.uint8)
    other = write_video(small, tmp_path / "small.mp4", 8.0)
    with pytest.raises(ValueError, match="Shot 2's take is 16x16 at 8 fps but shot 1's is 48x32 at 8 fps"):
        cut_videos([CutPiece(clips[0]), CutPiece(other)], tmp_path / "never.mp4")
    assert not (tmp_path / "never.mp4").exists()


def test_split_gives_each_shot_its_frames(clips):
    frames, _ = read_video_frames(clips[1])
    parts = split_video_frames(clips[1], [5, 5, 3])
    assert [len(part) for part in parts] == [5, 5, 3] and np.array_equal(parts[2], frames[10:])
    with pytest.raises(ValueError, match="must add up to the video's 13 frames"):
        split_video_frames(clips[1], [5, 5])
