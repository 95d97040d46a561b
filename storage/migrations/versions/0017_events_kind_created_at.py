"""events index for reports: the events of some kinds within a period

Revision ID: 0017
Revises: 0011
Create Date: 2026-12-06
"""

from alembic import op

revision = "0017"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_kind_created_at", "events", ["kind", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_events_kind_created_at", table_name="events")
