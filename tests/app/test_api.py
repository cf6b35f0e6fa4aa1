"""The named API endpoints, called the way a script would: gradio_client against the served studio."""

import time

import pytest
from PIL import Image

from core.video_io import read_video_info

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(studio):
    from gradio_client import Client

    return Client(studio.url, verbose=False)


def test_generate_returns_a_playable_mp4_and_its_metadata(client):
    video, info = client.predict("a red fox in snow", steps=2, seed=11, api_name="/generate")
    clip = read_video_info(video)
    assert clip.num_frames == 9 and (clip.width, clip.height) == (64, 64)  # random:tiny's defaults
    assert info["status"] == "done" and info["seed"] == 11
    assert info["result"]["request"]["prompt"] == "a red fox in snow"
    assert info["result"]["request"]["steps"] == 2


def test_an_uploaded_image_makes_an_image_to_video_clip(client, tmp_path):
    from gradio_client import handle_file

    picture = tmp_path / "first.png"
    Image.new("RGB", (40, 30), (20, 120, 200)).save(picture)
    video, info = client.predict("a blue card", steps=2, seconds=2.0, image=handle_file(str(picture)),
                                 api_name="/generate")
    assert info["result"]["task"] == "image_to_video"
    assert read_video_info(video).num_frames == 17


def test_submit_and_status_do_not_wait(client):
    submitted = client.predict("a heron in reeds", steps=2, api_name="/submit")
    assert submitted["status"] in ("queued", "running", "done") and submitted["job_id"] > 0
    deadline = time.monotonic() + 60
    while True:
        video, status = client.predict(submitted["job_id"], api_name="/status")
        if status["status"] == "done" or time.monotonic() > deadline:
            break
        assert video is None
        time.sleep(0.3)
    assert status["status"] == "done" and read_video_info(video).num_frames == 9


def test_cancel_stops_a_long_job(client):
    submitted = client.predict("a very slow heron", steps=500, num_frames=65, sampler="heun", api_name="/submit")
    cancelled = client.predict(submitted["job_id"], api_name="/cancel")
    deadline = time.monotonic() + 30
    while cancelled["status"] not in ("cancelled", "done") and time.monotonic() < deadline:
        time.sleep(0.3)
        _, cancelled = client.predict(submitted["job_id"], api_name="/status")
    assert cancelled["status"] == "cancelled"


def test_history_lists_with_search_and_pages(client):
    client.predict("an owl at night", steps=2, api_name="/generate")
    found = client.predict(text="owl", api_name="/history")
    assert [item["prompt"] for item in found["items"]] == ["an owl at night"]
    first = client.predict(page=1, page_size=2, api_name="/history")
    assert len(first["items"]) == 2 and first["total"] >= 3 and first["pages"] >= 2
    assert first["items"][0]["job_id"] > first["items"][1]["job_id"]  # newest first


@pytest.mark.parametrize("arguments, message", [
    (dict(prompt=""), "`prompt` must not be empty"),
    (dict(prompt="a fox", width=100), "`width` must be a multiple of 16"),
    (dict(prompt="a fox", image="/etc/hostname"), "`image` must be a file sent with gradio_client.handle_file"),
    (dict(prompt="a fox", num_frames=9, seconds=1.0), "`num_frames` or `seconds`, not both"),
])
def test_bad_requests_are_errors_that_name_the_field(client, arguments, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message.replace("(", r"\(").replace(")", r"\)")):
        client.predict(**arguments, api_name="/generate")


def test_status_of_an_unknown_job_is_an_error(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="`generation_id` must be the id of an existing generation"):
        client.predict(99999, api_name="/status")
