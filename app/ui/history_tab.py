"""The History tab: every generation in the store as a page of thumbnails with search and filters; the picked one
plays beside them with its marks (favourite, rating, tags, note), settings and actions. Handlers live in
history_handlers.py; Remix is wired by studio.py, since it fills the Create tab."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gradio as gr

from app.service import StudioService
from app.ui import history_handlers as handlers
from app.ui.history_handlers import ANY
from core.store.schema import GENERATION_STATUSES

RATINGS = [("none", 0), ("1★", 1), ("2★", 2), ("3★", 3), ("4★", 4), ("5★", 5)]


@dataclass
class HistoryTab:
    selected: gr.State  # the picked generation's id
    remix: gr.Button
    remix_new_seed: gr.Button
    listing: dict  # the listener arguments that re-list the current page
    choices: list  # the status, model and tag filters, whose choices come from the store


def _filters() -> list:
    with gr.Row(equal_height=True):
        text = gr.Textbox(show_label=False, placeholder="Search prompts and notes", scale=4, elem_id="kelp-search",
                          submit_btn=True)
        status = gr.Dropdown([ANY, *GENERATION_STATUSES], value=ANY, label="Status", scale=1, min_width=120)
        model = gr.Dropdown([ANY], value=ANY, label="Model", scale=2, min_width=140)
        rating = gr.Dropdown([ANY, "1", "2", "3", "4", "5"], value=ANY, label="Rating at least", scale=1,
                             min_width=110)
        tag = gr.Dropdown([ANY], value=ANY, label="Tag", scale=1, min_width=120)
    with gr.Row():
        favourites = gr.Checkbox(False, label="Favourites only")
        this_project = gr.Checkbox(False, label="Current project only")
        trash = gr.Checkbox(False, label="Show the trash")
    return [text, status, model, favourites, rating, tag, this_project, trash]


def _detail_panel() -> dict:
    video = gr.Video(label="Selected", autoplay=True, loop=True, interactive=False, height=300,
                     elem_id="kelp-history-video", buttons=["download"])
    summary = gr.Markdown("Pick a clip to play it and see its settings.", elem_id="kelp-history-summary")
    with gr.Row(equal_height=True):
        favourite = gr.Checkbox(False, label="Favourite", scale=1, elem_id="kelp-history-favourite")
        rating = gr.Radio(RATINGS, value=0, label="Rating", scale=4)
    tags = gr.Textbox(label="Tags", placeholder="comma, separated; Enter saves", submit_btn="Save",
                      elem_id="kelp-history-tags")
    note = gr.Textbox(label="Note", lines=2, placeholder="your own words; searched with the prompt",
                      submit_btn="Save", elem_id="kelp-history-note")
    with gr.Row():
        remix = gr.Button("Remix", size="sm", variant="primary", elem_id="kelp-history-remix")
        remix_new_seed = gr.Button("Remix, new seed", size="sm")
        requeue = gr.Button("Re-queue", size="sm", visible=False, elem_id="kelp-history-requeue")
        move = gr.Button("Move to current project", size="sm", elem_id="kelp-history-move")
        delete = gr.Button("Delete", size="sm", variant="stop", visible=False, elem_id="kelp-history-delete")
        restore = gr.Button("Restore", size="sm", visible=False, elem_id="kelp-history-restore")
    with gr.Accordion("Settings (JSON)", open=False):
        settings = gr.JSON(label="Request and result", elem_id="kelp-history-settings")
    return dict(video=video, summary=summary, favourite=favourite, rating=rating, tags=tags, note=note, remix=remix,
                remix_new_seed=remix_new_seed, requeue=requeue, move=move, delete=delete, restore=restore,
                settings=settings)


def build_history_tab(service: StudioService, shell) -> HistoryTab:
    filters = _filters()
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Generations", columns=4, height="auto", allow_preview=False,
                                 object_fit="cover", elem_id="kelp-history-gallery", interactive=False,
                                 fit_columns=False)
            with gr.Row(equal_height=True):
                previous = gr.Button("◀ Newer", size="sm", scale=1, min_width=90)
                page_note = gr.Markdown("", elem_id="kelp-history-page")
                following = gr.Button("Older ▶", size="sm", scale=1, min_width=90)
        with gr.Column(scale=2):
            panel = _detail_panel()
    page, ids, selected = gr.State(1), gr.State([]), gr.State(None)
    listing = dict(fn=partial(handlers.list_page, service), inputs=[shell.project_id, page, *filters],
                   outputs=[gallery, ids, page_note, page], show_progress="hidden")
    _wire_list(service, shell, filters, listing, page, previous, following)
    _wire_detail(service, shell, panel, gallery, ids, selected, listing)
    shell.loaded.then(**listing)
    return HistoryTab(selected, panel["remix"], panel["remix_new_seed"], listing, [filters[1], filters[2], filters[5]])


def _wire_list(service: StudioService, shell, filters: list, listing: dict, page, previous, following) -> None:
    text, *others = filters
    first_page = dict(fn=lambda: 1, outputs=page, show_progress="hidden")
    gr.on([text.submit, *(f.input for f in others), shell.project_id.change], **first_page).then(**listing)
    previous.click(partial(handlers.turn_page, -1), page, page).then(**listing)
    following.click(partial(handlers.turn_page, 1), page, page).then(**listing)


def _wire_detail(service: StudioService, shell, panel: dict, gallery, ids, selected, listing: dict) -> None:
    shown = [panel[name] for name in ("video", "summary", "favourite", "rating", "tags", "note", "settings",
                                      "requeue", "delete", "restore")]
    show = dict(fn=partial(handlers.details, service), inputs=selected, outputs=shown, show_progress="hidden")
    gallery.select(handlers.selected_id, ids, selected).then(**show)
    panel["favourite"].input(partial(handlers.set_favourite, service), [selected, panel["favourite"]]).then(**listing)
    panel["rating"].input(partial(handlers.set_rating, service), [selected, panel["rating"]])
    panel["note"].submit(partial(handlers.save_note, service), [selected, panel["note"]])
    panel["tags"].submit(partial(handlers.save_tags, service), [selected, panel["tags"]], panel["tags"])
    for name, action in (("delete", handlers.trash), ("restore", handlers.restore), ("requeue", handlers.requeue)):
        panel[name].click(partial(action, service), selected).success(**show).then(**listing)
    panel["move"].click(partial(handlers.move_to_project, service), [selected, shell.project_id]).success(**show)


def refresh_on_show(service: StudioService, tab_block: gr.Tab, history: HistoryTab) -> None:
    """Re-read the filter choices and re-list whenever the tab is opened, so that new clips are there."""
    tab_block.select(partial(handlers.filter_choices, service), None, history.choices,
                     show_progress="hidden").then(**history.listing)
