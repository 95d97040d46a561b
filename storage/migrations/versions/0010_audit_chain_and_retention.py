"""audit chain on events, retention marks

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# (table, column) of the marks the retention sweep leaves: set once, never cleared.
MARKS = (("contacts", "anonymised_at"), ("tickets", "anonymised_at"),
         ("attachments", "removed_at"), ("ingest_log", "raw_removed_at"),
         ("outbox", "raw_removed_at"))


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch: on SQLite a batch may recreate `tickets`, which would
    # drop its full-text triggers (0008).
    for table, column in MARKS:
        op.add_column(table, sa.Column(column, sa.DateTime(), nullable=True))
    op.add_column("events", sa.Column("chain_seq", sa.BigInteger(), nullable=True))
    op.add_column("events", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("events", sa.Column("hash", sa.String(length=64), nullable=True))
    op.add_column("events", sa.Column("redacted_digest", sa.String(length=64), nullable=True))
    sealed = sa.text("chain_seq IS NOT NULL")
    unsealed = sa.text("chain_seq IS NULL")
    op.create_index("uq_events_chain_seq", "events", ["chain_seq"], unique=True,
                    postgresql_where=sealed, sqlite_where=sealed)
    op.create_index("ix_events_unsealed", "events", ["id"],
                    postgresql_where=unsealed, sqlite_where=unsealed)


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later): no table is recreated.
    op.drop_index("ix_events_unsealed", table_name="events")
    op.drop_index("uq_events_chain_seq", table_name="events")
    for column in ("redacted_digest", "hash", "prev_hash", "chain_seq"):
        op.drop_column("events", column)
    for table, column in reversed(MARKS):
        op.drop_column(table, column)
