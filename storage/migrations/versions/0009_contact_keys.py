"""encryption at rest: contact data keys, the key of each sealed blob, erasure tombstones

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_SEALED = ("messages", "ingest_log", "outbox")  # tables whose rows name the key of their bytes


def upgrade() -> None:
    op.create_table(
        "contact_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("master_key_id", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"],
                                name=op.f("fk_contact_keys_contact_id_contacts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_keys")),
        sa.UniqueConstraint("contact_id", name=op.f("uq_contact_keys_contact_id")),
    )
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("erased_by", sa.String(length=320), nullable=False),
        sa.Column("erased_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"],
                                name=op.f("fk_erasures_contact_id_contacts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
    )
    op.create_index(op.f("ix_erasures_address_hash"), "erasures", ["address_hash"])
    for table in _SEALED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("key_id", sa.Integer(), nullable=True))
            batch_op.create_foreign_key(op.f(f"fk_{table}_key_id_contact_keys"), "contact_keys",
                                        ["key_id"], ["id"])


def downgrade() -> None:
    for table in _SEALED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"fk_{table}_key_id_contact_keys"), type_="foreignkey")
            batch_op.drop_column("key_id")
    op.drop_index(op.f("ix_erasures_address_hash"), table_name="erasures")
    op.drop_table("erasures")
    op.drop_table("contact_keys")
