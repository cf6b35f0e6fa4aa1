"""The Storyboard tab: the current project's storyboard, its shots drawn again (@gr.render) whenever the project
or the storyboard changes, with buttons to generate every shot, re-render one, choose takes, and cut the chosen
takes into one video to play and download."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gradio as gr

from app import storyboard_actions as actions
from app.ui import storyboard_handlers as handlers

MODE_CHOICES = [
    ("One pass: all shots generated together (native multi-shot)", "native"),
    ("Shot by shot: each starts from the last frame of the shot before", "chained"),
]
TRANSITION_CHOICES = [("Cut", "cut"), ("Crossfade", "crossfade")]


@dataclass
class StoryboardTab:
    """What other tabs may use: set `refresh` to a new number to draw the storyboard again (e.g. after adding a
    generation to it from another tab)."""

    refresh: gr.State


@dataclass
class _Fixed:
    """Components outside the redrawn part, which keep their content while the shots are drawn again."""

    version: gr.State
    progress: gr.Markdown
    crossfade: gr.Slider
    cut_video: gr.Video
    download: gr.DownloadButton


def build_storyboard_tab(service, shell) -> StoryboardTab:
    fixed = _Fixed(
        version=gr.State(0),
        progress=gr.Markdown(elem_id="storyboard-progress", render=False),
        crossfade=gr.Slider(1, 16, 4, step=1, label="Crossfade length (frames)", render=False,
                            info="Each crossfade overlaps two shots by this many frames, so the cut gets that much "
                                 "shorter."),
        cut_video=gr.Video(label="The cut", interactive=False, height=320, visible=False, elem_id="storyboard-cut",
                           render=False),
        download=gr.DownloadButton("Download the cut", visible=False, render=False),
    )
    gr.Markdown("Plan a video as shots: generate them all, re-render the ones you do not like, pick the best take of "
                "each, then cut them into one video.")

    @gr.render(inputs=[shell.project_id, fixed.version])
    def board(project_id, version):
        # Which drawing is on the page: scripts (and tests) wait for it after opening the tab, which redraws.
        gr.HTML(f'<span id="storyboard-drawn" data-version="{version}"></span>', padding=False, container=False)
        _draw_board(service, shell, project_id, fixed)

    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            fixed.progress.render()
        with gr.Column(scale=1, min_width=220):
            fixed.crossfade.render()  # under the Cut button
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            fixed.cut_video.render()
        with gr.Column(scale=1, min_width=220):
            fixed.download.render()
    gr.on(None, partial(handlers.latest_cut, service), inputs=shell.project_id,
          outputs=[fixed.cut_video, fixed.download])
    return StoryboardTab(refresh=fixed.version)


def refresh_on_show(service, tab_block: gr.Tab, storyboard: StoryboardTab) -> None:
    """Draw the storyboard again whenever the tab is opened, so shots added from other tabs are there."""
    tab_block.select(lambda version: version + 1, storyboard.refresh, storyboard.refresh, show_progress="hidden")


def _draw_board(service, shell, project_id, fixed: _Fixed) -> None:
    storyboard_id = actions.find_storyboard(service, project_id)
    view = actions.storyboard_view(service, storyboard_id) if storyboard_id is not None else None
    timing = actions.shot_timing(service, storyboard_id)
    shots = view.shots if view is not None else ()
    shot_ids = [shot.id for shot in shots]
    gr.Markdown(_summary(view, project_id, timing), elem_id="storyboard-summary")
    with gr.Row():
        subject = gr.Textbox(view.subject if view else "", label="Subject and style, shared by every shot", lines=2,
                             placeholder="e.g. a red paper kite over a windy beach, soft watercolour", scale=3,
                             interactive=True, elem_id="storyboard-subject")
        mode = gr.Radio(MODE_CHOICES, value=view.mode if view else "native", label="How to generate", scale=2,
                        interactive=True, elem_id="storyboard-mode")
    fields, cards = [], []
    for shot in shots:
        card = _shot_card(shot, timing, len(shots), view.mode)
        fields += card["fields"]
        cards.append((shot, card))
    with gr.Row():
        add = gr.Button("+ Add shot", elem_id="storyboard-add")
        generate = gr.Button("Generate all shots", variant="primary", interactive=bool(shots),
                             elem_id="storyboard-generate")
        cut = gr.Button("Cut the chosen takes together", interactive=bool(shots), elem_id="storyboard-cut-button")

    saved = [subject, mode, *fields]
    add.click(partial(handlers.add_new_shot, service, project_id, storyboard_id, shot_ids),
              inputs=[fixed.version, *saved], outputs=fixed.version)
    generate.click(partial(handlers.generate_all, service, storyboard_id, shot_ids),
                   inputs=[shell.client_id, fixed.version, *saved], outputs=[fixed.progress, fixed.version])
    cut.click(partial(handlers.cut, service, storyboard_id, shot_ids),
              inputs=[fixed.crossfade, shell.client_id, *saved],
              outputs=[fixed.cut_video, fixed.download, fixed.progress])
    keep = partial(handlers.save_only, service, storyboard_id, shot_ids)
    for field in [subject, *(card["prompt"] for _, card in cards)]:
        field.blur(keep, inputs=saved)
    # The mode decides which reference images are used, which the shots' labels say: draw them again.
    mode.input(partial(handlers.change_mode, service, storyboard_id, shot_ids), inputs=[fixed.version, *saved],
               outputs=fixed.version)
    for shot, card in cards:
        _wire_shot(service, shell, shot, card, storyboard_id, shot_ids, saved, fixed)


def _summary(view, project_id, timing) -> str:
    if view is None or not view.shots:
        where = "No project is picked, so shots go to the project “My storyboard”. " if project_id is None else ""
        return f"{where}No shots yet: add one here, or add a video you made in the Create tab to the storyboard."
    frames = sum(shot.num_frames for shot in view.shots)
    count = len(view.shots)
    return (f"**{view.project_name}** · {count} shot{'s' if count != 1 else ''} · {frames} frames in all, about "
            f"{frames / timing.fps:.1f} s at {timing.fps:g} fps (before trims and crossfades)")


def _shot_card(shot, timing, count: int, mode: str) -> dict:
    """One shot's fields, take picker and buttons; returns its components by name."""
    number = shot.position + 1
    chosen = shot.chosen
    done = [take for take in shot.takes if take.status == "done" and take.video_path is not None]
    making = len(shot.takes) - len(done)

    def own(name: str) -> dict:
        """Tie a component to the shot, not to its place: a redrawn component at the same place would keep its old
        video or image when the new value is empty. Nothing is kept from the page (all was saved before)."""
        return dict(key=f"shot-{shot.id}-{name}", preserved_by_key=[], elem_id=f"shot-{number}-{name}")

    with gr.Group(elem_id=f"shot-{number}", elem_classes="kelp-shot"):
        with gr.Row(equal_height=True):
            with gr.Column(scale=5):
                prompt = gr.Textbox(shot.prompt, label=f"Shot {number}", lines=2, interactive=True,
                                    placeholder="what happens in this shot", **own("prompt"))
                with gr.Row():
                    frames = gr.Slider(1, timing.max_frames, shot.num_frames, step=4, label="Length (frames)",
                                       scale=2, min_width=200, interactive=True, **own("frames"))
                    transition = gr.Dropdown(TRANSITION_CHOICES, value=shot.transition, label="Into this shot",
                                             interactive=number > 1, min_width=110, **own("transition"))
                    trim_start = gr.Number(shot.trim_start, label="Trim start", precision=0, minimum=0,
                                           interactive=True, min_width=90, **own("trim-start"))
                    trim_end = gr.Number(shot.trim_end, label="Trim end", precision=0, minimum=0,
                                         interactive=True, min_width=90, **own("trim-end"))
            reference = gr.Image(str(shot.reference_path) if shot.reference_path else None, type="filepath",
                                 format="png", label=_reference_label(number, mode), height=190, scale=2,
                                 min_width=170, sources=["upload", "clipboard"], interactive=True,
                                 **own("reference"))
            player = gr.Video(str(chosen.video_path) if chosen and chosen.video_path else None, label="Chosen take",
                              height=190, scale=2, min_width=170, loop=True, interactive=False, **own("player"))
        with gr.Row(equal_height=True):
            takes = gr.Radio([(_take_label(i, take), take.generation_id) for i, take in enumerate(done, 1)],
                             value=chosen.generation_id if chosen in done else None, label="Takes", scale=3,
                             interactive=True, info=_takes_note(len(done), making), **own("takes"))
            with gr.Column(scale=2, min_width=300):
                with gr.Row():
                    up = gr.Button("↑ Up", size="sm", interactive=number > 1, min_width=60)
                    down = gr.Button("↓ Down", size="sm", interactive=number < count, min_width=60)
                    duplicate = gr.Button("Duplicate", size="sm", min_width=80)
                    delete = gr.Button("Delete", size="sm", variant="stop", min_width=70)
                rerender = gr.Button("Re-render this shot", size="sm", elem_id=f"shot-{number}-rerender")
    return dict(fields=[prompt, frames, transition, trim_start, trim_end], prompt=prompt, reference=reference,
                player=player, takes=takes, up=up, down=down, duplicate=duplicate, delete=delete, rerender=rerender)


def _reference_label(number: int, mode: str) -> str:
    if mode == "native":
        return "Reference: the first frame" if number == 1 else "Reference (used shot by shot only)"
    return "Reference: this shot's first frame"


def _takes_note(done: int, making: int) -> str:
    """Never None: a redrawn component keeps the old value of a property that is None."""
    if not done and not making:
        return "None yet: generate all shots, or re-render this one"
    return f"{making} more being made or failed" if making else ""


def _take_label(number: int, take) -> str:
    made = " (one pass)" if take.task == actions.SEGMENT_TASK else ""
    seed = f" · seed {take.seed}" if take.seed is not None else ""
    return f"Take {number}{made}{seed}"


def _wire_shot(service, shell, shot, card: dict, storyboard_id, shot_ids, saved, fixed: _Fixed) -> None:
    for change in ("up", "down", "duplicate", "delete"):
        card[change].click(partial(handlers.change_shot, service, change, shot.id, storyboard_id, shot_ids),
                           inputs=[fixed.version, *saved], outputs=fixed.version)
    card["rerender"].click(partial(handlers.rerender, service, shot.id, storyboard_id, shot_ids),
                           inputs=[shell.client_id, fixed.version, *saved], outputs=[fixed.progress, fixed.version])
    card["takes"].input(partial(handlers.choose, service, shot.id), inputs=card["takes"], outputs=card["player"])
    card["reference"].upload(partial(handlers.set_reference, service, shot.id), inputs=card["reference"])
    card["reference"].clear(partial(handlers.set_reference, service, shot.id, None))
