"""The History tab against the served studio: clips made through the API are listed, play, can be marked,
searched, trashed and restored, remixed into the Create tab, and are still there after the studio restarts (a
job cut off by a killed studio comes back as interrupted and can be re-queued)."""

import time

import gradio as gr
import pytest

from app.ui import history_handlers as handlers
from app.ui.history_handlers import HistoryFilters
from tests.app.conftest import screenshot
from tests.app.studio_actions import finished_job, open_service, open_tab, wait_for_toast, wait_for_video

GALLERY_ITEMS = "#kelp-history-gallery .thumbnail-item"
PROMPTS = ("a red fox in snow", "a heron in tall reeds")


@pytest.fixture(scope="module")
def clips(studio):
    """Two finished clips, made through the API (quicker than the page)."""
    from gradio_client import Client

    client = Client(studio.url, verbose=False)
    return [client.predict(prompt, steps=2, api_name="/generate")[1]["job_id"] for prompt in PROMPTS]


def show_history(page) -> None:
    open_tab(page, "History")
    page.locator("#kelp-history-page", has_text="generation").wait_for()


def captions(page) -> list[str]:
    return [item.inner_text() for item in page.locator(GALLERY_ITEMS).all()]


def pick(page, text: str) -> None:
    page.locator(GALLERY_ITEMS, has_text=text).first.click()
    page.locator("#kelp-history-summary", has_text=text).wait_for()


@pytest.mark.slow
def test_history_lists_and_plays_the_clips(page, clips):
    show_history(page)
    page.locator(GALLERY_ITEMS).nth(1).wait_for()
    assert [any(prompt in caption for caption in captions(page)) for prompt in PROMPTS] == [True, True]
    assert "2 generations" in page.inner_text("#kelp-history-page")
    pick(page, "heron")
    video = wait_for_video(page, "#kelp-history-video video")
    assert video["duration"] > 0
    page.get_by_text("Settings (JSON)").click()
    assert "guidance_scale" in page.inner_text("#kelp-history-settings")
    screenshot(page, "history")


@pytest.mark.slow
def test_marks_search_trash_and_restore(page, clips):
    show_history(page)
    pick(page, "fox")
    page.get_by_label("Favourite", exact=True).check()
    page.get_by_label("4★").check()
    page.fill("#kelp-history-tags textarea, #kelp-history-tags input", "winter, Animals ")
    page.press("#kelp-history-tags textarea, #kelp-history-tags input", "Enter")
    page.wait_for_function("() => document.querySelector('#kelp-history-tags textarea, #kelp-history-tags input')"
                           ".value === 'animals, winter'")
    page.get_by_label("Favourites only").check()
    page.locator(GALLERY_ITEMS).nth(0).wait_for()
    page.wait_for_function(f"() => document.querySelectorAll('{GALLERY_ITEMS}').length === 1")
    assert "★" in captions(page)[0] and "fox" in captions(page)[0]
    page.get_by_label("Favourites only").uncheck()

    page.fill("#kelp-search textarea, #kelp-search input", "heron")
    page.press("#kelp-search textarea, #kelp-search input", "Enter")
    page.locator("#kelp-history-page", has_text="1 generation").wait_for()
    pick(page, "heron")
    page.click("#kelp-history-delete")
    wait_for_toast(page, "trash")
    page.locator("#kelp-history-page", has_text="Nothing matches").wait_for()
    page.get_by_label("Show the trash").check()
    pick(page, "heron")
    page.click("#kelp-history-restore")
    page.get_by_label("Show the trash").uncheck()
    page.locator("#kelp-history-page", has_text="1 generation").wait_for()

    page.get_by_label("New project").fill("Birds")
    page.get_by_label("New project").press("Enter")
    page.locator("#kelp-project input").wait_for()
    page.wait_for_function("() => document.querySelector('#kelp-project input').value.startsWith('Birds')")
    page.click("#kelp-history-move")
    wait_for_toast(page, "is now in project")
    page.fill("#kelp-search textarea, #kelp-search input", "")
    page.press("#kelp-search textarea, #kelp-search input", "Enter")
    page.locator("#kelp-history-page", has_text="2 generations").wait_for()
    page.get_by_label("Current project only").check()
    page.locator("#kelp-history-page", has_text="1 generation").wait_for()
    assert "heron" in captions(page)[0]


@pytest.mark.slow
def test_remix_fills_the_create_tab(page, clips):
    show_history(page)
    pick(page, "heron")
    page.click("#kelp-history-remix")
    page.wait_for_function("() => document.querySelector('#kelp-prompt textarea').value === 'a heron in tall reeds'")
    page.locator("#kelp-seed input").wait_for()  # "Random seed" is off: the remix repeats the seed it used


@pytest.mark.slow
def test_clips_outlive_a_restart_and_a_killed_job_can_be_requeued(page, studio, clips):
    from gradio_client import Client

    client = Client(studio.url, verbose=False)
    long_job = client.predict("a very slow owl", steps=500, num_frames=65, sampler="heun", api_name="/submit")
    while client.predict(long_job["job_id"], api_name="/status")[1]["status"] != "running":
        time.sleep(0.2)
    # Leave the studio's page first: a Gradio page that sees its server come back reloads itself, and that
    # reload can cut short the page.goto below ("interrupted by another navigation").
    page.goto("about:blank")
    studio.process.kill()  # no clean shutdown: the running job is left marked running
    studio.process.wait()
    studio.process = None
    studio.start()

    page.goto(studio.url)
    show_history(page)
    page.locator("#kelp-history-page", has_text="3 generations").wait_for()
    assert sum(any(prompt in caption for caption in captions(page)) for prompt in PROMPTS) == 2
    pick(page, "owl")
    assert "interrupted" in page.inner_text("#kelp-history-summary")
    page.click("#kelp-history-requeue")
    wait_for_toast(page, "queued again")
    client = Client(studio.url, verbose=False)
    assert client.predict(long_job["job_id"], api_name="/status")[1]["status"] in ("queued", "running")
    client.predict(long_job["job_id"], api_name="/cancel")


# The handlers in-process, on a store whose jobs are recorded without running -----------------------------------


@pytest.fixture
def service(tmp_path):
    service = open_service(tmp_path / "data")
    yield service
    service.close()


def listed(service, project_id=None, page=1, **filters) -> tuple[list[str], str]:
    items, ids, note, _ = handlers.list_page(service, project_id, page, *vars(HistoryFilters(**filters)).values())
    return [caption for _, caption in items], note


def test_list_search_filters_and_pages(service, monkeypatch):
    fox, heron = finished_job(service, "a red fox"), finished_job(service, "a grey heron")
    handlers.set_favourite(service, fox, True)
    handlers.set_rating(service, heron, 4)
    assert listed(service) == ([f"#{heron} a grey heron", f"★ #{fox} a red fox"], "Page 1 of 1 · 2 generations")
    assert listed(service, text="hero")[0] == [f"#{heron} a grey heron"]
    assert listed(service, favourites=True)[0] == [f"★ #{fox} a red fox"]
    assert listed(service, min_rating="3")[0] == [f"#{heron} a grey heron"]
    assert listed(service, text="owl") == ([], "Nothing matches these filters.")
    monkeypatch.setattr(handlers, "PAGE_SIZE", 1)
    assert listed(service, page=2) == ([f"★ #{fox} a red fox"], "Page 2 of 2 · 2 generations")
    assert listed(service, page=9)[1] == "Page 2 of 2 · 2 generations"  # past the end: the last page


def test_an_empty_history_says_where_clips_come_from(service):
    assert listed(service) == ([], "No generations yet: make one in the Create tab.")


def test_a_queued_job_gets_a_placeholder_tile(service):
    from core.request import GenerationRequest

    service.submit(GenerationRequest(prompt="an owl", model="random:tiny", steps=2))
    items, _, _, _ = handlers.list_page(service, None, 1, *vars(HistoryFilters()).values())
    image, caption = items[0]
    assert caption.endswith("[queued] an owl") and image.size == (handlers.PLACEHOLDER_SIDE,) * 2


def test_tags_are_replaced_and_normalised(service):
    job = finished_job(service, "a fox")
    assert handlers.save_tags(service, job, "Winter, animals , winter") == "animals, winter"
    assert handlers.save_tags(service, job, "snow") == "snow"
    assert listed(service, tag="snow")[0] == [f"#{job} a fox"]
    assert handlers.save_tags(service, job, "") == ""


def test_trash_restore_and_details(service):
    job = finished_job(service, "a fox")
    shown = handlers.details(service, job)
    assert shown[0].endswith(".mp4") and "a fox" in shown[1] and shown[6]["seed"] == 3
    assert [button["visible"] for button in shown[7:]] == [False, True, False]  # re-queue, delete, restore
    handlers.trash(service, job)
    assert listed(service)[0] == [] and listed(service, trash=True)[0] == [f"🗑 #{job} a fox"]
    assert [button["visible"] for button in handlers.details(service, job)[7:]] == [False, False, True]
    handlers.restore(service, job)
    assert listed(service)[0] == [f"#{job} a fox"]


def test_only_stopped_jobs_can_be_requeued(service):
    from core.store.schema import Generation

    job = finished_job(service, "a fox")
    with pytest.raises(gr.Error, match="can be re-queued"):
        handlers.requeue(service, job)
    service.store.db.write(lambda session: setattr(session.get(Generation, job), "status", "interrupted"))
    assert handlers.details(service, job)[7]["visible"]
    handlers.requeue(service, job)
    assert service.status(job).status == "queued"


def test_projects_filter_and_move(service):
    from core.store.projects import create_project

    finished_job(service, "a fox")
    heron = finished_job(service, "a heron")
    project = service.store.db.write(lambda session: create_project(session, "Birds").id)
    with pytest.raises(gr.Error, match="`project` is none"):
        handlers.move_to_project(service, heron, None)
    handlers.move_to_project(service, heron, project)
    assert listed(service, project_id=project, this_project=True)[0] == [f"#{heron} a heron"]
    assert len(listed(service, project_id=project)[0]) == 2  # the box unticked: every project
    assert "project “Birds”" in handlers.details(service, heron)[1]


def test_attention_summary_says_what_sparse_attention_did():
    ran = {"mode": "sparse", "mean_sparsity": 0.82, "mean_recall": 0.913, "search_share": 0.06}
    assert handlers.attention_summary(ran, "sparse") == ("attention: sparse, 82% of blocks skipped, 91.3% of "
                                                         "attention kept, searches 6% of sampling")
    assert "ran dense" in handlers.attention_summary({"mode": "sparse", "searches": 0}, "sparse")
    assert handlers.attention_summary(None, "sparse") == "attention: sparse (asked)"
    assert handlers.attention_summary({"mode": "dense"}, "dense") == ""


def test_summary_names_the_weights_and_the_vae_tiles_a_job_asked_for():
    from core.store.schema import Generation

    job = Generation(id=7, prompt="a fox", model="random:tiny", status="done",
                     request={"quant": "int8", "offload": False, "vae_tile_size": 256})
    summary = handlers._summary(job)
    assert "weights: int8" in summary and "VAE decoded in 256 px tiles" in summary
    text_only = handlers._summary(Generation(id=9, prompt="a fox", model="random:tiny", status="done",
                                             request={"quant": "none", "text_encoder_quant": "int8"}))
    assert "weights: none, text encoder int8" in text_only
    plain = handlers._summary(Generation(id=8, prompt="a fox", model="random:tiny", status="done", request={}))
    assert "weights" not in plain and "tiles" not in plain
