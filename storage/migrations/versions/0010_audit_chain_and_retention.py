"""audit chain on events, retention marks

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None

# (table, column) of the marks the retention sweep leaves: set once, never cleared.
MARKS = (("contacts", "anonymised_at"), ("tickets", "anonymised_at"),
         ("attachments", "removed_at"), ("ingest_log", "raw_removed_at"),
         ("outbox", "raw_removed_at"))


def upgrade() -> None:
    for table, column in MARKS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(column, sa.DateTime(), nullable=True))
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("redacted_digest", sa.String(length=64), nullable=True))
    sealed = sa.text("chain_seq IS NOT NULL")
    unsealed = sa.text("chain_seq IS NULL")
    op.create_index("uq_events_chain_seq", "events", ["chain_seq"], unique=True,
                    postgresql_where=sealed, sqlite_where=sealed)
    op.create_index("ix_events_unsealed", "events", ["id"],
                    postgresql_where=unsealed, sqlite_where=unsealed)


def downgrade() -> None:
    op.drop_index("ix_events_unsealed", table_name="events")
    op.drop_index("uq_events_chain_seq", table_name="events")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("redacted_digest")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("chain_seq")
    for table, column in reversed(MARKS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)
