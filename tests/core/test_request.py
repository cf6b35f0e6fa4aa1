"""Bad requests fail fast with a message that names the field and its value."""

import pytest
from PIL import Image

from core.request import GenerationRequest, ShotSpec, validate_request


def check(**fields):
    settings = dict(prompt="a red circle", model="random:tiny")
    return validate_request(GenerationRequest(**{**settings, **fields}))


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(prompt=""), "`prompt` must not be empty, got ''"),
        (dict(prompt="   "), "`prompt` must not be empty"),
        (dict(num_frames=15), "`num_frames` must be 1 \\+ 4k .* e.g. 13 or 17, got 15"),
        (dict(num_frames=0), "`num_frames` must be 1 \\+ 4k"),
        (dict(num_frames=1001), "`num_frames` must be at most 65"),
        (dict(steps=0), "`steps` must be an integer from 1 to 500, got 0"),
        (dict(steps=-3), "`steps` .* got -3"),
        (dict(steps=2.5), "`steps` .* got 2.5"),
        (dict(width=100), "`width` must be a multiple of 16 .* got 100"),
        (dict(height=-64), "`height` .* got -64"),
        (dict(fps=0), "`fps` .* got 0"),
        (dict(guidance_scale=-1.0), "`guidance_scale` .* got -1.0"),
        (dict(sampler="ddim"), "`sampler` must be one of .* got 'ddim'"),
        (dict(seed=-1), "`seed` .* got -1"),
        (dict(model="nope"), "`model` 'nope' is not a model folder or a known model; available: .*random:tiny"),
        (dict(model="random:huge"), "`model` 'random:huge' is not a known random preset"),
        (dict(image="/no/such/file.png"), "`image` must be an existing image file, got '/no/such/file.png'"),
        (dict(shots=(ShotSpec("", 5),)), "`shots\\[0\\].prompt` must not be empty"),
        (dict(shots=(ShotSpec("a", 6),)), "`shots\\[0\\].num_frames` must be 1 \\+ 4k"),
        (dict(extend_video="/no/clip.mp4"), "`extend_video` must be an existing video file"),
    ],
)
def test_bad_fields_are_named_with_their_value(fields, message):
    with pytest.raises(ValueError, match=message):
        check(**fields)


def test_unreadable_image(tmp_path):
    text_file = tmp_path / "notes.png"
    text_file.write_text("this is not an image")
    with pytest.raises(ValueError, match="`image` could not be read as an image, got .*notes.png"):
        check(image=str(text_file))


def test_huge_image_is_refused_before_decoding(tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(huge)  # 1-bit: small on disk, 400 megapixels when decoded
    with pytest.raises(ValueError, match="`image` is too large to decode safely; images up to 8192 pixels a side"):
        check(image=str(huge))


def test_large_but_not_bomb_sized_image_names_its_size(tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("1", (9000, 100)).save(wide)
    with pytest.raises(ValueError, match="`image` is 9000x100 pixels; images up to 8192 pixels a side"):
        check(image=str(wide))


def test_corrupt_video_to_extend(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(ValueError, match="`extend_video` could not be read as a video"):
        check(extend_video=str(bad))


def test_defaults_come_from_the_model_and_task_is_named():
    validated = check()
    r = validated.request
    assert (r.width, r.height, r.num_frames, r.steps) == (64, 64, 9, 4)
    assert r.task == "text_to_video" and validated.shot_frames == (9,)
    shots = check(prompt="", shots=(ShotSpec("one", 5), ShotSpec("two", 9)))
    assert shots.request.task == "multishot" and shots.shot_frames == (5, 9)


def test_request_round_trips_through_json_dict():
    req = GenerationRequest(prompt="x", shots=(ShotSpec("a", 5),), seed=3)
    assert GenerationRequest.from_dict(req.to_dict()) == req
    with pytest.raises(ValueError, match="unknown request fields \\['colour'\\]"):
        GenerationRequest.from_dict({"prompt": "x", "colour": "red"})
