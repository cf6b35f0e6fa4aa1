"""The Create tab: a prompt (and optionally first/last frame images, or a clip to extend) and settings in; a job
queued with the StudioService; its progress, then the clip, out. Handlers live in create_handlers.py."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gradio as gr

from app.service import StudioService
from app.ui import create_handlers as handlers
from app.ui.create_form import FORM_FIELDS, NO_LORA, duration_note, size_choices
from app.ui.image_path import ImagePath
from core.attention.adaptive_sparsity import DEVICE_THRESHOLDS, SparsitySettings
from core.lora import MAX_STRENGTH
from core.quant.modes import available_modes
from core.request import ATTENTION_MODES
from core.model_loader import resolve_model
from core.sampling import SAMPLERS

QUEUE_REFRESH_S = 2.0
PERFORMANCE_NOTE = (
    "**Sparse attention** skips the blocks of the video that barely attend to each other (searched at a few steps, "
    f"then reused). It only pays on long or large clips: below {DEVICE_THRESHOLDS['cpu'].min_tokens} tokens on a CPU "
    f"and {DEVICE_THRESHOLDS['cuda'].min_tokens} on a CUDA GPU it runs dense, and the result's details say so. On "
    "CUDA GPUs it has not been faster yet at any length measured: its search cost more than the skipped blocks "
    "saved (README, Sparse attention). Lower recall is faster and strays further from "
    "the dense result. "
    "**Quantization** stores the transformer's weights (and, if asked, the text encoder's) in 8 bits (int8) or 4 "
    "bits (nf4, CUDA) to fit large models in less memory; only the modes this device can run are offered. **VAE decode in tiles** decodes the frames in "
    "overlapping tiles, so the decoder's memory follows the tile size instead of the frame size: for large frames "
    "on a small GPU. It is slower, and matches whole-frame decoding to within what the eye can see.")

VAE_TILE_CHOICES = [
    ("whole frames", 0), ("512 px tiles", 512), ("384 px tiles", 384), ("256 px tiles", 256),
    ("128 px tiles (least memory, slowest)", 128),
]


@dataclass
class CreateForm:
    """The form's components, one per FormValues field and in its order."""

    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    model: gr.Dropdown
    size: gr.Radio
    seconds: gr.Slider
    steps: gr.Slider
    guidance: gr.Slider
    random_seed: gr.Checkbox
    seed: gr.Number
    lora: gr.Dropdown
    lora_strength: gr.Slider
    image: ImagePath
    last_image: ImagePath
    extend_video: gr.State
    sampler: gr.Radio
    shift: gr.Number
    fps: gr.Number
    attention: gr.Radio
    attention_recall: gr.Slider
    quant: gr.Radio
    text_encoder_quant: gr.Radio
    vae_tile_size: gr.Dropdown

    def components(self) -> list:
        return [getattr(self, name) for name in FORM_FIELDS]


@dataclass
class CreateTab:
    form: CreateForm
    remix_outputs: list  # what handlers.remix_result fills: the form, the extend banner and button, the frame note
    job_id: gr.State  # the job this page watches


def _prompt_section(service: StudioService) -> dict:
    prompt = gr.Textbox(label="Prompt", lines=3, max_lines=8, elem_id="kelp-prompt",
                        placeholder="What happens in the clip, e.g. a red fox trotting through fresh snow at dusk")
    negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="What to steer away from (optional)")
    with gr.Row():
        generate = gr.Button("Generate", variant="primary", scale=3, elem_id="kelp-generate")
        cancel = gr.Button("Cancel", variant="stop", scale=1, elem_id="kelp-cancel")
    return dict(prompt=prompt, negative_prompt=negative, generate=generate, cancel=cancel)


def _settings_section(service: StudioService) -> dict:
    d = resolve_model(service.default_model).defaults
    seconds = (d.num_frames - 1) / d.fps
    with gr.Row():
        model = gr.Dropdown(handlers.model_choices(service), value=service.default_model, label="Model", scale=5)
        refresh_models = gr.Button("Refresh list", size="sm", scale=1, min_width=90)
    size = gr.Radio(size_choices(d), value=f"{d.width}x{d.height}", label="Size (pixels)")
    with gr.Row(equal_height=True):
        duration = gr.Slider(4 / d.fps, (d.max_frames - 1) / d.fps, value=seconds, step=4 / d.fps,
                             label="Duration (seconds)", scale=3, elem_id="kelp-duration")
        frames = gr.Markdown(duration_note(seconds, d.fps), elem_id="kelp-frames")
    with gr.Row():
        steps = gr.Slider(1, 500, value=d.steps, step=1, label="Steps", info="more: finer detail, slower",
                          elem_id="kelp-steps")
        guidance = gr.Slider(0, 20, value=d.guidance_scale, step=0.5, label="Guidance",
                             info="how closely to follow the prompt; 1 turns it off")
    with gr.Row(equal_height=True):
        random_seed = gr.Checkbox(True, label="Random seed", info="untick to repeat a seed", scale=1)
        seed = gr.Number(None, label="Seed", precision=0, minimum=0, visible=False, scale=2, elem_id="kelp-seed")
    return dict(model=model, refresh_models=refresh_models, size=size, seconds=duration, frames=frames,
                steps=steps, guidance=guidance, random_seed=random_seed, seed=seed, defaults=d)


def _inputs_section(service: StudioService) -> dict:
    with gr.Accordion("Start from images (image-to-video, first + last frame)", open=False):
        with gr.Row():
            image = ImagePath(label="First frame", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                              height=220, elem_id="kelp-image")
            last_image = ImagePath(label="Last frame (optional)", type="filepath", image_mode=None,
                                   sources=["upload", "clipboard"], height=220, elem_id="kelp-last-image")
        gr.Markdown("Images of any size are scaled to cover the clip and centre-cropped.")
    extend_video = gr.State(None)
    with gr.Row(equal_height=True, visible=False) as extend_row:
        extend_banner = gr.Markdown("", elem_id="kelp-extend-banner")
        clear_extend = gr.Button("Don't extend", size="sm", scale=0, min_width=120)
    return dict(image=image, last_image=last_image, extend_video=extend_video, extend_banner=extend_banner,
                extend_row=extend_row, clear_extend=clear_extend)


def _lora_section(service: StudioService) -> dict:
    with gr.Accordion("LoRA", open=False):
        with gr.Row():
            lora = gr.Dropdown(handlers.lora_choices(service), value=NO_LORA, label="LoRA", scale=4,
                               info="trained in the Fine-tune tab")
            strength = gr.Slider(0, MAX_STRENGTH, value=1.0, step=0.05, label="Strength", scale=3)
            refresh = gr.Button("Refresh", size="sm", scale=1, min_width=80)
    return dict(lora=lora, lora_strength=strength, refresh_loras=refresh)


def _advanced_section(defaults, quant_modes: list[str]) -> dict:
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            sampler = gr.Radio(list(SAMPLERS), value=defaults.sampler, label="Sampler")
            shift = gr.Number(0, label="Timestep shift", minimum=0, info="0: scaled with the clip size")
            fps = gr.Number(defaults.fps, label="Frames per second", minimum=1, maximum=120)
    with gr.Accordion("Performance", open=False):
        with gr.Row():
            attention = gr.Radio(list(ATTENTION_MODES), value="dense", label="Attention", elem_id="kelp-attention")
            recall = gr.Slider(0.5, 1.0, value=SparsitySettings().target_recall, step=0.01,
                               label="Sparse attention recall", info="share of attention mass kept")
            quant = gr.Radio(quant_modes, value="none", label="Quantization", elem_id="kelp-quant",
                             info="transformer weights")
            text_quant = gr.Radio(quant_modes, value="none", label="Text encoder quantization",
                                  elem_id="kelp-text-encoder-quant", info="the prompt encoder's weights")
            tiles = gr.Dropdown(VAE_TILE_CHOICES, value=0, label="VAE decode", elem_id="kelp-vae-tiles",
                                info="tiles bound the decoder's memory")
        gr.Markdown(PERFORMANCE_NOTE)
    return dict(sampler=sampler, shift=shift, fps=fps, attention=attention, attention_recall=recall, quant=quant,
                text_encoder_quant=text_quant, vae_tile_size=tiles)


def _result_section() -> dict:
    progress = gr.HTML("", elem_id="kelp-progress")
    video = gr.Video(label="Result", autoplay=True, loop=True, interactive=False, elem_id="kelp-result",
                     buttons=["download"], height=360)
    note = gr.Markdown("", elem_id="kelp-result-note")
    with gr.Row():
        extend = gr.Button("Extend", size="sm", min_width=80, elem_id="kelp-extend")
        remix = gr.Button("Remix", size="sm", min_width=80, elem_id="kelp-remix")
        new_seed = gr.Button("Remix, new seed", size="sm", min_width=80, elem_id="kelp-remix-new-seed")
        storyboard = gr.Button("Add to storyboard", size="sm", min_width=80, elem_id="kelp-add-to-storyboard")
    with gr.Accordion("Your queue", open=True):
        queue = gr.Markdown("Nothing of yours is queued or running.", elem_id="kelp-queue")
    return dict(progress=progress, video=video, note=note, extend=extend, remix=remix, new_seed=new_seed,
                storyboard=storyboard, queue=queue)


def build_create_tab(service: StudioService, shell) -> CreateTab:
    with gr.Row():
        with gr.Column(scale=5):
            top = _prompt_section(service)
            settings = _settings_section(service)
            inputs = _inputs_section(service)
            lora = _lora_section(service)
            advanced = _advanced_section(settings["defaults"], available_modes(service.engine.device))
        with gr.Column(scale=6):
            result = _result_section()
    parts = {**top, **settings, **inputs, **lora, **advanced}
    form = CreateForm(**{name: parts[name] for name in FORM_FIELDS})
    job_id, result_id = gr.State(None), gr.State(None)
    tab = CreateTab(form, [*form.components(), parts["extend_banner"], parts["extend_row"], parts["frames"]], job_id)
    _wire_settings(service, form, parts)
    _wire_jobs(service, shell, tab, parts, result, result_id)
    _wire_result(service, shell, tab, parts, result, result_id)
    return tab


def _wire_settings(service: StudioService, form: CreateForm, parts: dict) -> None:
    # .input, not .change: Remix sets the model too, and must keep the remixed job's size, steps, ...
    form.model.input(handlers.model_settings, form.model,
                     [form.size, form.seconds, parts["frames"], form.steps, form.guidance, form.sampler, form.fps])
    form.seconds.change(duration_note, [form.seconds, form.fps], parts["frames"], show_progress="hidden")
    form.fps.change(handlers.fps_changed, [form.model, form.fps, form.seconds], [form.seconds, parts["frames"]],
                    show_progress="hidden")
    form.random_seed.change(lambda random: gr.update(visible=not random), form.random_seed, form.seed,
                            show_progress="hidden")
    parts["refresh_models"].click(partial(handlers.refresh_models, service), form.model, form.model)
    parts["refresh_loras"].click(partial(handlers.refresh_loras, service), form.lora, form.lora)


def _wire_jobs(service: StudioService, shell, tab: CreateTab, parts: dict, result: dict, result_id) -> None:
    watch = dict(fn=partial(handlers.follow_job, service), inputs=tab.job_id,
                 outputs=[result["progress"], result["video"], result["note"], result_id, tab.form.seed],
                 concurrency_limit=None, show_progress="hidden")
    show_queue = dict(fn=partial(handlers.queue_table, service), inputs=shell.client_id, outputs=result["queue"],
                      show_progress="hidden", queue=False)
    followed = parts["generate"].click(
        partial(handlers.submit_job, service), [shell.client_id, shell.project_id, *tab.form.components()],
        [tab.job_id, result["progress"]], concurrency_limit=None, show_progress="hidden",
    ).success(**watch)
    resumed_job = gr.State(None)  # the job a reloaded page found; watched apart from the page's own new jobs
    resumed = shell.loaded.then(partial(handlers.resume_job, service), [shell.client_id, tab.job_id],
                                [tab.job_id, result["progress"], resumed_job]).then(**{**watch, "inputs": resumed_job})
    cancelled = parts["cancel"].click(partial(handlers.cancel_job, service), tab.job_id, result["progress"],
                                      cancels=[followed, resumed]).then(**watch)
    for watcher in (followed, resumed, cancelled):
        watcher.then(**show_queue)  # at once, not at the next tick: a finished job leaves the table
    # A new job, or a second press of Cancel, stops the watcher of the job before it (that job goes on; its
    # clip lands in History).
    parts["generate"].click(None, cancels=[followed, resumed, cancelled])
    parts["cancel"].click(None, cancels=[cancelled])
    gr.Timer(QUEUE_REFRESH_S).tick(**show_queue)


def _wire_result(service: StudioService, shell, tab: CreateTab, parts: dict, result: dict, result_id) -> None:
    form = tab.form
    result["extend"].click(partial(handlers.extend_result, service), result_id,
                           [form.extend_video, parts["extend_banner"], parts["extend_row"], form.image,
                            form.last_image])
    parts["clear_extend"].click(handlers.clear_extend, None,
                                [form.extend_video, parts["extend_banner"], parts["extend_row"]])
    result["remix"].click(partial(handlers.remix_result, service, new_seed=False), result_id, tab.remix_outputs)
    result["new_seed"].click(partial(handlers.remix_result, service, new_seed=True), result_id, tab.remix_outputs)
    result["storyboard"].click(partial(handlers.add_result_to_storyboard, service), [shell.project_id, result_id])


def apply_saved_defaults(service: StudioService, shell, create: CreateTab) -> None:
    """On page load, the size, steps and guidance saved in Models & settings replace the model's defaults."""
    shell.loaded.then(partial(handlers.saved_defaults, service), None,
                      [create.form.size, create.form.steps, create.form.guidance], show_progress="hidden")


def refresh_on_show(service: StudioService, tab_block: gr.Tab, create: CreateTab) -> None:
    """Re-read the LoRAs whenever the tab is opened, so one trained in the Fine-tune tab is there without a restart."""
    tab_block.select(partial(handlers.refresh_loras, service), create.form.lora, create.form.lora,
                     show_progress="hidden")
