"""Maintenance on a real data folder: disk usage, every kind of leftover found (and healthy files not), only the
safe leftovers cleaned, and backups that stay sound while another connection writes."""

import os
import shutil
import sqlite3
import threading
import time
import zipfile
from contextlib import closing

import pytest
from sqlalchemy import func, select

from core.store import Store
from core.store.maintenance import backup, clean_orphans, disk_usage, find_orphans
from core.store.schema import Asset, Generation, Project

HOUR_AGO = time.time() - 2 * 3600


def add_file_asset(store, session, tmp_path, data, name, kind):
    path = tmp_path / name
    path.write_bytes(data)
    return store.add_asset(session, path, kind)


def make_healthy_store(store, tmp_path):
    """A project with a finished take and a running job whose staged files are in use; returns ids by name."""

    def write(session):
        video = add_file_asset(store, session, tmp_path, b"video bytes" * 100, "take.mp4", "output")
        thumbnail = add_file_asset(store, session, tmp_path, b"png bytes", "take.png", "thumbnail")
        project = Project(name="Healthy")
        done = Generation(project=project, prompt="done", status="done", request={},
                          video_asset_id=video.id, thumbnail_asset_id=thumbnail.id)
        running = Generation(project=project, prompt="running", status="running", request={})
        session.add_all([project, done, running])
        session.flush()
        return {"project": project.id, "done": done.id, "running": running.id, "video": video.id}

    ids = store.db.write(write)
    staging = store.data_dir.staging
    (staging / f"gen-{ids['running']}.mp4").write_bytes(b"half a video")
    (staging / f".gen-{ids['running']}.tmp1234").write_bytes(b"being written")
    return ids


def plant_orphans(store, tmp_path, ids):
    """One leftover of each kind, old enough to clean; returns what find_orphans should report."""
    untracked = store.files.add_bytes(b"a file no row knows", ".mp4")[1]
    incoming_folder = store.data_dir.files / "ab"
    incoming_folder.mkdir(exist_ok=True)
    incoming = incoming_folder / ".incoming-x1y2z3"
    incoming.write_bytes(b"a copy cut short")
    partial_backup = store.data_dir.backups / ".kelp-20260101-000000Z.db.partial"
    partial_backup.write_bytes(b"half a backup")

    def write(session):
        lost = add_file_asset(store, session, tmp_path, b"lost video", "lost.mp4", "output")
        spare = add_file_asset(store, session, tmp_path, b"an upload nobody used", "spare.png", "upload")
        broken = Generation(prompt="broken", status="done", request={}, video_asset_id=lost.id)
        failed = Generation(prompt="failed", status="failed", request={})
        session.add_all([broken, failed])
        session.flush()
        return lost, spare, broken.id, failed.id

    lost, spare, broken_id, failed_id = store.db.write(write)
    store.asset_path(lost).unlink()
    staging = store.data_dir.staging
    stale = [staging / f"gen-{failed_id}.mp4", staging / "leftover.tmp", staging / "import-abc"]
    stale[0].write_bytes(b"output of a failed job")
    stale[1].write_bytes(b"?")
    stale[2].mkdir()
    (stale[2] / "inside.mp4").write_bytes(b"an import that died")
    for path in [untracked, incoming, partial_backup, *stale, stale[2] / "inside.mp4"]:
        os.utime(path, (HOUR_AGO, HOUR_AGO))
    return {
        "untracked": [untracked], "incomplete": [incoming, partial_backup], "stale": sorted(stale),
        "missing": [lost.id], "unreferenced": [spare.id], "done_without_video": [broken_id],
    }


def all_files(store):
    root = store.data_dir.root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "kelp.db" not in p.name)


def test_a_healthy_store_reports_nothing(store, tmp_path):
    make_healthy_store(store, tmp_path)
    report = find_orphans(store)
    assert report.healthy
    assert (report.untracked_files, report.incomplete_files, report.stale_staging) == ([], [], [])
    assert (report.missing_files, report.unreferenced_assets, report.done_without_video) == ([], [], [])


def test_each_planted_orphan_is_found_and_nothing_else(store, tmp_path):
    ids = make_healthy_store(store, tmp_path)
    expected = plant_orphans(store, tmp_path, ids)
    report = find_orphans(store)
    assert report.untracked_files == expected["untracked"]
    assert sorted(report.incomplete_files) == sorted(expected["incomplete"])
    assert sorted(report.stale_staging) == expected["stale"]
    assert [a.asset_id for a in report.missing_files] == expected["missing"]
    assert [a.asset_id for a in report.unreferenced_assets] == expected["unreferenced"]
    assert report.done_without_video == expected["done_without_video"]
    assert not report.healthy


def add_generation(session, **columns):
    generation = Generation(request={}, **columns)
    session.add(generation)
    session.flush()
    return generation.id


def test_a_done_job_with_no_video_row_counts_as_missing_its_video(store):
    generation_id = store.db.write(lambda session: add_generation(session, status="done"))
    assert find_orphans(store).done_without_video == [generation_id]


def test_clean_removes_only_the_safe_leftovers(store, tmp_path):
    ids = make_healthy_store(store, tmp_path)
    healthy_files = all_files(store)
    expected = plant_orphans(store, tmp_path, ids)
    with store.db.session() as session:
        assets_before = session.scalar(select(func.count()).select_from(Asset))
    report = find_orphans(store)

    removed = clean_orphans(store, report)

    assert sorted(removed) == sorted(expected["untracked"] + expected["incomplete"] + expected["stale"])
    spare_path = report.unreferenced_assets[0].path
    assert spare_path.is_file()  # unreferenced assets are the trash purge's business
    assert sorted(set(all_files(store)) - {str(spare_path.relative_to(store.data_dir.root))}) == healthy_files
    with store.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Asset)) == assets_before
    after = find_orphans(store)
    assert (after.untracked_files, after.incomplete_files, after.stale_staging) == ([], [], [])
    assert [a.asset_id for a in after.missing_files] == expected["missing"]


def test_clean_spares_young_files_and_rechecks_what_changed_since_the_report(store, tmp_path):
    ids = make_healthy_store(store, tmp_path)
    young = store.files.add_bytes(b"just copied in, row not yet committed", ".mp4")[1]
    expected = plant_orphans(store, tmp_path, ids)
    report = find_orphans(store)
    assert young in report.untracked_files

    recorded = expected["untracked"][0]  # its row arrives after the report
    store.db.write(lambda s: store.add_asset(s, recorded, "output"))
    failed_id = expected["done_without_video"][0] + 1

    def start_again(session):
        session.get(Generation, failed_id).status = "running"  # its staged file is in use once more

    store.db.write(start_again)
    removed = clean_orphans(store, report)

    assert young.is_file() and recorded.is_file() and young not in removed and recorded not in removed
    assert (store.data_dir.staging / f"gen-{failed_id}.mp4").is_file()
    assert not (store.data_dir.staging / "leftover.tmp").exists()
    assert clean_orphans(store, find_orphans(store), min_age_s=0) == [young]


def test_clean_never_leaves_its_folders(store, tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    os.utime(outside, (HOUR_AGO, HOUR_AGO))
    report = find_orphans(store)
    report.untracked_files.append(outside)
    report.stale_staging.append(outside)
    report.incomplete_files.append(outside)
    assert clean_orphans(store, report) == []
    assert outside.is_file()
    with pytest.raises(ValueError, match="`min_age_s` must be a non-negative number of seconds but is -1"):
        clean_orphans(store, report, min_age_s=-1)


def test_disk_usage_adds_up_the_parts(store, tmp_path):
    ids = make_healthy_store(store, tmp_path)
    (store.data_dir.backups / "old.db").write_bytes(bytes(1000))
    usage = disk_usage(store)
    assert usage.assets_by_kind == {"output": 1100, "thumbnail": 9}
    assert usage.files == 1109
    assert usage.staging == len(b"half a video") + len(b"being written")
    assert usage.backups == 1000
    assert usage.database >= os.path.getsize(store.data_dir.database) > 0
    assert usage.by_project == {ids["project"]: 1109}
    assert usage.total == usage.files + usage.database + usage.staging + usage.backups + usage.training


def test_backup_while_another_connection_writes_is_sound_and_opens(store, tmp_path):
    make_healthy_store(store, tmp_path)
    stop = threading.Event()
    written = []

    def keep_writing():
        with Store.open(store.data_dir.root) as writer:  # a second connection, as another process would be
            while not stop.is_set():
                written.append(writer.db.write(lambda session: add_generation(session, prompt="x" * 500)))

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        while len(written) < 20:
            time.sleep(0.01)
        first = backup(store)
        second = backup(store, tmp_path / "elsewhere", include_files=False)
    finally:
        stop.set()
        thread.join()

    assert first.database.parent == store.data_dir.backups and first.database.name.startswith("kelp-")
    assert second.files is None and second.database.parent == tmp_path / "elsewhere"
    for copy in (first.database, second.database):
        with closing(sqlite3.connect(copy)) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert not copy.with_name(copy.name + "-wal").exists()
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(first.database, restored / "kelp.db")
    with zipfile.ZipFile(first.files) as archive:
        archive.extractall(restored)
    with Store.open(restored) as reopened:
        with reopened.db.session() as session:
            assert 20 <= session.scalar(select(func.count()).select_from(Generation)) <= 2 + len(written)
        assert find_orphans(reopened).healthy


def test_backups_in_the_same_second_get_their_own_names(store):
    first, second = backup(store, include_files=False), backup(store, include_files=False)
    assert first.database != second.database and first.database.is_file() and second.database.is_file()
    assert not list(store.data_dir.backups.glob(".*.partial"))


def test_backup_refuses_a_destination_that_is_a_file(store, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("")
    with pytest.raises(ValueError, match="`destination` must be a folder but .*a-file.* is a file"):
        backup(store, target)
