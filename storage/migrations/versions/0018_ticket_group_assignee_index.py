"""tickets: a (group, assignee, id) index, so that a listing by group and holder together
stays flat with the desk's size

Revision ID: 0018
Revises: 0019
Create Date: 2026-12-06
"""

from alembic import op

revision = "0018"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain create_index: a batch would recreate `tickets` without its search triggers.
    op.create_index("ix_tickets_group_assignee_id", "tickets", ["group", "assignee", "id"])


def downgrade() -> None:
    op.drop_index("ix_tickets_group_assignee_id", table_name="tickets")
