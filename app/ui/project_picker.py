"""The studio's header: its name, and the project picker that sets the current project (StudioShell.project_id),
which new generations join and the Storyboard and History tabs work in."""

from __future__ import annotations

from functools import partial

import gradio as gr

from app.service import StudioService

NO_PROJECT = 0  # the picker's value for "no project" (the shell holds None)


def project_choices(service: StudioService) -> list[tuple[str, int]]:
    from core.store.projects import list_projects

    with service.store.db.read() as session:
        projects = [(summary.project.name, summary.project.id, summary.generation_count)
                    for summary in list_projects(session)]
    return [("No project", NO_PROJECT)] + [(f"{name} ({count} clips)", project_id)
                                           for name, project_id, count in projects]


def refresh_projects(service: StudioService, current: int | None):
    choices = project_choices(service)
    return gr.update(choices=choices, value=current if current in {value for _, value in choices} else NO_PROJECT)


def create_project(service: StudioService, name: str) -> tuple:
    """A new project, made the current one; the name box is emptied."""
    from core.store.projects import create_project as store_create_project

    try:
        project_id = service.store.db.write(lambda session: store_create_project(session, name or "").id)
    except ValueError as err:
        raise gr.Error(str(err).replace("`name`", "`project name`")) from err
    return gr.update(choices=project_choices(service), value=project_id), ""


def picked_project(value: int | None) -> int | None:
    return int(value) if value else None


def build_header(service: StudioService, shell) -> gr.Dropdown:
    with gr.Row(equal_height=True, elem_id="kelp-header"):
        with gr.Column(scale=4):
            gr.Markdown("# Kelp\nMake short videos from text and images, on your own machine.")
        picker = gr.Dropdown(project_choices(service), value=NO_PROJECT, label="Project", scale=2, min_width=180,
                             elem_id="kelp-project")
        name = gr.Textbox(label="New project", placeholder="name, then Enter", scale=2, min_width=160)
    picker.change(picked_project, picker, shell.project_id, show_progress="hidden")
    shell.loaded.then(partial(refresh_projects, service), picker, picker, show_progress="hidden")
    name.submit(partial(create_project, service), name, [picker, name])
    return picker
