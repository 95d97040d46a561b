"""full-text search over ticket subjects and message texts; indexes for finding tickets

SQLite: two FTS5 tables with external content (the rows stay in `tickets` and `messages`,
the FTS tables hold only the index) kept up to date by triggers, so every writer, ingest's
Core statements and the ORM alike, keeps the index without knowing of it.
PostgreSQL: GIN indexes on to_tsvector('simple', ...) expressions; 'simple' neither stems
nor drops stop words, so Russian and every other language are found word for word.
The expressions here and in storage/search.py must stay the same, or PostgreSQL will not
use the index.

A later SQLite migration that makes batch_alter_table recreate `tickets` or `messages`
(altering or dropping a column) drops their triggers with the old table: it must create
them again, or the index stops following (tests/daemon/test_cli_tickets.py would fail).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Only so much of a text is indexed: a tsvector holds at most 1 MB, and a 10 MB mail
# pasted into a reply must not make its ingest fail.
_PG_INDEXES = {
    "ix_messages_search": "messages USING gin (to_tsvector('simple'::regconfig, "
                          "left(subject || ' ' || visible_text, 200000)))",
    "ix_tickets_search": "tickets USING gin (to_tsvector('simple'::regconfig, subject))",
}

_SQLITE = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5(subject, visible_text, content='messages', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE tickets_fts USING fts5(subject, content='tickets', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    # External content: the index is told the old values on delete and update.
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, subject, visible_text) "
    "VALUES (new.id, new.subject, new.visible_text); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, subject, visible_text) "
    "VALUES ('delete', old.id, old.subject, old.visible_text); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, visible_text ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, subject, visible_text) "
    "VALUES ('delete', old.id, old.subject, old.visible_text); "
    "INSERT INTO messages_fts(rowid, subject, visible_text) "
    "VALUES (new.id, new.subject, new.visible_text); END",
    "CREATE TRIGGER tickets_fts_insert AFTER INSERT ON tickets BEGIN "
    "INSERT INTO tickets_fts(rowid, subject) VALUES (new.id, new.subject); END",
    "CREATE TRIGGER tickets_fts_delete AFTER DELETE ON tickets BEGIN "
    "INSERT INTO tickets_fts(tickets_fts, rowid, subject) "
    "VALUES ('delete', old.id, old.subject); END",
    "CREATE TRIGGER tickets_fts_update AFTER UPDATE OF subject ON tickets BEGIN "
    "INSERT INTO tickets_fts(tickets_fts, rowid, subject) "
    "VALUES ('delete', old.id, old.subject); "
    "INSERT INTO tickets_fts(rowid, subject) VALUES (new.id, new.subject); END",
    # Index what an older version stored.
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    "INSERT INTO tickets_fts(tickets_fts) VALUES ('rebuild')",
)


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index("ix_tickets_assignee", ["assignee"], unique=False)
        batch_op.create_index("ix_tickets_group", ["group"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for name, target in _PG_INDEXES.items():
            op.execute(sa.text(f"CREATE INDEX {name} ON {target}"))
    else:
        for statement in _SQLITE:
            op.execute(sa.text(statement))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in _PG_INDEXES:
            op.execute(sa.text(f"DROP INDEX {name}"))
    else:
        for trigger in ("messages_fts_insert", "messages_fts_delete", "messages_fts_update",
                        "tickets_fts_insert", "tickets_fts_delete", "tickets_fts_update"):
            op.execute(sa.text(f"DROP TRIGGER {trigger}"))
        op.execute(sa.text("DROP TABLE messages_fts"))
        op.execute(sa.text("DROP TABLE tickets_fts"))
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_group")
        batch_op.drop_index("ix_tickets_assignee")
