"""The whole schema: raw store, call events, CDRs, MN history, reconciliation, tokens, exports.

One baseline revision: no database was ever built by the revisions that led here, so they
were folded into this one. A schema change after a release is a new revision on top of it.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_HAS_DIGEST = sa.text("digest IS NOT NULL")
# PostgreSQL's message partitions (app/db/partitions.py), as they were at this revision.
_PARTITIONS = "message_days"


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", _ID, nullable=False),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("peer_host", sa.String(64), nullable=True),
        sa.Column("peer_port", sa.Integer, nullable=True),
        sa.Column("tls_subject", sa.Text, nullable=True),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=True),
        sa.Column("msg_offset", sa.Integer, nullable=False),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("packed", sa.SmallInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("source", sa.Text, nullable=True),
        sa.Column("digest", sa.LargeBinary(40), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        postgresql_partition_by="RANGE (id)",
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_index(
        "ix_messages_digest",
        "messages",
        ["digest"],
        unique=not postgres,
        sqlite_where=_HAS_DIGEST,
        postgresql_where=_HAS_DIGEST,
    )
    if postgres:
        # Day partitions are made ahead by serve (app/db/partitions.py); this one takes
        # whatever none of them does, and is never dropped.
        op.execute(f"CREATE SCHEMA {_PARTITIONS}")
        op.execute(f"CREATE TABLE {_PARTITIONS}.messages_default PARTITION OF messages DEFAULT")
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
    op.create_table(
        "events",
        sa.Column("id", _ID, nullable=False),
        sa.Column("digest", sa.LargeBinary(16), nullable=False),
        sa.Column("time_us", sa.BigInteger, nullable=False),
        sa.Column("participant_id", sa.String(128), nullable=True),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("message_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_time_us_digest", "events", ["time_us", "digest"], unique=True)
    op.create_index("ix_events_message_id", "events", ["message_id"])
    op.create_table(
        "event_messages",
        sa.Column("digest", sa.LargeBinary(16), nullable=False),
        sa.Column("message_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("digest", "message_id", name="pk_event_messages"),
    )
    op.create_index("ix_event_messages_message_id", "event_messages", ["message_id"])
    op.create_table(
        "pending_derivations",
        sa.Column("first_id", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("last_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("first_id", name="pk_pending_derivations"),
    )
    op.create_table(
        "row_counts",
        sa.Column("table_name", sa.String(32), nullable=False),
        sa.Column("slot", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("table_name", "slot", name="pk_row_counts"),
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
        sa.Column("message_ids", sa.Text, nullable=False, server_default=""),
        sa.Column("compared", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cdrs"),
    )
    op.create_index("ix_cdrs_first_seen_us", "cdrs", ["first_seen_us", "id"])
    op.create_index("ix_cdrs_start_us", "cdrs", ["start_us"])
    op.create_index("ix_cdrs_conference_name", "cdrs", ["conference_name", "first_seen_us"])
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
        sa.Column("compared", sa.Text, nullable=True),
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
    op.create_index("ix_mn_conferences_end_us", "mn_conferences", ["end_us"])
    op.create_table(
        "pull_checkpoints",
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("end_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("resource", name="pk_pull_checkpoints"),
    )
    op.create_table(
        "history_coverage",
        sa.Column("id", _ID, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("as_of_us", sa.BigInteger, nullable=False),
        sa.Column("basis", sa.String(32), nullable=False),
        sa.Column("records", sa.Integer, nullable=False),
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
        sa.Column("from_us", sa.BigInteger, nullable=True),
        sa.Column("until_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_history_coverage"),
    )
    op.create_index("ix_history_coverage_as_of_us", "history_coverage", ["as_of_us"])
    op.create_table(
        "reconciliations",
        sa.Column("id", _ID, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("from_us", sa.BigInteger, nullable=False),
        sa.Column("until_us", sa.BigInteger, nullable=False),
        sa.Column("tolerance_us", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("process", sa.String(255), nullable=True),
        sa.Column("finished_us", sa.BigInteger, nullable=True),
        sa.Column("failure", sa.Text, nullable=True),
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
    op.create_table(
        "api_tokens",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger, nullable=True),
        sa.Column("last_used_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
    )
    op.create_index("ix_api_tokens_token_hash", "api_tokens", ["token_hash"], unique=True)
    op.create_index("ix_api_tokens_name", "api_tokens", ["name"], unique=True)
    op.create_table(
        "exports",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("filters", sa.Text, nullable=False),
        sa.Column("record_count", sa.Integer, nullable=False),
        sa.Column("total_duration", sa.BigInteger, nullable=False),
        sa.Column("first_start_us", sa.BigInteger, nullable=True),
        sa.Column("last_start_us", sa.BigInteger, nullable=True),
        sa.Column("sha256_csv", sa.String(64), nullable=False),
        sa.Column("sha256_jsonl", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_exports"),
    )
    op.create_index("ix_exports_idempotency_key", "exports", ["idempotency_key"], unique=True)
    op.create_table(
        "export_records",
        sa.Column("export_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("cdr_id", sa.String(128), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("csv_row", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("export_id", "seq", name="pk_export_records"),
    )
    op.create_table(
        "first_exports",
        sa.Column("cdr_id", sa.String(128), nullable=False),
        sa.Column("export_id", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("cdr_id", name="pk_first_exports"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", _ID, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("parameters", sa.Text, nullable=True),
        sa.Column("client", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at_us", "audit_log", ["at_us"])
    op.create_table(
        "watch_alerts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("first_seen_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("cleared_us", sa.BigInteger, nullable=True),
        sa.Column("cleared_by", sa.String(128), nullable=True),
        sa.Column("from_us", sa.BigInteger, nullable=False),
        sa.Column("until_us", sa.BigInteger, nullable=False),
        sa.Column("before_us", sa.BigInteger, nullable=True),
        sa.Column("after_us", sa.BigInteger, nullable=True),
        sa.Column("reach_from_us", sa.BigInteger, nullable=False),
        sa.Column("reach_until_us", sa.BigInteger, nullable=False),
        sa.Column("record_count", sa.Integer, nullable=False),
        sa.Column("nodes", sa.Text, nullable=False),
        sa.Column("run_id", sa.BigInteger, nullable=True),
        sa.Column("source", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_watch_alerts"),
    )
    op.create_index("ix_watch_alerts_state", "watch_alerts", ["state", "id"])
    op.create_table(
        "watch_alert_records",
        sa.Column("alert_id", sa.BigInteger, nullable=False),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("time_us", sa.BigInteger, nullable=False),
        sa.Column("record", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("alert_id", "record_id", name="pk_watch_alert_records"),
    )
    op.create_index("ix_watch_alert_records_record_id", "watch_alert_records", ["record_id"])
    op.create_table(
        "node_minutes",
        sa.Column("minute_us", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("messages", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("minute_us", "host", name="pk_node_minutes"),
    )
    op.create_table(
        "pull_attempts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("started_us", sa.BigInteger, nullable=False),
        sa.Column("finished_us", sa.BigInteger, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("records", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pull_attempts"),
    )


def downgrade() -> None:
    # Dropping a table drops its indexes.
    for table in (
        "watch_alert_records",
        "watch_alerts",
        "pull_attempts",
        "node_minutes",
        "audit_log",
        "first_exports",
        "export_records",
        "exports",
        "api_tokens",
        "reconciliation_items",
        "reconciliations",
        "history_coverage",
        "pull_checkpoints",
        "mn_conferences",
        "mn_participants",
        "cdrs",
        "row_counts",
        "pending_derivations",
        "event_messages",
        "events",
        "nodes",
        "messages",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP SCHEMA {_PARTITIONS}")
