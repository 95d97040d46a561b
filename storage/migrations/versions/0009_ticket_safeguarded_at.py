"""ticket safeguarded_at: a responsible-gambling request keeps automation off the ticket

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch: on SQLite a batch recreates `tickets`, which drops its
    # full-text triggers (0008).
    op.add_column("tickets", sa.Column("safeguarded_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later): the table and its triggers stay.
    op.drop_column("tickets", "safeguarded_at")
