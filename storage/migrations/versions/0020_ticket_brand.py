"""brands: the brand of each ticket, and a contact's responsible-gambling flag

Revision ID: 0020
Revises: 0014
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain add_column: a batch rebuild of `tickets` on SQLite would drop the search triggers.
    # Every ticket so far came in at the one mailbox of [support]: the brand "default".
    op.add_column("tickets", sa.Column("brand", sa.String(length=40), nullable=False,
                                       server_default="default"))
    op.add_column("contacts", sa.Column("safeguarded_at", sa.DateTime(), nullable=True))
    op.add_column("contacts", sa.Column("safeguard_intent", sa.String(length=24), nullable=True))
    op.add_column("contacts", sa.Column("safeguard_brand", sa.String(length=40), nullable=True))
    # A person who asked on a ticket before is flagged from their earliest such ticket.
    op.execute(
        "UPDATE contacts SET safeguarded_at = (SELECT MIN(t.safeguarded_at) FROM tickets t "
        "WHERE t.requester_id = contacts.id AND t.safeguarded_at IS NOT NULL), "
        "safeguard_brand = 'default' "
        "WHERE EXISTS (SELECT 1 FROM tickets t WHERE t.requester_id = contacts.id "
        "AND t.safeguarded_at IS NOT NULL)")


def downgrade() -> None:
    op.drop_column("contacts", "safeguard_brand")
    op.drop_column("contacts", "safeguard_intent")
    op.drop_column("contacts", "safeguarded_at")
    op.drop_column("tickets", "brand")
