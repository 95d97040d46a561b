"""complaints: the regulated complaint record of each player ticket

Revision ID: 0012
Revises: 0015
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "complaints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("ack_due_at", sa.DateTime(), nullable=True),
        sa.Column("final_due_at", sa.DateTime(), nullable=True),
        sa.Column("extended_at", sa.DateTime(), nullable=True),
        sa.Column("extension_reason", sa.Text(), nullable=True),
        sa.Column("final_at", sa.DateTime(), nullable=True),
        sa.Column("final_by", sa.String(length=254), nullable=True),
        sa.Column("letter_sent_at", sa.DateTime(), nullable=True),
        sa.Column("disputed_at", sa.DateTime(), nullable=True),
        sa.Column("adr_entity", sa.String(length=200), nullable=True),
        sa.Column("adr_reference", sa.String(length=100), nullable=True),
        sa.Column("adr_referred_at", sa.DateTime(), nullable=True),
        sa.Column("adr_outcome", sa.String(length=24), nullable=True),
        sa.Column("adr_outcome_at", sa.DateTime(), nullable=True),
        sa.Column("enquiry_due_at", sa.DateTime(), nullable=True),
        sa.Column("enquiry_reminded_at", sa.DateTime(), nullable=True),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("next_action_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"],
                                name=op.f("fk_complaints_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaints")),
        sa.UniqueConstraint("ticket_id", name=op.f("uq_complaints_ticket_id")),
    )
    # Only complaints the guard has something to do for are in the index (as sla_clocks).
    has_action = sa.text("next_action_at IS NOT NULL")
    op.create_index("ix_complaints_next_action_at", "complaints", ["next_action_at"],
                    postgresql_where=has_action, sqlite_where=has_action)


def downgrade() -> None:
    op.drop_index("ix_complaints_next_action_at", table_name="complaints")
    op.drop_table("complaints")
