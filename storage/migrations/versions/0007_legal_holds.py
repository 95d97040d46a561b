"""legal holds

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("placed_by", sa.String(length=320), nullable=False),
        sa.Column("placed_at", sa.DateTime(), nullable=False),
        sa.Column("released_by", sa.String(length=320), nullable=True),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"],
                                name=op.f("fk_legal_holds_contact_id_contacts")),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"],
                                name=op.f("fk_legal_holds_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index(op.f("ix_legal_holds_contact_id"), "legal_holds", ["contact_id"])
    op.create_index(op.f("ix_legal_holds_ticket_id"), "legal_holds", ["ticket_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_legal_holds_ticket_id"), table_name="legal_holds")
    op.drop_index(op.f("ix_legal_holds_contact_id"), table_name="legal_holds")
    op.drop_table("legal_holds")
