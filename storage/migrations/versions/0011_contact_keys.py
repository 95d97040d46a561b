"""encryption at rest: contact data keys, the key of each sealed blob, erasure tombstones

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Tables whose rows name the data key of their bytes. A plain column, no foreign key: on
# SQLite a foreign key would make Alembic rebuild `messages`, and with it drop the search
# triggers of 0008; key rows are never deleted (erasure empties them), so none is needed.
_SEALED = ("messages", "ingest_log", "outbox")


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
        op.add_column(table, sa.Column("key_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in _SEALED:
        op.drop_column(table, "key_id")  # SQLite 3.35+ drops a plain column in place
    op.drop_index(op.f("ix_erasures_address_hash"), table_name="erasures")
    op.drop_table("erasures")
    op.drop_table("contact_keys")
