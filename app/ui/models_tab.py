"""The Models & settings tab: the models the studio can use and which is the default, adding a model folder, the
device it runs on, and generation defaults that persist between sessions."""

from __future__ import annotations

from functools import partial

import gradio as gr
import pandas as pd

from app.model_folders import add_model_folder, available_models, known_model_folders
from app.settings_defaults import GenerationPreferences, load_generation_defaults, save_generation_defaults
from core.model_loader import DEFAULT_MODEL, MODEL_INDEX, RANDOM_PREFIX, list_models, resolve_model

MODEL_COLUMNS = ["model", "kind", "preset", "default size", "frames", "steps", "studio default"]


def bundled_status(default_model: str) -> str:
    """What the default model is, said plainly when it is the untrained stand-in."""
    installed = DEFAULT_MODEL in list_models()
    if not default_model.startswith(RANDOM_PREFIX):
        missing = "" if installed else f" (the bundled `{DEFAULT_MODEL}` is not installed)"
        return f"The default model is **`{default_model}`**{missing}."
    reason = (f"The bundled model `{DEFAULT_MODEL}` is not installed yet, so the studio runs `{default_model}`"
              if not installed else f"The studio was started with `--model {default_model}`")
    after = f" Once `{DEFAULT_MODEL}` is in `assets/`, restart the studio." if not installed else ""
    return (f"⚠️ **The studio is running an untrained stand-in.** {reason}: its weights are random, so its "
            f"generations are noise. They show how the studio works, not what Kelp can make.{after}")


def models_frame(service) -> pd.DataFrame:
    folders = {str(folder) for folder in known_model_folders(service.store)}
    rows = []
    for name in available_models(service.store):
        kind = ("untrained (random weights)" if name.startswith(RANDOM_PREFIX)
                else "added folder" if name in folders else "bundled")
        mark = "yes" if name == service.default_model else ""
        try:
            source = resolve_model(name)
        except ValueError as err:  # an added folder whose index broke since
            rows.append([name, f"unreadable: {err}", "", "", "", "", mark])
            continue
        d = source.defaults
        rows.append([name, kind, source.preset, f"{d.width}×{d.height}", d.num_frames, d.steps, mark])
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)


def device_text(service) -> str:
    info = service.device_info()
    text = (f"**Device:** `{info['device']}` · PyTorch {info['torch']} · Python {info['python']} · "
            f"{info['cpu_threads']} CPU thread{'s' if info['cpu_threads'] != 1 else ''}")
    if "gpu" in info:
        text += f"\n\n**GPU:** {info['gpu']}, {info['gpu_memory_gb']} GB"
    return text


def add_folder(service, path: str):
    """Add a model folder; returns (message, models table, cleared path box)."""
    try:
        folder = add_model_folder(service.store, path)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    return f"Added `{folder}`: choose it as the model in the Create and Fine-tune tabs.", models_frame(service), ""


def save_defaults(service, steps, guidance, width, height) -> str:
    try:
        preferences = GenerationPreferences(steps=_whole(steps), guidance_scale=_empty(guidance),
                                            width=_whole(width), height=_whole(height))
    except ValueError as err:
        raise gr.Error(f"Generation defaults: {err}") from err
    save_generation_defaults(service.store, preferences)
    return "Saved. Empty fields use each model's own default."


def build_models_tab(service, shell) -> None:
    gr.Markdown("## Models")
    gr.Markdown(partial(bundled_status, service.default_model))
    models = gr.Dataframe(partial(models_frame, service), headers=MODEL_COLUMNS, interactive=False,
                          label="Installed models", elem_id="models-table")
    with gr.Row():
        folder = gr.Textbox(label="Add a model folder", scale=4, elem_id="models-folder",
                            placeholder=f"/path/to/a/folder/with/{MODEL_INDEX}",
                            info=f"A Kelp model folder: {MODEL_INDEX}, transformer/ and vae/. It is remembered.")
        add = gr.Button("Add folder", scale=0, min_width=180, elem_id="models-add")
    added = gr.Markdown(elem_id="models-added")
    gr.Markdown("## Device")
    gr.Markdown(partial(device_text, service), elem_id="models-device")
    gr.Markdown("## Generation defaults\nThe Create tab starts from these. Leave a field empty for the model's own.")
    saved = partial(load_generation_defaults, service.store)
    with gr.Row():
        steps = gr.Number(lambda: saved().steps, label="Steps", precision=0, minimum=1, maximum=500,
                          elem_id="models-steps")
        guidance = gr.Number(lambda: saved().guidance_scale, label="Guidance scale", minimum=0, maximum=50,
                             elem_id="models-guidance")
        width = gr.Number(lambda: saved().width, label="Width (pixels)", precision=0, step=16, minimum=16,
                          elem_id="models-width")
        height = gr.Number(lambda: saved().height, label="Height (pixels)", precision=0, step=16, minimum=16,
                           elem_id="models-height")
    with gr.Row():
        save = gr.Button("Save defaults", elem_id="models-save", scale=0, min_width=180)
        saved_note = gr.Markdown(elem_id="models-saved")

    add.click(partial(add_folder, service), inputs=folder, outputs=[added, models, folder])
    folder.submit(partial(add_folder, service), inputs=folder, outputs=[added, models, folder])
    save.click(partial(save_defaults, service), inputs=[steps, guidance, width, height], outputs=saved_note)


def _empty(value):
    return None if value is None or value == "" else value


def _whole(value):
    value = _empty(value)
    return int(value) if isinstance(value, float) and value.is_integer() else value
