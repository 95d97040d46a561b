"""ingest_log.rg_intent: spam that carries a responsible-gambling sentence is flagged

Revision ID: 0019
Revises: 0014
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain add_column: ingest_log has no search triggers.
    op.add_column("ingest_log", sa.Column("rg_intent", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("ingest_log", "rg_intent")
