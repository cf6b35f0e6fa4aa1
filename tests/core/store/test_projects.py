"""Projects on a real SQLite file: create, rename, list with counts, trash and restore; emptying the trash deletes
rows for good and removes exactly the files nothing else uses."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.store.generations import trash_generation
from core.store.history import list_generations
from core.store.loras import register_lora, trash_lora
from core.store.projects import (create_project, describe_project, get_project, list_projects, rename_project,
                                 restore_project, trash_project)
from core.store.schema import Asset, Generation, Lora, Project, Shot, Tag, TrainingRun, utc_now
from core.store.storyboards import create_storyboard
from core.store.tags import add_tags
from core.store.training_runs import create_training_run, trash_training_run
from core.store.trash import purge_trash


def write_file(folder, name, content: bytes):
    path = folder / name
    path.write_bytes(content)
    return path


def new_project(store, name="Fox film", description=""):
    with store.db.session() as session:
        return create_project(session, name, description).id


def test_create_rename_describe_and_get(store):
    project_id = new_project(store, "  Fox film ", "winter shots")
    with store.db.session() as session:
        project = get_project(session, project_id)
        assert (project.name, project.description, project.deleted_at) == ("Fox film", "winter shots", None)
        rename_project(session, project_id, "Fox film 2")
        describe_project(session, project_id, "spring shots")
    with store.db.session() as session:
        project = get_project(session, project_id)
        assert (project.name, project.description) == ("Fox film 2", "spring shots")


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, None, 3])
def test_bad_names_are_refused_with_their_value(store, name):
    with store.db.session() as session, pytest.raises(ValueError, match=r"`name` must be .* but is"):
        create_project(session, name)


def test_unknown_project_ids_are_named(store):
    with store.db.session() as session:
        with pytest.raises(ValueError, match=r"`project_id` must be the id of an existing project but is 99"):
            get_project(session, 99)
        with pytest.raises(ValueError, match=r"`project_id` must be a row id .* but is 'a'"):
            rename_project(session, "a", "x")


def test_list_counts_generations_outside_the_trash(store, add_generation):
    fox, owl, empty = new_project(store, "fox"), new_project(store, "owl"), new_project(store, "empty")
    for _ in range(3):
        add_generation("fox", project_id=fox)
    add_generation("owl", project_id=owl)
    with store.db.session() as session:
        trash_generation(session, add_generation("fox", project_id=fox))
        summaries = {s.project.name: s.generation_count for s in list_projects(session)}
    assert summaries == {"fox": 3, "owl": 1, "empty": 0}
    assert [s.project.id for s in list_projects_now(store)] == [empty, owl, fox]  # newest first


def list_projects_now(store, **kwargs):
    with store.db.session() as session:
        return list_projects(session, **kwargs)


def test_trashed_project_hides_its_generations_until_restored(store, add_generation):
    project_id = new_project(store)
    inside = add_generation("fox in the project", project_id=project_id)
    outside = add_generation("fox alone")
    with store.db.session() as session:
        trash_project(session, project_id)
    with store.db.session() as session:
        assert list_projects(session) == []
        assert [s.project.id for s in list_projects(session, include_deleted=True)] == [project_id]
        assert [g.id for g in list_generations(session).items] == [outside]
        assert list_generations(session, project_id=project_id).total == 0
        assert list_generations(session, project_id=project_id, include_deleted=True).total == 1
        assert session.get(Generation, inside).deleted_at is None  # hidden with its project, not trashed itself
        restore_project(session, project_id)
    with store.db.session() as session:
        assert {g.id for g in list_generations(session).items} == {inside, outside}


def test_purge_deletes_trash_and_removes_only_unused_files(store, add_generation, tmp_path):
    project_id = new_project(store)
    shared = write_file(tmp_path, "shared.png", b"used by a kept and a purged generation")
    only_trashed = write_file(tmp_path, "only.png", b"used only by the purged generation")
    reference = write_file(tmp_path, "ref.png", b"not an image, stored directly")
    with store.db.session() as session:
        shared_asset = store.add_asset(session, shared, "output")
        only_asset = store.add_asset(session, only_trashed, "output")
        reference_asset = store.add_asset(session, reference, "image")
        storyboard = create_storyboard(session, project_id, "board")
        storyboard.shots.append(Shot(position=0, num_frames=5, reference=reference_asset))
        ids = dict(shared_path=store.asset_path(shared_asset), only_path=store.asset_path(only_asset),
                   reference_path=store.asset_path(reference_asset), shared_id=shared_asset.id, only_id=only_asset.id)
    kept = add_generation("kept", video_asset_id=ids["shared_id"])
    purged = add_generation("purged", video_asset_id=ids["shared_id"], thumbnail_asset_id=ids["only_id"])
    add_generation("in the trashed project", project_id=project_id)
    with store.db.session() as session:
        add_tags(session, purged, ["gone"])
        add_tags(session, kept, ["kept"])
        trash_generation(session, purged)
        trash_project(session, project_id)

    report = purge_trash(store)

    assert (report.projects, report.generations, report.assets, report.files_removed, report.tags) == (1, 2, 2, 2, 1)
    assert report.bytes_freed == only_trashed.stat().st_size + reference.stat().st_size
    assert ids["shared_path"].is_file()
    assert not ids["only_path"].exists() and not ids["reference_path"].exists()
    with store.db.session() as session:
        assert set(session.scalars(select(Generation.id))) == {kept}
        assert session.scalars(select(Project)).all() == [] and session.scalars(select(Shot)).all() == []
        assert set(session.scalars(select(Asset.id))) == {ids["shared_id"]}
        assert list(session.scalars(select(Tag.name))) == ["kept"]
    assert purge_trash(store).files_removed == 0  # nothing left to do


def test_purge_keeps_files_of_assets_still_in_use_elsewhere(store, add_generation, tmp_path):
    video = write_file(tmp_path, "clip.mp4", b"same bytes")
    with store.db.session() as session:
        asset = store.add_asset(session, video, "output")
        path = store.asset_path(asset)
        asset_id = asset.id
    add_generation("in trash", video_asset_id=asset_id, deleted_at=utc_now())
    add_generation("kept", video_asset_id=asset_id)
    report = purge_trash(store)
    assert (report.generations, report.assets, report.files_removed) == (1, 0, 0)
    assert path.is_file()


def test_purge_older_than_keeps_recent_trash(store, add_generation):
    old = add_generation("old", deleted_at=utc_now() - timedelta(days=40))
    recent = add_generation("recent", deleted_at=utc_now() - timedelta(days=2))
    report = purge_trash(store, older_than=timedelta(days=30))
    assert report.generations == 1
    with store.db.session() as session:
        assert set(session.scalars(select(Generation.id))) == {recent}
        assert session.get(Generation, old) is None
    with pytest.raises(ValueError, match=r"`older_than` must be a timedelta .* but is 30"):
        purge_trash(store, older_than=30)


def test_purge_leaves_queued_and_running_generations_of_a_purged_project(store, add_generation):
    project_id = new_project(store)
    running = add_generation("running", project_id=project_id, status="running")
    add_generation("done", project_id=project_id)
    with store.db.session() as session:
        trash_project(session, project_id)
    assert purge_trash(store).generations == 1
    with store.db.session() as session:
        survivor = session.get(Generation, running)
        assert survivor is not None and survivor.project_id is None


def test_purge_removes_trashed_loras_and_training_runs_with_their_files(store, tmp_path):
    kept_file = write_file(tmp_path, "kept.safetensors", b"kept lora")
    trashed_file = write_file(tmp_path, "gone.safetensors", b"trashed lora")
    with store.db.session() as session:
        run = create_training_run(session, "fox lora")
        kept = register_lora(store, session, kept_file, name="kept", training_run_id=run.id)
        gone = register_lora(store, session, trashed_file, name="gone")
        paths = store.asset_path(kept.asset), store.asset_path(gone.asset)
        trash_lora(session, gone.id)
        trash_training_run(session, run.id)
    report = purge_trash(store)
    assert (report.loras, report.training_runs, report.files_removed) == (1, 1, 1)
    assert paths[0].is_file() and not paths[1].exists()
    with store.db.session() as session:
        assert [lora.name for lora in session.scalars(select(Lora))] == ["kept"]
        assert session.scalars(select(Lora)).one().training_run_id is None
        assert session.scalars(select(TrainingRun)).all() == []
