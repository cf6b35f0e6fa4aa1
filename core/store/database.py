"""Opening the history database: an SQLAlchemy engine from a URL, SQLite pragmas for crash safety and
concurrency (WAL, foreign keys, busy timeout), and Alembic migrations to the newest schema at start-up."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")


def _on_connect(dbapi_connection, _record) -> None:
    # The driver's own transaction handling would issue BEGIN lazily (DEFERRED), so two writers could
    # both read and then fail to upgrade their locks; we issue BEGIN IMMEDIATE ourselves in `begin`.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
    cursor.close()


def _on_begin(connection) -> None:
    # Readers (Database.read) start a deferred transaction: under WAL they never wait for a writer.
    connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get("kelp_read_only") else "BEGIN IMMEDIATE")


def create_database_engine(url: str) -> Engine:
    """An engine for `url` (e.g. "sqlite:////home/me/.local/share/kelp/kelp.db"); SQLite gets Kelp's pragmas."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"`url` must be a database URL such as 'sqlite:///path/kelp.db' but is {url!r}")
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _on_connect)
        event.listen(engine, "begin", _on_begin)
    return engine


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def alembic_config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to `revision` (the newest by default); an empty database gets the whole schema."""
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    config = alembic_config(None)
    return ScriptDirectory.from_config(config).get_current_head()


def integrity_check(engine: Engine) -> str:
    """SQLite's `PRAGMA integrity_check`: "ok" for a sound database."""
    with engine.connect() as connection:
        return "; ".join(row[0] for row in connection.execute(text("PRAGMA integrity_check")))


def with_retry(work: Callable[[], T], *, attempts: int = 8, first_delay: float = 0.05) -> T:
    """Run `work` again when SQLite reports the database locked or busy past the busy timeout.

    The busy timeout already waits for writers; this covers the rare lock that SQLite refuses to wait
    for (a read transaction upgrading to write under WAL), so that "database is locked" never reaches users.
    """
    delay = first_delay
    for attempt in range(attempts):
        try:
            return work()
        except OperationalError as error:
            message = str(error.orig).lower() if error.orig is not None else str(error).lower()
            if ("locked" not in message and "busy" not in message) or attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


class Database:
    """The engine and a session factory for one history database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(engine.execution_options(kelp_read_only=True), expire_on_commit=False)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Database:
        database = cls(create_database_engine(url))
        if migrate:
            upgrade_database(database.engine)
        return database

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one write transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading only: a snapshot that neither waits for nor blocks writers; never commits."""
        with self._read_sessions() as session, session.begin():
            yield session
            session.rollback()

    def write(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` in its own transaction, retried if the database is locked."""

        def attempt() -> T:
            with self.session() as session:
                return work(session)

        return with_retry(attempt)

    def close(self) -> None:
        self.engine.dispose()
