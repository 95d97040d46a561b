"""ingest_log.content_sha256: a mail delivered twice is one, two mails under one id are two

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain add_column: ingest_log has no search triggers, but no table is rebuilt either way.
    op.add_column("ingest_log", sa.Column("content_sha256", sa.String(length=64), nullable=True))
    op.create_index("ix_ingest_log_content_sha256", "ingest_log", ["content_sha256"])


def downgrade() -> None:
    op.drop_index("ix_ingest_log_content_sha256", table_name="ingest_log")
    op.drop_column("ingest_log", "content_sha256")
