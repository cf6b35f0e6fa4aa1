"""The Create tab: the form's arithmetic (fast), then the served studio in Chromium: text-to-video and
image-to-video clips that play, a cancelled long job that a page refresh does not lose, and bad input that is
refused with the engine's message while the studio keeps serving."""

from dataclasses import fields

import gradio as gr
import pytest
from PIL import Image

from app.service import JobStatus
from app.ui.create_form import (
    FORM_FIELDS, FormValues, form_from_request, request_from_form, seconds_to_frames, size_presets,
)
from app.ui.create_handlers import (
    extend_result, form_updates, lora_choices, queue_table, remix_values, resume_job, submit_job,
)
from app.ui.create_tab import CreateForm
from app.ui.job_progress import progress_text
from core.models.presets import MODEL_PRESETS
from tests.app.conftest import screenshot
from tests.app.studio_actions import (
    close_toasts, finished_job, generate, open_service, wait_for_toast, wait_for_video,
)


def test_form_components_follow_the_form_values():
    assert tuple(field.name for field in fields(CreateForm)) == FORM_FIELDS


@pytest.mark.parametrize("preset, expected", [
    ("tiny", ["64x64", "80x48", "48x80"]),
    ("base", ["624x624", "832x480", "480x832"]),
])
def test_size_presets_are_square_landscape_portrait_at_multiples_of_16(preset, expected):
    sizes = size_presets(MODEL_PRESETS[preset].defaults)
    assert [value for _, value in sizes] == expected
    assert [label.split()[0] for label, _ in sizes] == ["Square", "Landscape", "Portrait"]
    assert all(int(side) % 16 == 0 for _, value in sizes for side in value.split("x"))


@pytest.mark.parametrize("seconds, fps, frames", [
    (1.0, 8, 9), (2.0, 8, 17), (0.2, 8, 1), (0.3, 8, 5), (5.0, 16, 81), (1.1, 8, 9),
])
def test_duration_becomes_1_plus_4k_frames(seconds, fps, frames):
    assert seconds_to_frames(seconds, fps) == frames


def test_form_and_request_round_trip():
    form = FormValues(prompt="a fox", model="random:tiny", size="80x48", seconds=2.0, steps=3, guidance=4.0,
                      random_seed=False, seed=7, sampler="heun", shift=2.5, fps=8.0)
    request = request_from_form(form)
    assert (request.width, request.height, request.num_frames, request.seed, request.shift) == (80, 48, 17, 7, 2.5)
    assert form_from_request(request, MODEL_PRESETS["tiny"].defaults) == form
    assert request_from_form(FormValues(model="random:tiny", size="64x64", random_seed=True, seed=7)).seed is None


def test_sparse_attention_round_trips_through_the_form():
    form = FormValues(prompt="a fox", model="random:tiny", size="64x64", attention="sparse", attention_recall=0.8)
    request = request_from_form(form)
    assert request.attention == "sparse" and request.sparse_attention.target_recall == 0.8
    assert form_from_request(request, MODEL_PRESETS["tiny"].defaults).attention_recall == 0.8
    dense = request_from_form(FormValues(prompt="a fox", model="random:tiny", size="64x64", attention_recall=0.8))
    assert dense.attention == "dense" and dense.sparse_attention is None  # the slider alone changes nothing


def test_text_encoder_quantization_round_trips_through_the_form():
    request = request_from_form(FormValues(prompt="a fox", model="random:tiny", size="64x64", text_encoder_quant="int8"))
    assert request.text_encoder_quant == "int8" and request.quant == "none"
    assert form_from_request(request, MODEL_PRESETS["tiny"].defaults).text_encoder_quant == "int8"


def test_vae_tiles_round_trip_through_the_form():
    request = request_from_form(FormValues(prompt="a fox", model="random:tiny", size="64x64", vae_tile_size=256))
    assert request.vae_tile_size == 256
    assert form_from_request(request, MODEL_PRESETS["tiny"].defaults).vae_tile_size == 256
    assert request_from_form(FormValues(prompt="a fox", model="random:tiny", size="64x64")).vae_tile_size is None
    from app.ui.create_tab import VAE_TILE_CHOICES
    from core.request import validate_request

    for _, tile in VAE_TILE_CHOICES:  # every choice the panel offers is one the engine accepts
        validate_request(request_from_form(FormValues(prompt="a fox", model="random:tiny", size="64x64",
                                                      vae_tile_size=tile)))


def test_a_bad_size_names_the_field():
    with pytest.raises(ValueError, match="`size`"):
        request_from_form(FormValues(size="big"))


def _status(status, place=None, stage="", step=0, total=0, eta_s=None, error="", seed=None):
    return JobStatus(3, status, place, stage, step, total, 0.5, eta_s, error, None, seed)


@pytest.mark.parametrize("status, ahead, line", [
    (_status("queued", place=3), 2, "Job 3 queued: 2 jobs ahead"),
    (_status("queued", place=1), 0, "Job 3 queued: next to run"),
    (_status("running", 0, "sampling", 12, 40, 3.2), 0, "Job 3: sampling step 12/40, about 3 s left"),
    (_status("running", 0, "decoding", 1, 3), 0, "Job 3: decoding 1/3"),
    (_status("running", 0, "loading"), 0, "Job 3: loading the model ..."),
    (_status("done", seed=5), 0, "Job 3 done (seed 5)"),
    (_status("failed", error="RuntimeError: boom"), 0, "Job 3 failed: RuntimeError: boom"),
    (_status("cancelled"), 0, "Job 3 cancelled"),
])
def test_progress_lines(status, ahead, line):
    assert progress_text(status, ahead) == line


@pytest.mark.slow
def test_a_prompt_becomes_a_clip_that_plays(page):
    generate(page, "a red fox trotting through fresh snow at dusk", steps=2)
    video = wait_for_video(page)
    assert video["readyState"] >= 2 and video["duration"] > 0
    note = page.inner_text("#kelp-result-note")
    assert "text to video" in note and "seed" in note
    assert "done" in page.inner_text("#kelp-progress")
    screenshot(page, "create")


@pytest.mark.slow
def test_an_uploaded_image_starts_the_clip(page, tmp_path):
    picture = tmp_path / "first.png"
    Image.new("RGB", (96, 64), (200, 80, 40)).save(picture)
    page.get_by_text("Start from images").click()
    page.set_input_files("#kelp-image input[type=file]", str(picture))
    page.locator("#kelp-image img").first.wait_for()
    generate(page, "the orange card slowly turns", steps=2)
    wait_for_video(page)
    assert "image to video" in page.inner_text("#kelp-result-note")


@pytest.mark.slow
def test_a_long_job_survives_a_refresh_and_cancel_stops_it(page):
    page.get_by_text("Advanced").click()
    page.get_by_label("heun").check()  # two model calls a step: a job long enough to refresh the page in
    generate(page, "a very slow fox", steps=300, seconds=8)
    page.locator("#kelp-progress", has_text="sampling step").wait_for()
    page.reload()
    progress = page.locator("#kelp-progress", has_text="sampling step")
    progress.wait_for(timeout=30_000)  # the refreshed page found this browser's running job again
    assert "running" in page.inner_text("#kelp-queue")
    page.click("#kelp-cancel")
    page.locator("#kelp-progress", has_text="cancelled").wait_for(timeout=30_000)
    page.locator("#kelp-queue", has_text="Nothing of yours").wait_for(timeout=10_000)


@pytest.mark.slow
def test_bad_input_is_refused_and_the_studio_keeps_serving(page, tmp_path):
    page.click("#kelp-generate")
    assert "`prompt` must not be empty" in wait_for_toast(page, "prompt")
    close_toasts(page)

    page.get_by_text("Start from images").click()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.set_input_files("#kelp-image input[type=file]", str(notes))
    wait_for_toast(page, "Invalid file type")  # the browser refuses it outright
    close_toasts(page)

    disguised = tmp_path / "disguised.png"  # passes the browser's check by its name; the engine reads it
    disguised.write_text("still not a picture")
    page.set_input_files("#kelp-image input[type=file]", str(disguised))
    generate(page, "a fox", steps=2)
    assert "`image` could not be read as an image" in wait_for_toast(page, "could not be read")
    close_toasts(page)

    page.reload()
    generate(page, "a fox after all", steps=2)
    wait_for_video(page)


@pytest.mark.slow
def test_remix_extend_and_add_to_storyboard(page):
    generate(page, "a heron standing in reeds", steps=2)
    wait_for_video(page)
    seed = page.inner_text("#kelp-result-note").split("seed")[1].split("·")[0].strip()
    page.fill("#kelp-prompt textarea", "something else")
    page.click("#kelp-remix")
    page.locator("#kelp-seed input").wait_for()
    assert page.input_value("#kelp-prompt textarea") == "a heron standing in reeds"
    assert page.input_value("#kelp-seed input") == seed

    page.click("#kelp-extend")
    page.locator("#kelp-extend-banner", has_text="the next run continues this clip").wait_for()
    page.click("#kelp-generate")
    page.locator("#kelp-result-note", has_text="extended clip").wait_for(timeout=60_000)
    wait_for_video(page)

    page.click("#kelp-add-to-storyboard")
    page.locator(".toast-body.info").first.wait_for()


@pytest.fixture
def service(tmp_path):
    service = open_service(tmp_path / "data")
    yield service
    service.close()


def test_bad_input_becomes_a_gradio_error_with_the_engines_message(service):
    values = FormValues(prompt="", model="random:tiny", size="64x64", seconds=1.0, steps=2).values()
    with pytest.raises(gr.Error, match="`prompt` must not be empty"):
        submit_job(service, "browser-1", None, *values)
    fake = service.store.data_dir.root / "fake.png"
    fake.write_text("not a picture")
    values = FormValues(prompt="a fox", model="random:tiny", size="64x64", image=str(fake)).values()
    with pytest.raises(gr.Error, match="`image` could not be read as an image"):
        submit_job(service, "browser-1", None, *values)


def test_a_submitted_job_is_this_browsers_to_resume(service):
    values = FormValues(prompt="a fox", model="random:tiny", size="64x64", seconds=1.0, steps=2).values()
    job_id, line = submit_job(service, "browser-1", None, *values)
    assert "queued" in line
    assert resume_job(service, "browser-1", None)[::2] == (job_id, job_id)
    assert "#1 in the queue" in queue_table(service, "browser-1")
    assert resume_job(service, "browser-2", None) == (gr.skip(), gr.skip(), None)  # not another browser's job
    assert resume_job(service, "browser-1", job_id + 1)[2] is None  # the page's own new job wins
    assert "Nothing of yours" in queue_table(service, "browser-2")


def test_a_lora_registered_later_is_offered_on_refresh(service, tmp_path):
    from core.store.loras import register_lora

    assert lora_choices(service) == [("none", "")]
    weights = tmp_path / "heron.safetensors"
    weights.write_bytes(b"stand-in")
    service.store.db.write(lambda session: register_lora(service.store, session, weights, name="heron",
                                                         base_model="random:tiny"))
    labels = [label for label, _ in lora_choices(service)]
    assert labels == ["none", "heron (trained on random:tiny)"]


@pytest.mark.parametrize("new_seed", [False, True])
def test_remix_fills_the_form_from_a_past_job(service, new_seed):
    job_id = finished_job(service, "a heron", seed=42, width=80, height=48, steps=3)
    form = remix_values(service, job_id, new_seed)
    assert (form.prompt, form.size, form.steps) == ("a heron", "80x48", 3)
    assert (form.random_seed, form.seed) == ((True, None) if new_seed else (False, 42))
    updates = form_updates(service, form)
    assert len(updates) == len(FORM_FIELDS)


def test_extend_takes_the_finished_clip(service):
    job_id = finished_job(service, "a heron")
    video, banner, _, image, last_image = extend_result(service, job_id)
    assert video == str(service.status(job_id).video_path) and f"job {job_id}" in banner
    assert (image, last_image) == (None, None)
    with pytest.raises(gr.Error, match="no finished clip"):
        extend_result(service, None)
