"""Project export and import: a faithful round trip, and archives that are damaged, hostile or too large
refused before anything reaches the database or the file store."""

import io
import json
import os
import zipfile
from datetime import datetime

import pytest
from sqlalchemy import func, select

from core.store import Store
from core.store.exchange import NotAKelpExport, export_project, import_project
from core.store.exchange_manifest import MANIFEST_NAME, media_name
from core.store.safe_zip import ZipLimits
from core.store.schema import Asset, Base, Generation, Project, Shot, Storyboard, Tag

VIDEO = b"\x00\x00\x00\x18ftypmp42 a tiny stand-in video" * 50
OTHER_VIDEO = b"\x00\x00\x00\x18ftypmp42 the extended video" * 60
THUMBNAIL = b"\x89PNG\r\n\x1a\n thumbnail"
REFERENCE = b"\x89PNG\r\n\x1a\n reference image"
SIDECAR = b'{"seed": 7}'


def add_file(store, session, tmp_path, data, name, kind):
    path = tmp_path / name
    path.write_bytes(data)
    return store.add_asset(session, path, kind)


def make_project(store, tmp_path, name="Seaside"):
    """A project with a storyboard of two shots, takes with shared files, tags, a parent link, a trashed
    generation, and a generation of another project that must stay behind. Returns the project id."""

    def write(session):
        video = add_file(store, session, tmp_path, VIDEO, "take.mp4", "output")
        extended = add_file(store, session, tmp_path, OTHER_VIDEO, "longer.mp4", "output")
        thumbnail = add_file(store, session, tmp_path, THUMBNAIL, "thumb.png", "thumbnail")
        reference = add_file(store, session, tmp_path, REFERENCE, "ref.png", "upload")
        sidecar = add_file(store, session, tmp_path, SIDECAR, "take.json", "sidecar")
        project = Project(name=name, description="waves at dusk")
        storyboard = Storyboard(project=project, name="Waves", subject="a grey sea", mode="chained",
                                settings={"steps": 20, "size": [832, 480]})
        second = Shot(storyboard=storyboard, position=1, prompt="the wave breaks", num_frames=33,
                      transition="crossfade", trim_start=2)
        first = Shot(storyboard=storyboard, position=0, prompt="a wave rises", num_frames=17,
                     reference_asset_id=reference.id, trim_end=1)
        session.add_all([project, storyboard, second, first])
        session.flush()
        sea, dusk = Tag(name="sea"), Tag(name="dusk")
        take = Generation(
            project=project, shot_id=first.id, prompt="a wave rises", model="random:tiny", seed=7, status="done",
            request={"prompt": "a wave rises", "model": "random:tiny", "image": "/old/place/ref.png"},
            timings={"total_s": 12.5}, result={"seed": 7}, favourite=True, rating=4, note="keep this one",
            video_asset_id=video.id, thumbnail_asset_id=thumbnail.id, sidecar_asset_id=sidecar.id,
            image_asset_id=reference.id, tags=[sea, dusk], started_at=datetime(2026, 1, 2, 3, 4, 5),
            finished_at=datetime(2026, 1, 2, 3, 5, 0), created_at=datetime(2026, 1, 2, 3, 0, 0),
        )
        failed = Generation(project=project, shot_id=second.id, prompt="the wave breaks", status="failed",
                            request={"prompt": "the wave breaks"}, error="out of memory", tags=[sea])
        session.add_all([take, failed])
        session.flush()
        longer = Generation(project=project, shot_id=second.id, parent_id=take.id, prompt="the wave breaks, longer",
                            status="done", request={"prompt": "the wave breaks, longer"}, task="extend",
                            video_asset_id=extended.id, extend_video_asset_id=video.id, thumbnail_asset_id=thumbnail.id)
        trashed = Generation(project=project, prompt="discarded", status="done", request={}, deleted_at=datetime.now())
        elsewhere = Generation(project=Project(name="Other"), prompt="not ours", status="done", request={})
        session.add_all([longer, trashed, elsewhere])
        session.flush()
        first.chosen_generation_id, second.chosen_generation_id = take.id, longer.id
        return project.id

    return store.db.write(write)


def normalised_project(store, project_id, *, include_trash=False):
    """The project as plain data without ids or timestamps: links are named by content, files by their bytes."""
    with store.db.session() as session:
        project = session.get(Project, project_id)

        def asset(asset_id):
            if asset_id is None:
                return None
            row = session.get(Asset, asset_id)
            return (row.kind, row.suffix, row.size_bytes, row.original_name, store.asset_path(row).read_bytes())

        def take(generation_id):
            return None if generation_id is None else session.get(Generation, generation_id).prompt

        def shot_name(shot_id):
            shot = session.get(Shot, shot_id) if shot_id is not None else None
            return None if shot is None else (shot.storyboard.name, shot.position)

        query = select(Generation).where(Generation.project_id == project_id)
        generations = session.scalars(query if include_trash else query.where(Generation.deleted_at.is_(None)))
        return {
            "name": project.name,
            "description": project.description,
            "storyboards": [
                {
                    "name": board.name, "subject": board.subject, "mode": board.mode, "settings": board.settings,
                    "shots": [
                        (shot.position, shot.prompt, shot.num_frames, shot.transition, shot.trim_start, shot.trim_end,
                         asset(shot.reference_asset_id), take(shot.chosen_generation_id))
                        for shot in board.shots
                    ],
                }
                for board in sorted(project.storyboards, key=lambda board: board.name)
            ],
            "generations": sorted(
                (
                    {
                        "prompt": g.prompt, "request": g.request, "model": g.model, "seed": g.seed, "task": g.task,
                        "status": g.status, "timings": g.timings, "result": g.result, "error": g.error,
                        "favourite": g.favourite, "rating": g.rating, "note": g.note, "started_at": g.started_at,
                        "finished_at": g.finished_at, "tags": sorted(tag.name for tag in g.tags),
                        "shot": shot_name(g.shot_id), "parent": take(g.parent_id), "video": asset(g.video_asset_id),
                        "thumbnail": asset(g.thumbnail_asset_id), "sidecar": asset(g.sidecar_asset_id),
                        "image": asset(g.image_asset_id), "last_image": asset(g.last_image_asset_id),
                        "extend_video": asset(g.extend_video_asset_id), "trashed": g.deleted_at is not None,
                    }
                    for g in generations
                ),
                key=lambda record: record["prompt"],
            ),
        }


def store_contents(store):
    """Row counts of every table and every file under the data folder (except the database's own)."""
    with store.db.session() as session:
        counts = {
            table.name: session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }
    root = store.data_dir.root
    files = sorted(str(path.relative_to(root)) for path in root.rglob("*") if "kelp.db" not in path.name)
    return counts, files


def rewritten(source, target, *, drop=(), replace=None, extra=()):
    """A copy of zip `source` without the members in `drop`, with `replace` {name: bytes}, plus `extra` members
    given as (ZipInfo or name, bytes)."""
    replace = replace or {}
    with zipfile.ZipFile(source) as reader, zipfile.ZipFile(target, "w") as writer:
        for info in reader.infolist():
            if info.filename not in drop:
                writer.writestr(info, replace.get(info.filename, reader.read(info)))
        for info, data in extra:
            writer.writestr(info, data)
    return target


def manifest_of(zip_path):
    with zipfile.ZipFile(zip_path) as archive:
        return json.loads(archive.read(MANIFEST_NAME))


@pytest.fixture
def exported(store, tmp_path):
    project_id = make_project(store, tmp_path)
    return export_project(store, project_id, tmp_path / "seaside.zip")


@pytest.fixture
def other_store(tmp_path):
    with Store.open(tmp_path / "other") as opened:
        yield opened


def test_round_trip_into_a_second_store_gives_an_equal_project(store, other_store, tmp_path, exported):
    original = normalised_project(store, 1)
    imported_id = import_project(other_store, exported)
    assert normalised_project(other_store, imported_id) == original
    prompts = [g["prompt"] for g in original["generations"]]
    assert prompts == ["a wave rises", "the wave breaks", "the wave breaks, longer"]
    assert original["storyboards"][0]["shots"][0][:2] == (0, "a wave rises")
    with other_store.db.session() as session:  # the other project and the trashed take stayed behind
        assert session.scalars(select(Project.name)).all() == ["Seaside"]
        assert session.scalar(select(func.count()).select_from(Generation)) == 3


def test_trashed_generations_travel_only_when_asked(store, other_store, tmp_path):
    project_id = make_project(store, tmp_path)
    archive = export_project(store, project_id, tmp_path / "all.zip", include_trash=True)
    imported_id = import_project(other_store, archive)
    copy = normalised_project(other_store, imported_id, include_trash=True)
    assert copy == normalised_project(store, project_id, include_trash=True)
    assert [g["trashed"] for g in copy["generations"] if g["prompt"] == "discarded"] == [True]


def test_export_holds_each_file_once_and_a_versioned_manifest(exported):
    manifest = manifest_of(exported)
    assert (manifest["format"], manifest["version"]) == ("kelp-project", 1)
    with zipfile.ZipFile(exported) as archive:
        names = sorted(archive.namelist())
    assert names == sorted([MANIFEST_NAME] + [media_name(a["sha256"], a["suffix"]) for a in manifest["assets"]])
    assert len(manifest["assets"]) == 5
    assert not list(exported.parent.glob(".seaside.zip.*"))  # no partial file left beside it


def test_importing_into_the_same_store_renames_and_shares_the_files(store, exported):
    counts, files = store_contents(store)
    imported_id = import_project(store, exported)
    again_id = import_project(store, exported)
    new_counts, new_files = store_contents(store)
    assert new_files == files  # content-addressed: the same bytes are not stored twice
    assert new_counts["assets"] == counts["assets"]
    assert new_counts["generations"] == counts["generations"] + 6
    with store.db.session() as session:
        assert session.get(Project, imported_id).name == "Seaside (imported)"
        assert session.get(Project, again_id).name == "Seaside (imported 2)"
    original, copy = normalised_project(store, 1), normalised_project(store, imported_id)
    assert {**copy, "name": "Seaside"} == original


def test_unfinished_jobs_come_in_interrupted_not_queued(store, other_store, tmp_path):
    def write(session):
        project = Project(name="Pending")
        session.add(Generation(project=project, prompt="later", status="queued", request={"prompt": "later"}))
        session.add(project)
        session.flush()
        return project.id

    archive = export_project(store, store.db.write(write), tmp_path / "pending.zip")
    imported_id = import_project(other_store, archive)
    with other_store.db.session() as session:
        job = session.scalars(select(Generation).where(Generation.project_id == imported_id)).one()
        assert job.status == "interrupted" and job.error


def test_export_refuses_a_missing_project_and_keeps_an_existing_archive_on_failure(store, tmp_path, exported):
    with pytest.raises(ValueError, match="`project_id` must be the id of an existing project but is 99"):
        export_project(store, 99, tmp_path / "none.zip")
    before = exported.read_bytes()
    with store.db.session() as session:
        video = session.scalars(select(Asset).where(Asset.kind == "output")).first()
        store.asset_path(video).unlink()
    with pytest.raises(FileNotFoundError, match="missing from the file store"):
        export_project(store, 1, exported)
    assert exported.read_bytes() == before
    assert sorted(p.name for p in tmp_path.glob(".seaside.zip*")) == []


def symlink_member(name):
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16)
    return info


@pytest.mark.parametrize(
    "member, shown",
    [
        ("../evil.txt", "'../evil.txt'"),
        ("/etc/passwd", "'/etc/passwd'"),
        ("media/../../x", "'media/../../x'"),
        ("media\\..\\..\\x", "backslash"),
        ("C:/windows/x", "'C:/windows/x'"),
        (symlink_member("media/link"), "symbolic link"),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "backslash", "drive", "symlink"],
)
def test_unsafe_member_names_refuse_the_whole_archive(other_store, tmp_path, exported, member, shown):
    hostile = rewritten(exported, tmp_path / "hostile.zip", extra=[(member, b"/etc/passwd")])
    before = store_contents(other_store)
    with pytest.raises(NotAKelpExport, match="is not a Kelp project export") as refused:
        import_project(other_store, hostile)
    assert shown in str(refused.value) and "hostile.zip" in str(refused.value)
    assert store_contents(other_store) == before
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "x").exists()


def damaged_archives(exported, tmp_path):
    data = exported.read_bytes()
    manifest = manifest_of(exported)
    video = next(a for a in manifest["assets"] if a["kind"] == "output")
    video_name = media_name(video["sha256"], video["suffix"])
    (tmp_path / "truncated.zip").write_bytes(data[: len(data) // 2])
    (tmp_path / "random.zip").write_bytes(os.urandom(4096))
    rewritten(exported, tmp_path / "no-manifest.zip", drop={MANIFEST_NAME})
    future, other_format = {**manifest, "version": 99}, {**manifest, "format": "zip"}
    rewritten(exported, tmp_path / "future.zip", replace={MANIFEST_NAME: json.dumps(future).encode()})
    rewritten(exported, tmp_path / "wrong-format.zip", replace={MANIFEST_NAME: json.dumps(other_format).encode()})
    rewritten(exported, tmp_path / "bad-json.zip", replace={MANIFEST_NAME: b"{not json"})
    rewritten(exported, tmp_path / "deep.zip", replace={MANIFEST_NAME: b"[" * 100_000})
    swapped = bytes(reversed(VIDEO))  # same size, other bytes: only the sha256 can tell
    rewritten(exported, tmp_path / "altered.zip", replace={video_name: swapped})
    rewritten(exported, tmp_path / "no-media.zip", drop={video_name})
    broken_link = json.loads(json.dumps(manifest))
    broken_link["generations"][0]["parent_id"] = 12345
    rewritten(exported, tmp_path / "dangling.zip", replace={MANIFEST_NAME: json.dumps(broken_link).encode()})
    flipped = bytearray(data)  # one byte of the stored video changed in place: the CRC check catches it
    start = data.index(VIDEO[:40])
    flipped[start + 10] ^= 0xFF
    (tmp_path / "flipped.zip").write_bytes(bytes(flipped))
    return {
        "truncated.zip": "not a readable zip file",
        "random.zip": "not a readable zip file",
        "no-manifest.zip": "it has no kelp-project.json",
        "future.zip": "format version 99",
        "wrong-format.zip": "has format 'zip'",
        "bad-json.zip": "not valid UTF-8 JSON",
        "deep.zip": "nests too deeply",
        "altered.zip": "sha256",
        "no-media.zip": "is missing",
        "dangling.zip": "parent_id 12345 names no record",
        "flipped.zip": "cannot be read",
    }


def test_damaged_archives_are_refused_with_a_clear_message(other_store, tmp_path, exported):
    before = store_contents(other_store)
    for name, reason in damaged_archives(exported, tmp_path).items():
        with pytest.raises(ValueError, match="is not a Kelp project export") as refused:
            import_project(other_store, tmp_path / name)
        assert name in str(refused.value) and reason in str(refused.value), str(refused.value)
        assert store_contents(other_store) == before, name


def test_a_field_of_the_wrong_type_is_named(other_store, tmp_path, exported):
    manifest = manifest_of(exported)
    manifest["storyboards"][0]["shots"][1]["num_frames"] = "many"
    bad = rewritten(exported, tmp_path / "bad.zip", replace={MANIFEST_NAME: json.dumps(manifest).encode()})
    with pytest.raises(NotAKelpExport, match=r"storyboards\[0\]\.shots\[1\]\.num_frames must be an int but is 'many'"):
        import_project(other_store, bad)


def test_size_limits_stop_zip_bombs(other_store, tmp_path, exported):
    before = store_contents(other_store)
    with pytest.raises(NotAKelpExport, match="over the `max_member_bytes` limit of 1000"):
        import_project(other_store, exported, limits=ZipLimits(max_member_bytes=1000))
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST_NAME, b"{}")
        archive.writestr("media/zeros.bin", bytes(4 << 20))
    (tmp_path / "bomb.zip").write_bytes(bomb.getvalue())
    with pytest.raises(NotAKelpExport, match="'media/zeros.bin' unpacks .*x its packed size.*zip bomb"):
        import_project(other_store, tmp_path / "bomb.zip", limits=ZipLimits(max_compression_ratio=100))
    assert store_contents(other_store) == before


def test_a_missing_file_is_not_a_format_error(other_store, tmp_path):
    with pytest.raises(FileNotFoundError, match="`zip_path` must be an existing file"):
        import_project(other_store, tmp_path / "nowhere.zip")
