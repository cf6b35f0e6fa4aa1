"""The Fine-tune tab: train a LoRA on uploaded clips or images, watch its loss, see its validation clip, and find
it in the Create tab's LoRA picker when it is done."""

from __future__ import annotations

from functools import partial

import gradio as gr

from app.finetune_recipe import DEFAULT_LEARNING_RATE, DEFAULT_RANK, DEFAULT_STEPS
from app.finetune_uploads import FOOTAGE_EXTENSIONS
from app.ui import finetune_handlers as handlers

INTRO = """## Fine-tune a LoRA on your own footage
Teach the model a subject, a look or a motion from a handful of short clips or images. Only a small LoRA adapter
(a few MB) is trained; the base model stays as it is. Clips are cut into pieces of about one second at the base
model's size. On a CPU a step takes under a second at 128×128, so the default 800 steps on a handful of short clips take
about 8 minutes; a GPU is much faster. One fine-tune runs at a time, next to the studio's own generations."""


def build_finetune_tab(service, shell) -> None:
    gr.Markdown(INTRO)
    if service.default_model.startswith("random:"):
        gr.Markdown(f"⚠️ The default model `{service.default_model}` is an untrained stand-in: a LoRA trained on "
                    "it works, but its clips stay noise. Install kelp-small (see the Models & settings tab) for "
                    "real use.")
    run_id = gr.State(None)
    with gr.Row():
        with gr.Column(scale=3):
            files = gr.File(label="Footage: videos or images", file_count="multiple", type="filepath",
                            file_types=sorted(FOOTAGE_EXTENSIONS), elem_id="finetune-files")
            captions = gr.Dataframe(headers=handlers.CAPTION_COLUMNS, datatype=["str", "str"], column_count=2,
                                    interactive=True, static_columns=[0], wrap=True, label="Captions",
                                    value=[], row_limits=(0, 0), column_widths=["30%", "70%"],
                                    elem_id="finetune-captions")
            gr.Markdown("Describe each clip as you would prompt for it; click a caption to edit it.")
        with gr.Column(scale=2):
            name = gr.Textbox(label="LoRA name", placeholder="e.g. my dog", max_length=200, elem_id="finetune-name")
            trigger = gr.Textbox(label="Trigger word (optional)", max_length=60, placeholder="e.g. sks",
                                 elem_id="finetune-trigger",
                                 info="A made-up word; it is put at the start of every caption that lacks it. "
                                      "Use it in prompts to call up what the LoRA learned.")
            base_model = gr.Dropdown(choices=service.models(), value=service.default_model, label="Base model",
                                     info="The LoRA only works with this model.", elem_id="finetune-base")
            with gr.Row():
                steps = gr.Slider(10, 2000, value=DEFAULT_STEPS, step=10, label="Steps", elem_id="finetune-steps")
                rank = gr.Slider(1, 64, value=DEFAULT_RANK, step=1, label="Rank", elem_id="finetune-rank",
                                 info="Higher learns more detail, in a bigger file.")
            learning_rate = gr.Number(value=DEFAULT_LEARNING_RATE, label="Learning rate", minimum=1e-6, maximum=0.1)
            with gr.Row():
                start = gr.Button("Start fine-tune", variant="primary", elem_id="finetune-start")
                cancel = gr.Button("Cancel", variant="stop", interactive=False, elem_id="finetune-cancel")
            status = gr.Markdown(handlers.status_text(None), elem_id="finetune-status")
    with gr.Row():
        loss = gr.LinePlot(handlers.loss_frame(None), x="step", y="loss", label="Training loss", height=260, scale=3,
                           elem_id="finetune-loss")
        clip = gr.Video(label="Validation clip (rendered with the LoRA after the last step)", interactive=False,
                        scale=2, loop=True, height=260, elem_id="finetune-clip")
    runs = gr.Dataframe(headers=handlers.RUN_COLUMNS, interactive=False, elem_id="finetune-runs",
                        label="Fine-tunes (click one to see its loss and clip)")
    timer = gr.Timer(handlers.POLL_S)  # active on page load, to pick up a run already training

    files.change(handlers.caption_rows, inputs=[files, trigger, captions], outputs=captions)
    polled = [run_id, status, loss, clip, runs, timer, start, cancel, base_model]
    start.click(partial(handlers.start, service),
                inputs=[name, files, captions, base_model, steps, rank, learning_rate, trigger],
                outputs=[run_id, status, timer]).then(partial(handlers.poll, service), inputs=run_id, outputs=polled)
    cancel.click(partial(handlers.cancel, service), inputs=run_id, outputs=status).then(
        partial(handlers.poll, service), inputs=run_id, outputs=polled)
    runs.select(handlers.pick_run, inputs=runs, outputs=run_id, show_progress="hidden").then(
        partial(handlers.poll, service), inputs=run_id, outputs=polled, show_progress="hidden")
    timer.tick(partial(handlers.poll, service), inputs=run_id, outputs=polled, show_progress="hidden")
