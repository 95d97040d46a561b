"""outbox: the event type of a webhook row

Revision ID: 0013
Revises: 0017
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: nullable, no default, so no table rebuild on SQLite.
    op.add_column("outbox", sa.Column("event", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "event")  # SQLite 3.35+ drops a plain column in place
