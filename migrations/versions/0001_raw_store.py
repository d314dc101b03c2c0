"""Raw message store and per-node counters.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("peer_host", sa.String(64), nullable=True),
        sa.Column("peer_port", sa.Integer, nullable=True),
        sa.Column("tls_subject", sa.Text, nullable=True),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("facility", sa.SmallInteger, nullable=True),
        sa.Column("severity", sa.SmallInteger, nullable=True),
        sa.Column("timestamp_us", sa.BigInteger, nullable=True),
        sa.Column("timestamp_text", sa.String(64), nullable=True),
        sa.Column("hostname", sa.String(255), nullable=True),
        sa.Column("app_name", sa.String(64), nullable=True),
        sa.Column("procid", sa.String(128), nullable=True),
        sa.Column("msgid", sa.String(32), nullable=True),
        sa.Column("structured_data", sa.Text, nullable=True),
        sa.Column("msg_offset", sa.Integer, nullable=False),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    op.create_index("ix_messages_received_us", "messages", ["received_us"])
    op.create_table(
        "nodes",
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("last_peer", sa.String(64), nullable=True),
        sa.Column("last_transport", sa.String(8), nullable=False),
        sa.Column("first_seen_us", sa.BigInteger, nullable=False),
        sa.Column("last_seen_us", sa.BigInteger, nullable=False),
        sa.Column("messages", sa.BigInteger, nullable=False),
        sa.Column("parse_failures", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("host", name="pk_nodes"),
    )


def downgrade() -> None:
    op.drop_table("nodes")
    op.drop_index("ix_messages_received_us", table_name="messages")
    op.drop_table("messages")
