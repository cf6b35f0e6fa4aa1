"""LoRA records: a .safetensors file kept in the store (asset kind "lora") with its name, base model and trigger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.checks import check_bool, check_dict, check_name, check_text, get_row, restore_row, trash_row
from core.store.schema import Lora, TrainingRun
from core.store.store import Store


def register_lora(
    store: Store,
    session: Session,
    path: str | Path,
    *,
    name: str,
    base_model: str = "",
    trigger: str = "",
    info: dict[str, Any] | None = None,
    training_run_id: int | None = None,
) -> Lora:
    """Copy the LoRA file at `path` into the store and record it. `info`: rank, alpha, targets, ..."""
    if not isinstance(path, (str, Path)) or Path(path).suffix != ".safetensors" or not Path(path).is_file():
        raise ValueError(f"`path` must be an existing .safetensors file but is {str(path)!r}")
    lora = Lora(
        name=check_name("name", name),
        base_model=check_text("base_model", base_model, 500),
        trigger=check_text("trigger", trigger, 200),
        info=check_dict("info", info if info is not None else {}),
        training_run=None if training_run_id is None else get_row(session, TrainingRun, training_run_id,
                                                                  "training_run_id"),
        asset=store.add_asset(session, path, "lora", suffix=".safetensors"),
    )
    session.add(lora)
    session.flush()
    return lora


def get_lora(session: Session, lora_id: int) -> Lora:
    return get_row(session, Lora, lora_id, "lora_id")


def list_loras(session: Session, *, base_model: str | None = None, include_deleted: bool = False) -> list[Lora]:
    """LoRAs newest first, optionally only those trained on `base_model`."""
    query = select(Lora).order_by(Lora.created_at.desc(), Lora.id.desc())
    if base_model is not None:
        query = query.where(Lora.base_model == base_model)
    if not check_bool("include_deleted", include_deleted):
        query = query.where(Lora.deleted_at.is_(None))
    return list(session.scalars(query))


def lora_path(store: Store, session: Session, lora_id: int) -> Path:
    """Where the LoRA's file is, to put into a request."""
    return store.asset_path(get_lora(session, lora_id).asset)


def trash_lora(session: Session, lora_id: int) -> Lora:
    return trash_row(session, Lora, lora_id, "lora_id")


def restore_lora(session: Session, lora_id: int) -> Lora:
    return restore_row(session, Lora, lora_id, "lora_id")
