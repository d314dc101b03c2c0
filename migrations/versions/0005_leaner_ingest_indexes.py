"""Drop two indexes that cost every insert on the ingest path and serve no query.

`messages.received_us`: the raw store is read by id (which follows arrival); and
`cdrs.call_uuid`: reconciliation loads both sides of a window and matches in memory.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_messages_received_us", table_name="messages")
    op.drop_index("ix_cdrs_call_uuid", table_name="cdrs")


def downgrade() -> None:
    op.create_index("ix_cdrs_call_uuid", "cdrs", ["call_uuid"])
    op.create_index("ix_messages_received_us", "messages", ["received_us"])
