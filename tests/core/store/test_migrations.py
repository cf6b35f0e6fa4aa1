"""Migrations: an empty database reaches the newest schema; a database of the first released schema (the
committed fixture kelp-0001.sqlite) is migrated with every row kept and its prompts searchable."""

import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect

from core.store import Store
from core.store.database import create_database_engine, current_revision, head_revision, integrity_check, sqlite_url
from core.store.history import list_generations
from core.store.schema import Base, Generation, Lora, Project, Setting, Shot, TrainingRun
from tests.core.store.fixtures.make_fixture_0001 import FIXTURE, make_fixture


def table_rows(path: Path, tables=None) -> tuple[dict[str, list[tuple]], dict[str, list[str]]]:
    """Every row of every table (or of `tables`) and the tables' columns, read with plain sqlite3."""
    connection = sqlite3.connect(path)
    try:
        names = tables or [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE 'generations_fts%' AND name != 'alembic_version'")]
        columns = {name: [row[1] for row in connection.execute(f"PRAGMA table_info({name})")] for name in names}
        return {name: connection.execute(f"SELECT {', '.join(columns[name])} FROM {name} ORDER BY rowid").fetchall()
                for name in names}, columns
    finally:
        connection.close()


def migrated_copy(tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(FIXTURE, data / "kelp.db")
    return data


def test_empty_database_reaches_the_newest_schema(tmp_path):
    with Store.open(tmp_path / "data") as store:
        engine = store.db.engine
        assert current_revision(engine) == head_revision()
        assert integrity_check(engine) == "ok"
        inspector = inspect(engine)
        for name, table in Base.metadata.tables.items():
            assert name in inspector.get_table_names(), name
            assert {column["name"] for column in inspector.get_columns(name)} == set(table.columns.keys()), name
        assert "generations_fts" in inspector.get_table_names()


def test_fixture_is_one_self_contained_file_at_revision_0001():
    header = FIXTURE.read_bytes()[:100]
    assert header[:16] == b"SQLite format 3\x00"
    assert (header[18], header[19]) == (1, 1)  # rollback journal, not WAL: nothing lives in a -wal file
    assert not FIXTURE.with_name(FIXTURE.name + "-wal").exists()
    assert FIXTURE.stat().st_size < 100_000
    connection = sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True)
    try:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
    finally:
        connection.close()


def test_every_row_of_the_first_schema_survives_migration(tmp_path):
    data = migrated_copy(tmp_path)
    before, columns = table_rows(data / "kelp.db")
    assert sum(len(rows) for rows in before.values()) >= 20  # the fixture holds rows of every kind
    assert all(before[name] for name in before), [name for name in before if not before[name]]

    with Store.open(data) as store:
        assert current_revision(store.db.engine) == head_revision()
        assert integrity_check(store.db.engine) == "ok"
        with store.db.session() as session:
            fox = session.get(Generation, 1)
            assert (fox.prompt, fox.seed, fox.rating, fox.favourite, fox.note) == (
                "a red fox trotting through snow", 1234, 5, True, "best take")
            assert fox.request["prompt"] == fox.prompt and fox.timings == {"total_s": 12.5}
            assert (fox.video.suffix, fox.thumbnail.kind, fox.image.original_name) == (".mp4", "thumbnail", "start.png")
            assert sorted(tag.name for tag in fox.tags) == ["fox", "winter"]
            assert session.get(Project, 2).deleted_at is not None
            shots = session.get(Shot, 1).storyboard.shots
            assert [shot.prompt for shot in shots] == ["the fox wakes up", "the fox runs"]
            assert session.get(Lora, 1).training_run.metrics[-1] == {"step": 500, "loss": 0.2}
            assert session.get(Setting, "ui.defaults").value == {"steps": 30, "model": "kelp-small"}
            assert session.get(TrainingRun, 1).status == "done"

    after, _ = table_rows(data / "kelp.db", list(before))
    for name, rows in before.items():
        width = len(columns[name])
        assert [row[:width] for row in after[name]] == rows, name  # later columns may be added, none lost


def test_prompts_written_before_the_search_index_are_found(tmp_path):
    with Store.open(migrated_copy(tmp_path)) as store, store.db.session() as session:
        def found(**filters):
            return [generation.id for generation in list_generations(session, include_deleted=True, **filters).items]

        assert found(text="fox") == [2, 1]  # "foxes" by prefix
        assert found(text="TROTTING snow") == [1]
        assert found(text="cafe") == [3]  # a note, accents folded
        assert found(text="whale") == [4]  # in the trash, still indexed
        assert [g.id for g in list_generations(session, text="fox owl whale").items] == []
        assert [g.id for g in list_generations(session).items] == [2, 1]  # 3: trashed project, 4: trashed


def test_the_fixture_script_still_builds_a_0001_database(tmp_path):
    path = make_fixture(tmp_path / "kelp.db")
    engine = create_database_engine(sqlite_url(path))
    try:
        assert current_revision(engine) == "0001" and integrity_check(engine) == "ok"
    finally:
        engine.dispose()
    assert table_rows(path)[0] == table_rows(FIXTURE)[0]  # the committed file is what the script makes


@pytest.fixture(autouse=True)
def _fixture_is_untouched():
    """Tests work on copies: the committed fixture must come out of them unchanged."""
    before = FIXTURE.read_bytes()
    yield
    assert FIXTURE.read_bytes() == before


def test_the_migrations_build_exactly_the_tables_the_code_declares(tmp_path):
    """A column added to schema.py without a migration (or the reverse) fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from core.store.schema import Base

    with Store.open(tmp_path / "data") as store, store.db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    # The FTS5 table and its shadow tables are the migrations' own (not ORM tables).
    differences = [d for d in differences if not (d[0] == "remove_table" and d[1].name.startswith("generations_fts"))]
    assert differences == []
