"""Moving a project between Kelp installations. `export_project` writes one zip: `kelp-project.json` (see
exchange_manifest) and `media/<sha256><suffix>` for every file its rows point at. `import_project` checks such a
zip completely (member names, sizes, the manifest, every file's sha256) before it adds anything, then stores the
files and adds the project with new ids in one transaction."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.checks import check_id
from core.store.exchange_manifest import (
    GENERATION_ASSET_FIELDS,
    GENERATION_FIELDS,
    MANIFEST_NAME,
    checked_manifest,
    media_name,
    project_manifest,
)
from core.store.files import CHUNK
from core.store.safe_zip import MiB, ZipLimits, check_members, extract_verified, read_member
from core.store.schema import Asset, Generation, Project, Shot, Storyboard, Tag
from core.store.store import Store

MAX_MANIFEST_BYTES = 64 * MiB  # a 10,000-generation manifest is a few MiB
UNFINISHED_STATUSES = ("queued", "running")  # imported as "interrupted": the new store's worker must not start them
IMPORTED_UNFINISHED_NOTE = "it had not finished when its project was exported"
ROW_FIELDS_SET_ON_IMPORT = {"id", "shot_id", "parent_id", "tags", *GENERATION_ASSET_FIELDS}


class NotAKelpExport(ValueError):
    """The file given to `import_project` is damaged, unsafe, or not written by `export_project`."""

    def __init__(self, zip_path: str | Path, reason: str):
        super().__init__(f"{str(zip_path)!r} is not a Kelp project export: {reason}")
        self.zip_path = Path(zip_path)
        self.reason = reason


def export_project(store: Store, project_id: int, zip_path: str | Path, *, include_trash: bool = False) -> Path:
    """Write project `project_id` to `zip_path` (replaced atomically if it exists) and return the path.

    Generations in the trash stay behind unless `include_trash`. Every file is checked against its sha256 as
    it is copied, so a damaged store fails the export instead of producing an archive that import refuses.
    """
    check_id("project_id", project_id)
    zip_path = Path(zip_path)
    if not zip_path.parent.is_dir():
        raise ValueError(f"`zip_path` must be in an existing folder but {str(zip_path.parent)!r} is not one")
    if zip_path.is_dir():
        raise ValueError(f"`zip_path` must be a file name but {str(zip_path)!r} is a folder")
    # Read the rows in one short transaction; copying the files, which may take minutes, holds no lock.
    with store.db.session() as session:
        manifest = project_manifest(session, project_id, include_trash=include_trash)
    _write_archive_atomically(store, zip_path, manifest)
    return zip_path


def import_project(store: Store, zip_path: str | Path, *, limits: ZipLimits | None = None) -> int:
    """Add the project exported to `zip_path` as a new project and return its id.

    Nothing is written unless the whole archive checks out (NotAKelpExport, a ValueError, says what is wrong).
    The project keeps its name, with " (imported)" added when a project of that name exists. Files enter the
    content-addressed store first, so a file already there is kept once; jobs that were queued or running
    when exported come in as "interrupted". `limits` caps sizes against zip bombs (see ZipLimits).
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise FileNotFoundError(f"`zip_path` must be an existing file but {str(zip_path)!r} is not")
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as error:
        reason = f"it is not a readable zip file; it may be truncated or damaged ({error})"
        raise NotAKelpExport(zip_path, reason) from error
    with archive:
        try:
            manifest, media = _checked_contents(archive, limits or ZipLimits())
        except ValueError as error:
            raise NotAKelpExport(zip_path, str(error)) from error
        _check_free_space(store, zip_path, sum(info.file_size for info in media.values()))
        _store_media(store, zip_path, archive, media)
    return store.db.write(lambda session: _add_project(session, manifest))


def _write_archive_atomically(store: Store, zip_path: Path, manifest: dict[str, Any]) -> None:
    document = json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8")
    partial = tempfile.NamedTemporaryFile(
        dir=zip_path.parent, prefix=f".{zip_path.name}.", suffix=".partial", delete=False
    )
    try:
        with partial:
            with zipfile.ZipFile(partial, "w") as archive:
                archive.writestr(_member_info(MANIFEST_NAME, zipfile.ZIP_DEFLATED), document)
                for asset in manifest["assets"]:
                    _copy_asset_into(store, archive, asset)
            partial.flush()
            os.fsync(partial.fileno())
        os.replace(partial.name, zip_path)
    except BaseException:
        Path(partial.name).unlink(missing_ok=True)
        raise


def _copy_asset_into(store: Store, archive: zipfile.ZipFile, asset: dict[str, Any]) -> None:
    path = store.files.path_for(asset["sha256"], asset["suffix"])
    if not path.is_file():
        raise FileNotFoundError(
            f"cannot export: asset {asset['id']}'s file {str(path)!r} is missing from the file store "
            f"(maintenance.find_orphans lists such assets)"
        )
    # Stored as is: video and PNG are compressed already.
    info = _member_info(media_name(asset["sha256"], asset["suffix"]), zipfile.ZIP_STORED)
    info.file_size = path.stat().st_size  # lets zipfile choose zip64 up front for files over 2 GiB
    digest = hashlib.sha256()
    with open(path, "rb") as reader, archive.open(info, "w") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    if digest.hexdigest() != asset["sha256"]:
        raise ValueError(f"cannot export: asset {asset['id']}'s file {str(path)!r} is damaged (its sha256 changed)")


def _member_info(name: str, method: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=datetime.now().timetuple()[:6])
    info.compress_type = method
    info.external_attr = 0o644 << 16  # a regular file, readable by all, whatever the exporting umask
    return info


def _checked_contents(
    archive: zipfile.ZipFile, limits: ZipLimits
) -> tuple[dict[str, Any], dict[str, zipfile.ZipInfo]]:
    """The checked manifest and the media member of every asset it lists; ValueError if anything is wrong."""
    infos = archive.infolist()
    check_members(infos, limits)
    members = {info.filename: info for info in infos}
    if MANIFEST_NAME not in members:
        raise ValueError(f"it has no {MANIFEST_NAME}")
    data = read_member(archive, members[MANIFEST_NAME], MAX_MANIFEST_BYTES)
    try:
        document = json.loads(data.decode("utf-8"))
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError both are
        raise ValueError(f"{MANIFEST_NAME} is not valid UTF-8 JSON ({error})") from error
    except RecursionError:
        raise ValueError(f"{MANIFEST_NAME} nests too deeply to read") from None
    manifest = checked_manifest(document)
    media: dict[str, zipfile.ZipInfo] = {}
    for asset in manifest["assets"]:
        name = media_name(asset["sha256"], asset["suffix"])
        info = members.get(name)
        if info is None or info.is_dir():
            raise ValueError(f"asset {asset['id']}'s file {name!r} is missing")
        if info.file_size != asset["size_bytes"]:
            raise ValueError(f"{name!r} is {info.file_size} bytes but asset {asset['id']} says {asset['size_bytes']}")
        media[name] = info
    return manifest, media


def _check_free_space(store: Store, zip_path: Path, needed: int) -> None:
    free = shutil.disk_usage(store.data_dir.staging).free
    if needed > free:
        raise OSError(
            errno.ENOSPC, f"importing {str(zip_path)!r} needs {needed} bytes but the data folder has {free} free"
        )


def _store_media(store: Store, zip_path: Path, archive: zipfile.ZipFile, media: dict[str, zipfile.ZipInfo]) -> None:
    """Unpack every file into a private staging folder, checking each sha256; only when all are sound do they
    move into the file store, so a bad archive leaves the store untouched."""
    with tempfile.TemporaryDirectory(dir=store.data_dir.staging, prefix="import-") as folder:
        unpacked = []
        for name, info in media.items():
            file_name = name.rpartition("/")[2]  # "<sha256><suffix>", checked by media_name; never a path
            sha256, suffix = file_name[:64], file_name[64:]
            target = Path(folder) / file_name
            try:
                extract_verified(archive, info, target, sha256)
            except ValueError as error:
                raise NotAKelpExport(zip_path, str(error)) from error
            unpacked.append((target, suffix))
        for target, suffix in unpacked:
            store.files.add_file(target, suffix, move=True)


def _add_project(session: Session, manifest: dict[str, Any]) -> int:
    """The manifest's rows with new ids; every link between them mapped from the export's ids to the new ones."""
    asset_ids = {record["id"]: _asset_row(session, record).id for record in manifest["assets"]}
    source = manifest["project"]
    project = Project(name=_unused_project_name(session, source["name"]), description=source["description"])
    session.add(project)
    shots: dict[int, Shot] = {}
    for record in manifest["storyboards"]:
        storyboard = Storyboard(
            project=project, name=record["name"], subject=record["subject"], mode=record["mode"],
            settings=record["settings"],
        )
        session.add(storyboard)
        for shot_record in record["shots"]:
            shots[shot_record["id"]] = shot = Shot(
                storyboard=storyboard,
                position=shot_record["position"],
                prompt=shot_record["prompt"],
                num_frames=shot_record["num_frames"],
                reference_asset_id=asset_ids.get(shot_record["reference_asset_id"]),
                transition=shot_record["transition"],
                trim_start=shot_record["trim_start"],
                trim_end=shot_record["trim_end"],
            )
            session.add(shot)
    session.flush()

    tags = _tag_rows(session, {name for record in manifest["generations"] for name in record["tags"]})
    generations: dict[int, Generation] = {}
    for record in manifest["generations"]:
        fields = {key: record[key] for key in GENERATION_FIELDS if key not in ROW_FIELDS_SET_ON_IMPORT}
        if fields["status"] in UNFINISHED_STATUSES:
            fields["status"], fields["error"] = "interrupted", fields["error"] or IMPORTED_UNFINISHED_NOTE
        generation = Generation(
            project_id=project.id,
            shot_id=shots[record["shot_id"]].id if record["shot_id"] is not None else None,
            tags=[tags[name] for name in record["tags"]],
            **{field: asset_ids.get(record[field]) for field in GENERATION_ASSET_FIELDS},
            **fields,
        )
        session.add(generation)
        generations[record["id"]] = generation
    session.flush()

    for record in manifest["generations"]:
        if record["parent_id"] is not None:
            generations[record["id"]].parent_id = generations[record["parent_id"]].id
    for record in manifest["storyboards"]:
        for shot_record in record["shots"]:
            if shot_record["chosen_generation_id"] is not None:
                shots[shot_record["id"]].chosen_generation_id = generations[shot_record["chosen_generation_id"]].id
    session.flush()
    return project.id


def _asset_row(session: Session, record: dict[str, Any]) -> Asset:
    asset = session.scalars(
        select(Asset).where(Asset.sha256 == record["sha256"], Asset.suffix == record["suffix"])
    ).first()
    if asset is None:
        asset = Asset(
            sha256=record["sha256"], suffix=record["suffix"], kind=record["kind"],
            size_bytes=record["size_bytes"], original_name=record["original_name"],
        )
        session.add(asset)
        session.flush()
    return asset


def _tag_rows(session: Session, names: set[str]) -> dict[str, Tag]:
    rows = {tag.name: tag for tag in session.scalars(select(Tag).where(Tag.name.in_(names)))}
    for name in sorted(names - rows.keys()):
        rows[name] = Tag(name=name)
        session.add(rows[name])
    return rows


def _unused_project_name(session: Session, name: str) -> str:
    taken = set(session.scalars(select(Project.name).where(Project.deleted_at.is_(None))))
    if name not in taken:
        return name
    candidate, number = f"{name} (imported)", 1
    while candidate in taken:
        number += 1
        candidate = f"{name} (imported {number})"
    return candidate
