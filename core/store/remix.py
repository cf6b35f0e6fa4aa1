"""A new request from a past generation: the same settings and inputs, with the changes the user asks for.

Kept apart from history.py because it needs core.request, which loads torch.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.request import GenerationRequest, LoraSpec
from core.store.generations import get_generation
from core.store.jobs import stored_request
from core.store.schema import Asset
from core.store.store import Store

REQUEST_FIELDS = tuple(field.name for field in fields(GenerationRequest))


def remix_request(store: Store, session: Session, generation_id: int, **overrides: Any) -> GenerationRequest:
    """Generation `generation_id`'s request, ready to queue again.

    Input images and clips point at their copies in the store. A request that asked for a random seed gets
    the seed that was actually used, so that without overrides the remix repeats the generation; pass
    `seed=None` for a new random one. LoRAs whose file was recorded (by sha256) and is in the store point at
    the stored copy. `overrides` are request fields, e.g. `seed=7, prompt="..."`; they are not validated here
    (validate_request does that when the remix is queued).
    """
    unknown = sorted(set(overrides) - set(REQUEST_FIELDS))
    if unknown:
        raise ValueError(f"`overrides` must be request fields ({', '.join(REQUEST_FIELDS)}) but include {unknown}")
    generation = get_generation(session, generation_id)
    if generation.task == "cut":
        raise ValueError(f"generation {generation_id} is a storyboard cut, not a generated clip: re-render or re-cut "
                         "its shots in the Storyboard tab instead of remixing it")
    request = stored_request(store, session, generation.id)
    if request.seed is None and generation.seed is not None:
        request = replace(request, seed=generation.seed)
    loras = tuple(_stored_lora(store, session, lora, generation.result) for lora in request.loras)
    request = replace(request, loras=loras)
    return replace(request, **overrides)


def _stored_lora(store: Store, session: Session, lora: LoraSpec, result: dict[str, Any]) -> LoraSpec:
    """The LoRA at its copy in the store when the generation's result recorded its sha256 and the store has it."""
    items = (result or {}).get("loras") or []
    recorded = {item.get("path"): item.get("sha256") for item in items if isinstance(item, dict)}
    sha256 = recorded.get(str(lora.path))
    if not sha256:
        return lora
    asset = session.scalars(select(Asset).where(Asset.sha256 == sha256, Asset.suffix == ".safetensors")).first()
    return lora if asset is None else replace(lora, path=str(store.asset_path(asset)))
