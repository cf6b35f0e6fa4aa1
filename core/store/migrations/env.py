"""Alembic environment for Kelp's history database: runs on the connection that core.store.database passes in."""

from __future__ import annotations

from alembic import context

from core.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Kelp migrations run through core.store.database.upgrade_database(), which passes a connection")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
