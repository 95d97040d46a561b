"""events index for rate limits

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_kind_actor_created_at", "events", ["kind", "actor", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_events_kind_actor_created_at", table_name="events")
