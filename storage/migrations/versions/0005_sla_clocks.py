"""SLA clocks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sla_clocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("policy", sa.String(length=40), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=True),
        sa.Column("warn_at", sa.DateTime(), nullable=True),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("paused_at", sa.DateTime(), nullable=True),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("next_action_at", sa.DateTime(), nullable=True),
        sa.Column("breached_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"],
                                name=op.f("fk_sla_clocks_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_clocks")),
    )
    # Partial indexes (both databases have them): only clocks with something to do are in
    # the first, only running clocks in the second.
    has_action = sa.text("next_action_at IS NOT NULL")
    running = sa.text("stopped_at IS NULL")
    op.create_index("ix_sla_clocks_next_action_at", "sla_clocks", ["next_action_at"],
                    postgresql_where=has_action, sqlite_where=has_action)
    op.create_index("uq_sla_clocks_ticket_id_kind_running", "sla_clocks", ["ticket_id", "kind"],
                    unique=True, postgresql_where=running, sqlite_where=running)


def downgrade() -> None:
    op.drop_index("uq_sla_clocks_ticket_id_kind_running", table_name="sla_clocks")
    op.drop_index("ix_sla_clocks_next_action_at", table_name="sla_clocks")
    op.drop_table("sla_clocks")
