"""The project export format's `kelp-project.json`: a project, its storyboards and ordered shots, its generations
and the metadata of every asset they point at. Built from the rows on export; checked field by field on import,
since the file may come from anywhere. Ids in the file are the exporting store's and only link records together."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from core.store.checks import get_row
from core.store.files import check_sha256, check_suffix
from core.store.references import ASSET_REFERENCES
from core.store.schema import ASSET_KINDS, GENERATION_STATUSES, Asset, Generation, Project, Shot, Storyboard

FORMAT_NAME = "kelp-project"
FORMAT_VERSION = 1  # bump when a reader of the old version could misread the new one
MANIFEST_NAME = "kelp-project.json"
MEDIA_FOLDER = "media"
INT64 = 1 << 63
PLAIN_TYPES = {"str": str, "bool": bool, "dict": dict, "list": list}

GENERATION_ASSET_FIELDS = tuple(column.key for column in ASSET_REFERENCES if column.class_ is Generation)

# Field types: "int", "float", "str", "bool", "dict", "list", "time" (ISO 8601, UTC); "?" allows null.
PROJECT_FIELDS = {"name": "str", "description": "str"}
STORYBOARD_FIELDS = {
    "id": "int", "name": "str", "subject": "str", "mode": "str", "settings": "dict", "shots": "list",
}
SHOT_FIELDS = {
    "id": "int", "position": "int", "prompt": "str", "num_frames": "int", "reference_asset_id": "int?",
    "chosen_generation_id": "int?", "transition": "str", "trim_start": "int", "trim_end": "int",
}
GENERATION_FIELDS = {
    "id": "int", "shot_id": "int?", "parent_id": "int?", "source": "str", "request": "dict", "prompt": "str",
    "model": "str", "weights_hash": "str", "seed": "int?", "task": "str", "status": "str", "progress": "float",
    "started_at": "time?", "finished_at": "time?", "timings": "dict", "error": "str", "result": "dict",
    "favourite": "bool", "rating": "int?", "note": "str", "tags": "list", "created_at": "time", "deleted_at": "time?",
    **{field: "int?" for field in GENERATION_ASSET_FIELDS},
}
ASSET_FIELDS = {
    "id": "int", "sha256": "str", "suffix": "str", "kind": "str", "size_bytes": "int", "original_name": "str",
}
# Fields filled from relationships or remapped ids rather than copied from the row.
DERIVED_FIELDS = {"shots", "tags", "shot_id", "parent_id", "chosen_generation_id"}


def media_name(sha256: str, suffix: str) -> str:
    """The zip member holding an asset's bytes; content-addressed, so a shared file is stored once."""
    return f"{MEDIA_FOLDER}/{check_sha256(sha256)}{check_suffix(suffix)}"


def project_manifest(session: Session, project_id: int, *, include_trash: bool = False) -> dict[str, Any]:
    """The manifest of project `project_id`: its storyboards, the generations filed under it, made for its
    shots or chosen by them (trashed ones only with `include_trash`), and the assets all of these point at."""
    project = get_row(session, Project, project_id, "project_id")
    storyboards = list(
        session.scalars(select(Storyboard).where(Storyboard.project_id == project.id).order_by(Storyboard.id))
    )
    shots = [shot for storyboard in storyboards for shot in storyboard.shots]
    shot_ids = {shot.id for shot in shots}
    chosen_ids = {shot.chosen_generation_id for shot in shots if shot.chosen_generation_id is not None}
    query = select(Generation).options(selectinload(Generation.tags)).where(
        or_(Generation.project_id == project.id, Generation.shot_id.in_(shot_ids), Generation.id.in_(chosen_ids))
    )
    if not include_trash:
        query = query.where(Generation.deleted_at.is_(None))
    generations = list(session.scalars(query.order_by(Generation.created_at, Generation.id)))
    generation_ids = {generation.id for generation in generations}

    asset_ids = {shot.reference_asset_id for shot in shots}
    asset_ids |= {getattr(generation, field) for generation in generations for field in GENERATION_ASSET_FIELDS}
    asset_ids.discard(None)
    assets = list(session.scalars(select(Asset).where(Asset.id.in_(asset_ids)).order_by(Asset.id)))

    def shot_record(shot: Shot) -> dict[str, Any]:
        chosen = shot.chosen_generation_id if shot.chosen_generation_id in generation_ids else None
        return {**_copy_fields(shot, SHOT_FIELDS), "chosen_generation_id": chosen}

    def generation_record(generation: Generation) -> dict[str, Any]:
        return {
            **_copy_fields(generation, GENERATION_FIELDS),
            "shot_id": generation.shot_id if generation.shot_id in shot_ids else None,
            "parent_id": generation.parent_id if generation.parent_id in generation_ids else None,
            "tags": sorted(tag.name for tag in generation.tags),
        }

    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "exported_at": _time_text(datetime.now(timezone.utc).replace(tzinfo=None)),
        "project": _copy_fields(project, PROJECT_FIELDS),
        "storyboards": [
            {**_copy_fields(storyboard, STORYBOARD_FIELDS), "shots": [shot_record(shot) for shot in storyboard.shots]}
            for storyboard in storyboards
        ],
        "generations": [generation_record(generation) for generation in generations],
        "assets": [_copy_fields(asset, ASSET_FIELDS) for asset in assets],
    }


def checked_manifest(document: Any) -> dict[str, Any]:
    """`document` (parsed JSON) checked against the format, with times as datetimes; ValueError says what is wrong."""
    if not isinstance(document, dict):
        raise ValueError(f"{MANIFEST_NAME} must hold a JSON object but holds {type(document).__name__}")
    if document.get("format") != FORMAT_NAME:
        raise ValueError(f"{MANIFEST_NAME} has format {document.get('format')!r}, expected {FORMAT_NAME!r}")
    version = document.get("version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{MANIFEST_NAME} has format version {version!r}; this Kelp reads version {FORMAT_VERSION} "
            f"(a newer Kelp may have written it)"
        )
    project = _checked(document.get("project"), PROJECT_FIELDS, "project")
    storyboards = []
    for i, record in enumerate(_list(document, "storyboards")):
        storyboard = _checked(record, STORYBOARD_FIELDS, f"storyboards[{i}]")
        storyboard["shots"] = [
            _checked(shot, SHOT_FIELDS, f"storyboards[{i}].shots[{j}]") for j, shot in enumerate(storyboard["shots"])
        ]
        storyboards.append(storyboard)
    generations = [
        _checked(record, GENERATION_FIELDS, f"generations[{i}]")
        for i, record in enumerate(_list(document, "generations"))
    ]
    assets = [_checked(record, ASSET_FIELDS, f"assets[{i}]") for i, record in enumerate(_list(document, "assets"))]
    manifest = {"project": project, "storyboards": storyboards, "generations": generations, "assets": assets}
    _check_values(manifest)
    return manifest


def _check_values(manifest: dict[str, Any]) -> None:
    """Values that have the right type but not a valid value, and ids that point at no record."""
    shots = [shot for storyboard in manifest["storyboards"] for shot in storyboard["shots"]]
    asset_ids = _unique_ids(manifest["assets"], "assets")
    shot_ids = _unique_ids(shots, "shots")
    generation_ids = _unique_ids(manifest["generations"], "generations")
    _unique_ids(manifest["storyboards"], "storyboards")

    for i, asset in enumerate(manifest["assets"]):
        where = f"assets[{i}]"
        _wrap(where, check_sha256, asset["sha256"])
        _wrap(where, check_suffix, asset["suffix"])
        if asset["suffix"] != asset["suffix"].lower():
            raise ValueError(f"{where}.suffix must be lower case but is {asset['suffix']!r}")
        if asset["kind"] not in ASSET_KINDS:
            raise ValueError(f"{where}.kind must be one of {ASSET_KINDS} but is {asset['kind']!r}")
        if asset["size_bytes"] < 0:
            raise ValueError(f"{where}.size_bytes must not be negative but is {asset['size_bytes']!r}")
    for shot in shots:
        _check_link(shot, "reference_asset_id", asset_ids, f"shot {shot['id']}")
        _check_link(shot, "chosen_generation_id", generation_ids, f"shot {shot['id']}")
    for generation in manifest["generations"]:
        where = f"generation {generation['id']}"
        if generation["status"] not in GENERATION_STATUSES:
            raise ValueError(f"{where}: status must be one of {GENERATION_STATUSES} but is {generation['status']!r}")
        if generation["rating"] is not None and not 1 <= generation["rating"] <= 5:
            raise ValueError(f"{where}: rating must be 1 to 5 or null but is {generation['rating']!r}")
        for tag in generation["tags"]:
            if not isinstance(tag, str) or not tag.strip() or len(tag) > 100:
                raise ValueError(f"{where}: tags must be non-empty strings of at most 100 characters, got {tag!r}")
        _check_link(generation, "shot_id", shot_ids, where)
        _check_link(generation, "parent_id", generation_ids, where)
        for field in GENERATION_ASSET_FIELDS:
            _check_link(generation, field, asset_ids, where)


def _copy_fields(row: Any, spec: dict[str, str]) -> dict[str, Any]:
    return {
        key: _time_text(getattr(row, key)) if kind.startswith("time") else getattr(row, key)
        for key, kind in spec.items() if key not in DERIVED_FIELDS
    }


def _time_text(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _checked(record: Any, spec: dict[str, str], where: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ValueError(f"{where} must be a JSON object but is {_short(record)}")
    checked = {}
    for key, kind in spec.items():
        if key not in record:
            raise ValueError(f"{where}.{key} is missing")
        checked[key] = _checked_value(record[key], kind, f"{where}.{key}")
    return checked


def _checked_value(value: Any, kind: str, where: str) -> Any:
    nullable = kind.endswith("?")
    if value is None and nullable:
        return None
    kind = kind.rstrip("?")
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool) and -INT64 <= value < INT64:
        return value
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "time" and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{where} must be an ISO 8601 time but is {_short(value)}") from None
        return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment
    if kind in PLAIN_TYPES and isinstance(value, PLAIN_TYPES[kind]):
        return value
    article = "an" if kind == "int" else "a"
    raise ValueError(f"{where} must be {article} {kind}{' or null' if nullable else ''} but is {_short(value)}")


def _list(document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{MANIFEST_NAME}'s {key!r} must be a list but is {_short(value)}")
    return value


def _unique_ids(records: list[dict[str, Any]], table: str) -> set[int]:
    ids = [record["id"] for record in records]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{table} ids must be unique but some repeat")
    return set(ids)


def _check_link(record: dict[str, Any], key: str, known: set[int], where: str) -> None:
    if record[key] is not None and record[key] not in known:
        raise ValueError(f"{where}: {key} {record[key]!r} names no record in the export")


def _wrap(where: str, check, value: Any) -> None:
    try:
        check(value)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
