"""loop limits: the automatic mails each address and ticket received, and stopped tickets

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auto_mails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auto_mails")),
    )
    op.create_index("ix_auto_mails_address_created_at", "auto_mails", ["address", "created_at"])
    op.create_index("ix_auto_mails_ticket_id_created_at", "auto_mails",
                    ["ticket_id", "created_at"])
    op.create_index("ix_auto_mails_created_at", "auto_mails", ["created_at"])
    # Plain add_column: a batch rebuild of `tickets` on SQLite would drop the search triggers.
    op.add_column("tickets", sa.Column("loop_stopped_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("tickets", "loop_stopped_at")
    op.drop_index("ix_auto_mails_created_at", table_name="auto_mails")
    op.drop_index("ix_auto_mails_ticket_id_created_at", table_name="auto_mails")
    op.drop_index("ix_auto_mails_address_created_at", table_name="auto_mails")
    op.drop_table("auto_mails")
