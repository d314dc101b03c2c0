"""Table definitions. The Alembic migrations create them; this module is how code names them."""

from __future__ import annotations

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
# SQLite and PostgreSQL. The frame is kept byte for byte; the message is raw[msg_offset:].
messages = Table(
    "messages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("received_us", BigInteger, nullable=False),
    Column("transport", String(8), nullable=False),
    Column("peer_host", String(64), nullable=True),
    Column("peer_port", Integer, nullable=True),
    Column("tls_subject", Text, nullable=True),
    Column("format", String(8), nullable=False),
    Column("facility", SmallInteger, nullable=True),
    Column("severity", SmallInteger, nullable=True),
    Column("timestamp_us", BigInteger, nullable=True),
    Column("timestamp_text", String(64), nullable=True),
    Column("hostname", String(255), nullable=True),
    Column("app_name", String(64), nullable=True),
    Column("procid", String(128), nullable=True),
    Column("msgid", String(32), nullable=True),
    Column("structured_data", Text, nullable=True),
    Column("msg_offset", Integer, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    Column("raw", LargeBinary, nullable=False),
    Index("ix_messages_received_us", "received_us"),
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
