"""The studio page: a Gradio Blocks app made of one module per tab, over the StudioService built at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from app.service import StudioService


@dataclass
class StudioShell:
    """Components shared by the tabs: the browser session's id and the current project."""

    client_id: gr.BrowserState  # a random id kept in the browser, so a page refresh finds its jobs again
    project_id: gr.State  # the project the Storyboard and History tabs work in (None: no project)
    loaded: Any = None  # the page-load event that settles client_id: `.then(...)` on it to act once it is known


# Made in the browser, at once: a Generate pressed while the page is still loading already has its id, so a
# refresh finds that job too. (crypto.randomUUID exists only on https and localhost pages.)
NEW_CLIENT_ID_JS = """(known) => known || (crypto.randomUUID ? crypto.randomUUID().replaceAll("-", "")
    : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join(""))"""


def build_studio(service: StudioService) -> gr.Blocks:
    from app.api import register_api
    from app.ui import create_tab, history_tab, storyboard_tab
    from app.ui.finetune_tab import build_finetune_tab
    from app.ui.models_tab import build_models_tab
    from app.ui.project_picker import build_header

    with gr.Blocks(title="Kelp studio") as demo:
        shell = StudioShell(client_id=gr.BrowserState("", storage_key="kelp-client-id"), project_id=gr.State(None))
        shell.loaded = demo.load(None, inputs=shell.client_id, outputs=shell.client_id, js=NEW_CLIENT_ID_JS)
        build_header(service, shell)
        with gr.Tabs() as tabs:
            with gr.Tab("Create", id="create") as create_block:
                create = create_tab.build_create_tab(service, shell)
            with gr.Tab("Storyboard", id="storyboard") as storyboard_block:
                storyboard = storyboard_tab.build_storyboard_tab(service, shell)
            with gr.Tab("History", id="history") as history_block:
                history = history_tab.build_history_tab(service, shell)
            with gr.Tab("Fine-tune", id="finetune"):
                build_finetune_tab(service, shell)
            with gr.Tab("Models & settings", id="models"):
                build_models_tab(service, shell)
        create_tab.refresh_on_show(service, create_block, create)
        create_tab.apply_saved_defaults(service, shell, create)
        storyboard_tab.refresh_on_show(service, storyboard_block, storyboard)
        history_tab.refresh_on_show(service, history_block, history)
        for button, new_seed in ((history.remix, False), (history.remix_new_seed, True)):
            button.click(partial(remix_in_create_tab, service, new_seed=new_seed), history.selected,
                         [*create.remix_outputs, tabs])
        register_api(service)
    return demo


def remix_in_create_tab(service: StudioService, generation_id: int | None, new_seed: bool) -> tuple:
    """History's Remix: the Create tab's form filled from the generation, and that tab shown."""
    from app.ui.create_handlers import remix_result

    return (*remix_result(service, generation_id, new_seed=new_seed), gr.Tabs(selected="create"))
