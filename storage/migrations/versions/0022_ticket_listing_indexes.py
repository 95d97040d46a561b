"""tickets: (filter, id) indexes so that `ticketd tickets` stays flat with the desk's size

Revision ID: 0022
Revises: 0014
Create Date: 2026-12-06
"""

from alembic import op

revision = "0022"
down_revision = "0016"
branch_labels = None
depends_on = None

# The single-column indexes these replace are their prefixes: kept, they would only cost
# every ticket write.
_NEW = {"ix_tickets_status_id": ["status", "id"], "ix_tickets_category_id": ["category", "id"],
        "ix_tickets_group_id": ["group", "id"], "ix_tickets_assignee_id": ["assignee", "id"]}
_OLD = {"ix_tickets_status": ["status"], "ix_tickets_group": ["group"],
        "ix_tickets_assignee": ["assignee"]}


def upgrade() -> None:
    for name, columns in _NEW.items():
        op.create_index(name, "tickets", columns)
    for name in _OLD:
        op.drop_index(name, table_name="tickets")


def downgrade() -> None:
    for name, columns in _OLD.items():
        op.create_index(name, "tickets", columns)
    for name in _NEW:
        op.drop_index(name, table_name="tickets")
