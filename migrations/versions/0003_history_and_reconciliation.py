"""Management Node history records, pull checkpoints, reconciliation runs and their items.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "mn_participants",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("call_uuid", sa.Text, nullable=True),
        sa.Column("conversation_id", sa.Text, nullable=True),
        sa.Column("conference_id", sa.String(128), nullable=True),
        sa.Column("conference_name", sa.Text, nullable=True),
        sa.Column("display_name", sa.Text, nullable=True),
        sa.Column("local_alias", sa.Text, nullable=True),
        sa.Column("remote_alias", sa.Text, nullable=True),
        sa.Column("protocol", sa.String(32), nullable=True),
        sa.Column("call_direction", sa.String(16), nullable=True),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("disconnect_reason", sa.Text, nullable=True),
        sa.Column("remote_address", sa.String(255), nullable=True),
        sa.Column("remote_port", sa.Integer, nullable=True),
        sa.Column("signalling_node", sa.String(255), nullable=True),
        sa.Column("media_node", sa.String(255), nullable=True),
        sa.Column("proxy_node", sa.String(255), nullable=True),
        sa.Column("system_location", sa.Text, nullable=True),
        sa.Column("service_type", sa.String(64), nullable=True),
        sa.Column("service_tag", sa.Text, nullable=True),
        sa.Column("call_tag", sa.Text, nullable=True),
        sa.Column("vendor", sa.Text, nullable=True),
        sa.Column("has_media", sa.Boolean, nullable=True),
        sa.Column("start_us", sa.BigInteger, nullable=True),
        sa.Column("end_us", sa.BigInteger, nullable=True),
        sa.Column("duration", sa.Integer, nullable=True),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("imported_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mn_participants"),
    )
    op.create_index("ix_mn_participants_start_us", "mn_participants", ["start_us"])
    op.create_index("ix_mn_participants_end_us", "mn_participants", ["end_us"])
    op.create_index("ix_mn_participants_call_uuid", "mn_participants", ["call_uuid"])
    op.create_table(
        "mn_conferences",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("start_us", sa.BigInteger, nullable=True),
        sa.Column("end_us", sa.BigInteger, nullable=True),
        sa.Column("duration", sa.Integer, nullable=True),
        sa.Column("participant_count", sa.Integer, nullable=True),
        sa.Column("service_type", sa.String(64), nullable=True),
        sa.Column("tag", sa.Text, nullable=True),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("imported_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mn_conferences"),
    )
    op.create_table(
        "pull_checkpoints",
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("end_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("resource", name="pk_pull_checkpoints"),
    )
    op.create_table(
        "reconciliations",
        sa.Column("id", _ID, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("from_us", sa.BigInteger, nullable=False),
        sa.Column("until_us", sa.BigInteger, nullable=False),
        sa.Column("tolerance_us", sa.BigInteger, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reconciliations"),
    )
    op.create_table(
        "reconciliation_items",
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("cdr_id", sa.String(128), nullable=True),
        sa.Column("mn_id", sa.String(128), nullable=True),
        sa.Column("matched_by", sa.String(16), nullable=True),
        sa.Column("time_us", sa.BigInteger, nullable=True),
        sa.Column("conference_name", sa.Text, nullable=True),
        sa.Column("node", sa.String(255), nullable=True),
        sa.Column("differences", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_reconciliation_items"),
    )
    op.create_index(
        "ix_reconciliation_items_status", "reconciliation_items", ["run_id", "status", "seq"]
    )


def downgrade() -> None:
    op.drop_index("ix_reconciliation_items_status", table_name="reconciliation_items")
    op.drop_table("reconciliation_items")
    op.drop_table("reconciliations")
    op.drop_table("pull_checkpoints")
    op.drop_table("mn_conferences")
    op.drop_index("ix_mn_participants_call_uuid", table_name="mn_participants")
    op.drop_index("ix_mn_participants_end_us", table_name="mn_participants")
    op.drop_index("ix_mn_participants_start_us", table_name="mn_participants")
    op.drop_table("mn_participants")
