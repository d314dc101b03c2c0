"""Pexip call events, participant CDRs, and file-import dedupe on the raw store.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("source", sa.Text, nullable=True))
        batch.add_column(sa.Column("digest", sa.LargeBinary(16), nullable=True))
    op.create_index("ix_messages_digest", "messages", ["digest"], unique=True)

    op.create_table(
        "events",
        sa.Column("id", _ID, nullable=False),
        sa.Column("digest", sa.LargeBinary(16), nullable=False),
        sa.Column("time_us", sa.BigInteger, nullable=False),
        sa.Column("node", sa.String(255), nullable=True),
        sa.Column("level", sa.String(16), nullable=True),
        sa.Column("name", sa.String(128), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("participant_id", sa.String(128), nullable=True),
        sa.Column("call_id", sa.Text, nullable=True),
        sa.Column("conference", sa.Text, nullable=True),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("message_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_digest", "events", ["digest"], unique=True)
    op.create_index("ix_events_participant_id", "events", ["participant_id"])
    op.create_table(
        "event_messages",
        sa.Column("digest", sa.LargeBinary(16), nullable=False),
        sa.Column("message_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("digest", "message_id", name="pk_event_messages"),
    )
    op.create_table(
        "cdrs",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("call_uuid", sa.Text, nullable=True),
        sa.Column("conversation_id", sa.Text, nullable=True),
        sa.Column("conference_name", sa.Text, nullable=True),
        sa.Column("display_name", sa.Text, nullable=True),
        sa.Column("local_alias", sa.Text, nullable=True),
        sa.Column("remote_alias", sa.Text, nullable=True),
        sa.Column("protocol", sa.String(32), nullable=True),
        sa.Column("call_direction", sa.String(16), nullable=True),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("remote_address", sa.String(255), nullable=True),
        sa.Column("remote_port", sa.Integer, nullable=True),
        sa.Column("signalling_node", sa.String(255), nullable=True),
        sa.Column("media_node", sa.String(255), nullable=True),
        sa.Column("proxy_node", sa.String(255), nullable=True),
        sa.Column("system_location", sa.Text, nullable=True),
        sa.Column("vendor", sa.Text, nullable=True),
        sa.Column("service_type", sa.String(64), nullable=True),
        sa.Column("service_tag", sa.Text, nullable=True),
        sa.Column("disconnect_reason", sa.Text, nullable=True),
        sa.Column("start_us", sa.BigInteger, nullable=True),
        sa.Column("end_us", sa.BigInteger, nullable=True),
        sa.Column("duration", sa.Integer, nullable=True),
        sa.Column("first_seen_us", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("node", sa.String(255), nullable=True),
        sa.Column("event_count", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cdrs"),
    )
    op.create_index("ix_cdrs_first_seen_us", "cdrs", ["first_seen_us", "id"])
    op.create_index("ix_cdrs_conference_name", "cdrs", ["conference_name", "first_seen_us"])
    op.create_index("ix_cdrs_call_uuid", "cdrs", ["call_uuid"])


def downgrade() -> None:
    op.drop_table("cdrs")
    op.drop_table("event_messages")
    op.drop_index("ix_events_participant_id", table_name="events")
    op.drop_index("ix_events_digest", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_messages_digest", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("digest")
        batch.drop_column("source")
