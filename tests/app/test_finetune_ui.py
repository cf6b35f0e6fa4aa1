"""The Fine-tune tab in a real browser: upload two clips, edit a caption, train a tiny LoRA for a few steps, watch it
finish, and find it in the Create tab's LoRA picker."""

import numpy as np
import pytest

from core.store import Store
from core.store.loras import list_loras
from core.video_io import write_video
from tests.app.conftest import screenshot

NAME = "Red square UI"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for k in range(2):
        video = np.zeros((16, 64, 64, 3), np.uint8)
        for i in range(16):
            x = (3 * i + 9 * k) % 44
            video[i, 22:42, x:x + 20] = (220, 40, 40)
        paths.append(write_video(video, folder / f"red_square-{k}.mp4", 8.0))
    return paths


def caption_cell(page, row: int):
    return page.locator(f'#finetune-captions [data-testid="cell-{row}-1"]')


@pytest.mark.slow
def test_a_lora_trained_in_the_browser_shows_up_in_the_create_tab(page, studio, clips):
    page.get_by_role("tab", name="Fine-tune").click()
    page.locator("#finetune-files input[type=file]").set_input_files([str(p) for p in clips])
    caption_cell(page, 1).get_by_text("red square 1").wait_for()  # default captions from the file names
    caption_cell(page, 0).dblclick()
    page.locator("#finetune-captions textarea, #finetune-captions input").first.fill("a red square sliding right")
    page.keyboard.press("Enter")
    caption_cell(page, 0).get_by_text("a red square sliding right").wait_for()

    page.locator("#finetune-name").get_by_role("textbox").fill(NAME)
    page.locator("#finetune-trigger").get_by_role("textbox").fill("sqr")
    steps = page.locator("#finetune-steps input[type=number]")
    steps.fill("10")
    steps.press("Tab")
    page.locator("#finetune-start").click()
    page.locator("#finetune-status").get_by_text("running").wait_for(timeout=60_000)
    page.locator("#finetune-status").get_by_text("done").wait_for(timeout=300_000)
    status = page.locator("#finetune-status").inner_text()
    assert "Trained 10 steps" in status and "LoRA picker" in status, status
    page.locator("#finetune-clip video").wait_for()
    runs = page.locator("#finetune-runs [role=gridcell]").all_inner_texts()
    assert NAME in runs and "done" in runs and "10/10" in runs, runs
    assert page.locator("#finetune-start").is_enabled() and page.locator("#finetune-cancel").is_disabled()

    footage = studio.data_dir / "training" / "1" / "footage"
    assert (footage / "000-red-square-0.txt").read_text() == "sqr a red square sliding right\n"  # the edit and
    assert (footage / "001-red-square-1.txt").read_text() == "sqr red square 1\n"  # the trigger, both used
    page.locator("#finetune-loss").scroll_into_view_if_needed()
    screenshot(page, "finetune")
    page.locator("#finetune-runs [role=gridcell]").get_by_text(NAME, exact=True).click()  # shows that run again
    page.locator("#finetune-status").get_by_text("Trained 10 steps").wait_for()

    with Store.open(studio.data_dir) as store, store.db.read() as session:
        assert [lora.name for lora in list_loras(session)] == [NAME]

    page.get_by_role("tab", name="Create").click()
    # The Create tab's LoRA picker (in its closed "LoRA" accordion) refreshes from the store when the tab is selected.
    page.get_by_text("LoRA", exact=True).first.click()
    page.get_by_role("combobox", name="LoRA").click()
    page.get_by_role("option", name=f"{NAME} (trained on random:tiny)").wait_for()
