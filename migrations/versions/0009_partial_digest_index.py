"""Index only the digests of backfilled lines: live messages have none.

The unique index on `messages.digest` took an entry for every live message too (a NULL),
which cost every insert on the ingest path and answered no query.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_HAS_DIGEST = sa.text("digest IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_messages_digest", table_name="messages")
    op.create_index(
        "ix_messages_digest",
        "messages",
        ["digest"],
        unique=True,
        sqlite_where=_HAS_DIGEST,
        postgresql_where=_HAS_DIGEST,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_digest", table_name="messages")
    op.create_index("ix_messages_digest", "messages", ["digest"], unique=True)
