"""complaint pause: when the complaint clock stopped to wait on the player, and for how long
it has stood still in all

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("complaints", sa.Column("paused_at", sa.DateTime(), nullable=True))
    op.add_column("complaints", sa.Column("paused_seconds", sa.Integer(), nullable=False,
                                          server_default="0"))


def downgrade() -> None:
    op.drop_column("complaints", "paused_seconds")
    op.drop_column("complaints", "paused_at")
