"""Handlers of the Fine-tune tab: plain functions of (service, component values) that return component values.
ValueErrors from the service become gr.Error here, naming the field and value."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from app.finetune_jobs import FinetuneStatus, cancel_finetune, list_finetunes, start_finetune
from app.finetune_uploads import default_caption, upload_name

CAPTION_COLUMNS = ["file", "caption"]
RUN_COLUMNS = ["run", "name", "base model", "status", "steps", "last loss"]
POLL_S = 1.0  # status refresh while a run trains
MAX_RUNS_SHOWN = 20


def caption_rows(files, trigger: str, table) -> gr.Dataframe:
    """One [file, caption] row per uploaded file, keeping captions already typed for files still there; rows can be
    edited but not added or removed (the files decide them)."""
    typed = {row[0]: row[1] for row in _rows(table) if len(row) >= 2 and row[1]}
    names = [upload_name(path) for path in files or []]
    rows = [[name, typed.get(name) or default_caption(name, (trigger or "").strip())] for name in names]
    return gr.Dataframe(value=rows, row_limits=(len(rows), len(rows)))


def start(service, name, files, table, base_model, steps, rank, learning_rate, trigger):
    """Start a run; returns (run id, status text, timer)."""
    if not files:
        raise gr.Error("Footage: upload at least one video or image first.")
    captions = {row[0]: row[1] for row in _rows(table) if len(row) >= 2}
    try:
        run_id = start_finetune(service, name=name or "", files=list(files), captions=captions,
                                base_model=base_model, steps=_whole(steps), rank=_whole(rank),
                                learning_rate=_number(learning_rate), trigger=trigger or "")
    except ValueError as err:
        raise gr.Error(str(err)) from err
    return run_id, f"Run {run_id} started: loading the base model and reading the footage…", gr.Timer(active=True)


def cancel(service, run_id):
    if run_id is None:
        raise gr.Error("Cancel: no fine-tune is running in this tab.")
    try:
        status = cancel_finetune(service, run_id)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    return f"Run {run_id}: {status}."


def poll(service, run_id):
    """(run id, status text, loss chart, validation clip, past runs, timer, start button, cancel button, base model
    choices) for run `run_id`; without one, the run training now or else the newest. The timer stops once nothing
    is training."""
    runs = list_finetunes(service, MAX_RUNS_SHOWN)
    if run_id is None:
        run_id = next((run.run_id for run in runs if not run.finished), runs[0].run_id if runs else None)
    current = next((run for run in runs if run.run_id == run_id), None)
    training = current is not None and not current.finished
    clips = current.validation_clips if current is not None else []
    return (run_id, status_text(current), loss_frame(current), str(clips[-1]) if clips else None,
            runs_frame(runs), gr.Timer(active=training), gr.Button(interactive=not training),
            gr.Button(interactive=training), gr.Dropdown(choices=service.models()))


def pick_run(table, event: gr.SelectData):
    """The run id of the clicked row of the past runs table."""
    rows = _rows(table)
    row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
    return int(rows[row][0]) if isinstance(row, int) and 0 <= row < len(rows) else None


def status_text(run: FinetuneStatus | None) -> str:
    if run is None:
        return "No fine-tune yet. Upload footage, check the captions, and press **Start fine-tune**."
    head = f"**Run {run.run_id} “{run.name}”** on `{run.base_model}`: **{run.status}**"
    lines = [head]
    if run.status == "running":
        loss = f" · loss {run.losses[-1][1]:.4f}" if run.losses else ""
        eta = f" · about {_duration(run.eta_s)} left" if run.eta_s else ""
        lines.append(f"{run.phase}{loss}{eta} ({run.progress:.0%})")
    elif run.status == "done":
        lines.append(f"Trained {run.total_steps} steps. The LoRA “{run.name}” is now in the Create tab's LoRA "
                     f"picker (use it with the base model `{run.base_model}`).")
    elif run.error:
        lines.append(f"Stopped after step {run.step} of {run.total_steps}: {run.error}")
    if run.skipped:
        lines.append("Not used: " + "; ".join(f"{name} ({why})" for name, why in run.skipped))
    return "\n\n".join(lines)


def loss_frame(run: FinetuneStatus | None) -> pd.DataFrame:
    steps, losses = zip(*run.losses) if run is not None and run.losses else ((), ())
    return pd.DataFrame({"step": list(steps), "loss": list(losses)})


def runs_frame(runs: list[FinetuneStatus]) -> pd.DataFrame:
    rows = [[run.run_id, run.name, run.base_model, run.status, f"{run.step}/{run.total_steps}",
             f"{run.losses[-1][1]:.4f}" if run.losses else ""] for run in runs]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def _rows(table) -> list[list]:
    if table is None:
        return []
    if isinstance(table, pd.DataFrame):
        return table.astype(str).values.tolist()
    return [list(row) for row in table]


def _whole(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
