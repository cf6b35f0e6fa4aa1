"""The Models & settings tab: models, the stand-in warning, the device, adding model folders (refusing anything that
is not one), and generation defaults that survive a page reload; plus the store-level pieces behind it."""

import pytest

from app.model_folders import add_model_folder, available_models, known_model_folders, remove_model_folder
from app.settings_defaults import GenerationPreferences, load_generation_defaults, save_generation_defaults
from core.model_loader import load_model, resolve_model, save_model
from core.store import Store
from tests.app.conftest import screenshot


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A real Kelp model folder: the random tiny model saved with save_model."""
    loaded = load_model(resolve_model("random:tiny"))
    return save_model(tmp_path_factory.mktemp("models") / "my-tiny", loaded.transformer, loaded.vae, "tiny")


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "data") as opened:
        yield opened


def test_model_folders_are_checked_remembered_and_listed(store, model_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no kelp_model.json"):
        add_model_folder(store, tmp_path / "empty")
    with pytest.raises(ValueError, match="is not an existing folder"):
        add_model_folder(store, tmp_path / "nowhere")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "kelp_model.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a valid Kelp model index"):
        add_model_folder(store, tmp_path / "broken")
    assert known_model_folders(store) == []
    assert add_model_folder(store, str(model_folder)) == model_folder.resolve()
    add_model_folder(store, model_folder)  # twice: listed once
    assert known_model_folders(store) == [model_folder.resolve()]
    models = available_models(store)
    assert str(model_folder.resolve()) in models and models[-1].startswith("random:")
    assert resolve_model(str(model_folder.resolve())).preset == "tiny"
    assert remove_model_folder(store, str(model_folder.resolve())) and known_model_folders(store) == []


def test_generation_defaults_persist_and_are_checked(store):
    assert load_generation_defaults(store) == GenerationPreferences()
    save_generation_defaults(store, GenerationPreferences(steps=12, guidance_scale=4.5, width=96, height=64))
    assert load_generation_defaults(store) == GenerationPreferences(steps=12, guidance_scale=4.5, width=96, height=64)
    with pytest.raises(ValueError, match="`width` must be a multiple of 16, got 100"):
        GenerationPreferences(width=100)
    with pytest.raises(ValueError, match="`steps` must be a whole number from 1 to 500"):
        GenerationPreferences(steps=0)


def cell(table, text):
    """A visible table cell (Gradio also renders a hidden copy of the rows to measure them)."""
    return table.locator("[role=gridcell]").get_by_text(text, exact=True)


@pytest.mark.slow
def test_models_tab_shows_models_device_and_adds_folders(page, studio, model_folder, tmp_path):
    page.get_by_role("tab", name="Models & settings").click()
    table = page.locator("#models-table")
    cell(table, "random:tiny").wait_for()
    assert "yes" in table.locator("[role=gridcell]").all_inner_texts()
    page.get_by_text("The studio is running an untrained stand-in").wait_for()
    assert "Device: cpu" in page.locator("#models-device").inner_text()

    (tmp_path / "not-a-model").mkdir()
    page.locator("#models-folder").get_by_role("textbox").fill(str(tmp_path / "not-a-model"))
    page.locator("#models-add").click()
    page.get_by_text("has no kelp_model.json").first.wait_for()

    page.locator("#models-folder").get_by_role("textbox").fill(str(model_folder))
    page.locator("#models-add").click()
    cell(table, str(model_folder.resolve())).wait_for()
    assert "added folder" in table.inner_text()
    page.get_by_text("Added").first.wait_for()

    page.locator("#models-steps input").fill("12")
    page.locator("#models-guidance input").fill("4.5")
    page.locator("#models-save").click()
    page.get_by_text("Saved.").wait_for()
    page.get_by_label("Close").first.click()  # the error toast from the refused folder, which hides the header
    screenshot(page, "models")

    page.reload()
    page.get_by_role("tab", name="Models & settings").click()
    cell(page.locator("#models-table"), str(model_folder.resolve())).wait_for()
    assert page.locator("#models-steps input").input_value() == "12"
    assert page.locator("#models-guidance input").input_value() == "4.5"
