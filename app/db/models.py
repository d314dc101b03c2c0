"""Table definitions. The Alembic migrations create them; this module is how code names them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeEngine

from parsers.limits import FORMAT_MAX, HOSTNAME_MAX, PARTICIPANT_ID_MAX
from parsers.mn_record import (
    COMPARED_COLUMN,
    CONFERENCE_FIELDS,
    PARTICIPANT_FIELDS,
    Kind,
    MNField,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# The raw store: one row per received syslog frame, parsed or not. Times are integer
# microseconds since the Unix epoch (UTC): cheap to produce per batch, and identical on
# SQLite and PostgreSQL. The frame is kept byte for byte, packed (app/db/packing.py, `packed`
# names the dictionary; 0 is plain); the message is the unpacked raw[msg_offset:]. Of the
# parsed header only what is read is kept (the sending host, the format and the parse
# error); the frame holds the rest. The parsed fields' lengths are the parsers' limits
# (parsers/limits.py).
messages = Table(
    "messages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("received_us", BigInteger, nullable=False),
    Column("transport", String(8), nullable=False),
    Column("peer_host", String(64), nullable=True),
    Column("peer_port", Integer, nullable=True),
    Column("tls_subject", Text, nullable=True),
    Column("format", String(FORMAT_MAX), nullable=False),
    Column("hostname", String(HOSTNAME_MAX), nullable=True),
    Column("msg_offset", Integer, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    Column("raw", LargeBinary, nullable=False),
    Column("packed", SmallInteger, nullable=False, server_default=text("0")),
    # The file a backfilled message came from, and its digest: a re-import adds nothing.
    Column("source", Text, nullable=True),
    # A backfilled line's key: its first 24 bytes and a hash (app/ingest/prepare.py).
    Column("digest", LargeBinary(40), nullable=True),
    # Only backfilled lines have a digest (to make a re-import add nothing). Not unique on
    # PostgreSQL, whose partitioned table could only make (digest, id) unique: the batch
    # writer's check is made one at a time there instead (app/ingest/repository.py).
    Index(
        "ix_messages_digest",
        "digest",
        unique=True,
        sqlite_where=text("digest IS NOT NULL"),
        postgresql_where=text("digest IS NOT NULL"),
    ),
    # On PostgreSQL, in day partitions by id (app/db/partitions.py).
    postgresql_partition_by="RANGE (id)",
)

# Per sending host (the syslog HOSTNAME, or the peer address when the frame has none),
# kept up to date by the batch writer in the same transaction as the messages.
nodes = Table(
    "nodes",
    metadata,
    Column("host", String(255), primary_key=True),
    Column("last_peer", String(64), nullable=True),
    Column("last_transport", String(8), nullable=False),
    Column("first_seen_us", BigInteger, nullable=False),
    Column("last_seen_us", BigInteger, nullable=False),
    Column("messages", BigInteger, nullable=False),
    Column("parse_failures", BigInteger, nullable=False),
)

# One row per distinct Pexip call event. The digest of the Pexip body makes the same line
# received twice (resent, or live and later backfilled) one event. `message_id` is the first
# raw message it was seen in, which holds everything else about it (its node, level, name,
# message and keys: parsed again when needed, so ingest writes them once);
# `event_messages` lists every further message that carried it. The row keeps only what
# queries select on: the time, and the leg (retention asks which events belong to no CDR).
events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("digest", LargeBinary(16), nullable=False),
    Column("time_us", BigInteger, nullable=False),
    Column("participant_id", String(PARTICIPANT_ID_MAX), nullable=True),
    Column("truncated", Boolean, nullable=False),
    Column("message_id", BigInteger, nullable=False),
    # (time, digest) is as unique as the digest (the body starts with the time) and, unlike
    # it, grows at its end: events arrive roughly in time order.
    Index("ix_events_time_us_digest", "time_us", "digest", unique=True),
    Index("ix_events_message_id", "message_id"),
)

event_messages = Table(
    "event_messages",
    metadata,
    Column("digest", LargeBinary(16), primary_key=True),
    Column("message_id", BigInteger, primary_key=True),
    # Which messages carry an event: what retention asks before pruning a message.
    Index("ix_event_messages_message_id", "message_id"),
)

# Messages stored while deriving was deferred (the database fell behind the senders), as
# runs of consecutive message ids (usually one per batch): the work of the catch-up, which
# derives their call events and CDRs and then deletes the row. Written in the same
# transaction as the messages, so no deferred message is ever forgotten. On PostgreSQL
# `lister` says which receiver listed the run (app/cdr/pending.py `lister`), so that its
# own deriving process takes it first; SQLite leaves it empty.
pending_derivations = Table(
    "pending_derivations",
    metadata,
    Column("first_id", BigInteger, primary_key=True, autoincrement=False),
    Column("last_id", BigInteger, nullable=False),
    Column("lister", Integer, nullable=True),
)

# Maintained row counts of the big tables (app/db/counts.py): one row per table on SQLite,
# per table and PostgreSQL server process (`slot`, its pid; 0 is shared) on PostgreSQL.
row_counts = Table(
    "row_counts",
    metadata,
    Column("table_name", String(32), primary_key=True),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("n", BigInteger, nullable=False),
)


def _mn_columns(declared: Iterable[MNField]) -> list[Column[Any]]:
    """The columns of declared MN fields, in the declaration's order: text of a known length
    as String, the rest by kind; `id` is the key."""
    columns: list[Column[Any]] = []
    for item in declared:
        spec = item.spec
        sql_type: TypeEngine[Any]
        if spec.kind is Kind.TEXT:
            sql_type = Text() if spec.length is None else String(spec.length)
        else:
            sql_type = _SQL_TYPES[spec.kind]
        key = item.name == "id"
        columns.append(Column(item.column, sql_type, primary_key=key, nullable=not key))
    return columns


_SQL_TYPES: dict[Kind, TypeEngine[Any]] = {
    Kind.INTEGER: Integer(),
    Kind.BOOLEAN: Boolean(),
    Kind.TIME: BigInteger(),
}

# Participant CDRs (one per leg, keyed by Participant-id), in the Management Node's own
# history field names (parsers/mn_record.py) so that comparison and export need no
# renaming. Derived data: `cdrecon rebuild` recreates it from the raw store.
cdrs = Table(
    "cdrs",
    metadata,
    *_mn_columns(f for f in PARTICIPANT_FIELDS if f.spec.cdr),
    Column("first_seen_us", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("node", String(255), nullable=True),
    Column("event_count", Integer, nullable=False),
    # The raw messages the leg's events were first seen in, ascending, comma-separated:
    # what reassembling the leg reads (derived bookkeeping, not a CDR field).
    Column("message_ids", Text, nullable=False, server_default=""),
    # The compared values once more as one text (parsers/mn_record.py, `compared_text`).
    Column(COMPARED_COLUMN, Text, nullable=True),
    Index("ix_cdrs_first_seen_us", "first_seen_us", "id"),
    Index("ix_cdrs_start_us", "start_us"),
    Index("ix_cdrs_conference_name", "conference_name", "first_seen_us"),
)

# Management Node participant history, one row per record id, as received (`record` holds
# the whole object as JSON) with the declared fields it stores pulled out.
mn_participants = Table(
    "mn_participants",
    metadata,
    *_mn_columns(f for f in PARTICIPANT_FIELDS if f.spec.stored),
    Column("record", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("imported_us", BigInteger, nullable=False),
    Column(COMPARED_COLUMN, Text, nullable=True),  # as in `cdrs`
    Index("ix_mn_participants_start_us", "start_us"),
    Index("ix_mn_participants_end_us", "end_us"),
    Index("ix_mn_participants_call_uuid", "call_uuid"),
)

# Management Node conference history, likewise.
mn_conferences = Table(
    "mn_conferences",
    metadata,
    *_mn_columns(CONFERENCE_FIELDS),
    Column("record", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("imported_us", BigInteger, nullable=False),
    Index("ix_mn_conferences_end_us", "end_us"),
)

# How far `pull-history` has read each resource, by end time (records are written when a
# call ends, so end time is the MN's ingestion order).
pull_checkpoints = Table(
    "pull_checkpoints",
    metadata,
    Column("resource", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("end_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

# When the stored MN history is known complete up to ("as of"), one row per import or pull,
# written with (or, for a pull, after) the records it vouches for; `basis` says how the
# instant was decided (app/history/coverage.py).
history_coverage = Table(
    "history_coverage",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("source", Text, nullable=False),
    Column("as_of_us", BigInteger, nullable=False),
    Column("basis", String(32), nullable=False),
    Column("records", Integer, nullable=False),
    Column("recorded_us", BigInteger, nullable=False),
    # The end_time window [from, until) the read covered: NULL from is everything before,
    # NULL until everything after (`app/history/coverage.py`).
    Column("from_us", BigInteger, nullable=True),
    Column("until_us", BigInteger, nullable=True),
    Index("ix_history_coverage_as_of_us", "as_of_us"),
)

# A reconciliation run over [from, until): its state (`reconcile.runs.RunState`: running,
# done, failed, with `failure` saying why), the process running it, its summary JSON
# (counts, gaps, input bounds; "{}" until done) and one item per CDR or MN record (a matched
# pair is one item). Only a done run is shown or used.
reconciliations = Table(
    "reconciliations",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("created_us", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=True),
    Column("from_us", BigInteger, nullable=False),
    Column("until_us", BigInteger, nullable=False),
    Column("tolerance_us", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("process", String(255), nullable=True),
    Column("finished_us", BigInteger, nullable=True),
    Column("failure", Text, nullable=True),
    Column("summary", Text, nullable=False),
)

reconciliation_items = Table(
    "reconciliation_items",
    metadata,
    Column("run_id", BigInteger, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("status", String(24), nullable=False),
    Column("cdr_id", String(128), nullable=True),
    Column("mn_id", String(128), nullable=True),
    Column("matched_by", String(16), nullable=True),
    Column("time_us", BigInteger, nullable=True),
    Column("conference_name", Text, nullable=True),
    Column("node", String(255), nullable=True),
    Column("differences", Text, nullable=True),
    Index("ix_reconciliation_items_status", "run_id", "status", "seq"),
)

# API tokens: only a SHA-256 of each token is kept; the token is shown once at creation.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger, nullable=True),
    Column("last_used_us", BigInteger, nullable=True),
    Index("ix_api_tokens_token_hash", "token_hash", unique=True),
    Index("ix_api_tokens_name", "name", unique=True),
)

# Export batches. The record set and each record's content are frozen at creation
# (`export_records.record` is the MN-shaped JSON object), so every download is the same bytes.
# The row is written first, before the records are chosen: the unique Idempotency-Key makes
# a request that repeats one in flight wait for it and then replay its batch.
exports = Table(
    "exports",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("created_us", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    Column("source", Text, nullable=False),
    Column("filters", Text, nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("total_duration", BigInteger, nullable=False),
    Column("first_start_us", BigInteger, nullable=True),
    Column("last_start_us", BigInteger, nullable=True),
    Column("sha256_csv", String(64), nullable=False),
    Column("sha256_jsonl", String(64), nullable=False),
    Index("ix_exports_idempotency_key", "idempotency_key", unique=True),
)

export_records = Table(
    "export_records",
    metadata,
    Column("export_id", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("cdr_id", String(128), nullable=False),
    Column("record", Text, nullable=False),
    Column("csv_row", Text, nullable=False),
)

# The batch each record was first exported in. Its primary key is what makes exports exactly
# once: a batch claims its records here in the transaction that stores it, so of two batches
# racing for a record one commits and the other finds it taken. A batch made with
# include_exported claims only the records no batch had before.
first_exports = Table(
    "first_exports",
    metadata,
    Column("cdr_id", String(128), primary_key=True),
    Column("export_id", String(40), nullable=False),
)

# Who did what: token name, action, target, parameters, client address, time.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at_us", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", Text, nullable=True),
    Column("parameters", Text, nullable=True),
    Column("client", String(128), nullable=True),
    Index("ix_audit_log_at_us", "at_us"),
)

# Alerts of the continuous watch (app/watch): a restore gap a watch run found (`kind` gap:
# records syslog saw that the MN lacks) or records the MN held at an earlier pull and no
# longer returns (`kind` restore). Opened once, updated as it grows, cleared when its
# records are exported or an admin acknowledges it; `from_us`/`until_us` bound its records
# in the MN's write order (call end), `before_us`/`after_us` the records kept either side.
watch_alerts = Table(
    "watch_alerts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("first_seen_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Column("cleared_us", BigInteger, nullable=True),
    Column("cleared_by", String(128), nullable=True),
    Column("from_us", BigInteger, nullable=False),
    Column("until_us", BigInteger, nullable=False),
    Column("before_us", BigInteger, nullable=True),
    Column("after_us", BigInteger, nullable=True),
    # How far the gap may reach without passing a kept record the runs saw (its identity
    # across runs: app/watch/policy.py).
    Column("reach_from_us", BigInteger, nullable=False),
    Column("reach_until_us", BigInteger, nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("nodes", Text, nullable=False),
    Column("run_id", BigInteger, nullable=True),
    Column("source", Text, nullable=True),
    Index("ix_watch_alerts_state", "state", "id"),
)

# The records an alert is about (a CDR id for a gap, an MN record id for a restore): what
# clears it once exported, and what retention must keep while it is open. `record` is the
# MN's record as it was held, kept here when an admin confirms a restore and it leaves
# `mn_participants`.
watch_alert_records = Table(
    "watch_alert_records",
    metadata,
    Column("alert_id", BigInteger, primary_key=True),
    Column("record_id", String(128), primary_key=True),
    Column("time_us", BigInteger, nullable=False),
    Column("record", Text, nullable=True),
    Index("ix_watch_alert_records_record_id", "record_id"),
)

# Messages received per sending host per minute (the minute's start, in µs), added to by the
# batch writer in the same transaction as the messages, and kept for NODE_MINUTES_KEPT
# (app/ingest/repository.py): the overview's chart reads a day of it without touching
# `messages`. Keyed by minute first, so the chart's range read and the pruning are one scan.
node_minutes = Table(
    "node_minutes",
    metadata,
    Column("minute_us", BigInteger, primary_key=True, autoincrement=False),
    Column("host", String(255), primary_key=True),
    Column("messages", BigInteger, nullable=False),
)

# Every pull of MN history (`cdrecon pull-history` and the scheduled one), finished or
# failed: when, from where, how many records, and the error of a failed one, for the
# overview. The newest PULL_ATTEMPTS_KEPT are kept (app/history/repository.py).
pull_attempts = Table(
    "pull_attempts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("started_us", BigInteger, nullable=False),
    Column("finished_us", BigInteger, nullable=False),
    Column("url", Text, nullable=False),
    Column("records", Integer, nullable=True),
    Column("error", Text, nullable=True),
)
