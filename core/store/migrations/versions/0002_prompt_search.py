"""prompt search: an FTS5 index over generations' prompts and notes, kept current by triggers

Searching 10,000 prompts with LIKE '%word%' scans every row; the index finds words (and word
prefixes) directly. Existing generations are indexed by the migration.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE VIRTUAL TABLE generations_fts USING fts5("
        "prompt, note, content='generations', content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
    )
    op.execute(
        "CREATE TRIGGER generations_fts_insert AFTER INSERT ON generations BEGIN "
        "INSERT INTO generations_fts(rowid, prompt, note) VALUES (new.id, new.prompt, new.note); END"
    )
    op.execute(
        "CREATE TRIGGER generations_fts_delete AFTER DELETE ON generations BEGIN "
        "INSERT INTO generations_fts(generations_fts, rowid, prompt, note) VALUES ('delete', old.id, old.prompt, old.note); END"
    )
    op.execute(
        "CREATE TRIGGER generations_fts_update AFTER UPDATE OF prompt, note ON generations BEGIN "
        "INSERT INTO generations_fts(generations_fts, rowid, prompt, note) VALUES ('delete', old.id, old.prompt, old.note); "
        "INSERT INTO generations_fts(rowid, prompt, note) VALUES (new.id, new.prompt, new.note); END"
    )
    op.execute("INSERT INTO generations_fts(generations_fts) VALUES ('rebuild')")


def downgrade() -> None:
    for trigger in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS generations_fts_{trigger}")
    op.execute("DROP TABLE IF EXISTS generations_fts")
