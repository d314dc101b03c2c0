"""All SQL of the raw store and node table; dialect differences are chosen here, once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import counts
from app.db.models import node_minutes, nodes
from app.db.partitions import day_of, id_base
from app.db.sql import fetch_tuples, insert_sql, placeholder, placeholders

from .rows import MESSAGE_COLUMNS, MINUTE_US, NodeTally, Row

# How long the per-minute counts are kept: the overview charts a day of them.
NODE_MINUTES_KEPT_US = 2 * 24 * 60 * MINUTE_US


# The advisory lock that makes PostgreSQL's backfilled-line check one at a time.
_BACKFILL_LOCK = 0x6364_7265_636F_6E01  # "cdrecon" 1


def _partitioned_ids(rows: list[Row], calls: list[bool], drawn: list[int]) -> list[int]:
    """PostgreSQL's ids of `rows` from sequence values `drawn` (app/db/partitions.py): the
    day received and the class in the high bits; the values given in order to the rows
    that carry no call event, then to the others, so each class is one run of ids."""
    values = iter(sorted(drawn))
    received = MESSAGE_COLUMNS.index("received_us")
    ids = [0] * len(rows)
    for wanted in (False, True):
        for index, row in enumerate(rows):
            if calls[index] is wanted:
                ids[index] = id_base(day_of(row[received]), wanted) | next(values)
    return ids


class MessageRepository:
    """Writes and reads the raw store. One instance per engine dialect."""

    def __init__(self, dialect_name: str, paramstyle: str) -> None:
        self._dialect_name = dialect_name
        # The hot path goes straight to the driver's executemany: SQLAlchemy's per-value
        # type processing would cost more than the insert itself. PostgreSQL rows get ids
        # drawn from the sequence first; SQLite numbers a transaction's rows contiguously.
        columns = MESSAGE_COLUMNS if dialect_name == "sqlite" else ("id", *MESSAGE_COLUMNS)
        self._insert_sql = insert_sql("messages", columns, paramstyle)
        self._paramstyle = paramstyle
        self._pruned_minute_us = -1  # the newest minute that pruning ran for

    @classmethod
    def for_connection(cls, conn: AsyncConnection) -> MessageRepository:
        """The repository for the dialect of `conn`."""
        return cls(conn.dialect.name, conn.dialect.paramstyle)

    async def insert_messages(
        self, conn: AsyncConnection, rows: list[Row], calls: list[bool]
    ) -> list[int]:
        """Insert raw-store rows (columns in `MESSAGE_COLUMNS` order), each with whether it
        may carry a call event; their ids, in order."""
        if not rows:
            return []
        await counts.adjust(conn, "messages", len(rows))
        if self._dialect_name == "sqlite":
            await conn.exec_driver_sql(self._insert_sql, rows)
            # The transaction holds SQLite's write lock, so its rows were numbered
            # contiguously up to the last one.
            last = (await conn.exec_driver_sql("SELECT last_insert_rowid()")).scalar_one()
            return list(range(int(last) - len(rows) + 1, int(last) + 1))
        drawn = [
            int(i)
            for i in (
                await conn.execute(
                    select(func.nextval("messages_id_seq")).select_from(
                        func.generate_series(1, len(rows))
                    )
                )
            ).scalars()
        ]
        ids = _partitioned_ids(rows, calls, drawn)
        await conn.exec_driver_sql(
            self._insert_sql, [(i, *row) for i, row in zip(ids, rows, strict=True)]
        )
        return ids

    async def existing_digests(self, conn: AsyncConnection, digests: list[bytes]) -> set[bytes]:
        """Which of `digests` (of backfilled lines) are stored already. On PostgreSQL,
        whose digest index cannot be unique (partitions), the transaction first waits for
        any other that stores backfilled lines: of two importing the same file, the second
        sees the first's lines."""
        if self._dialect_name == "postgresql":
            await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_BACKFILL_LOCK})")
        found: set[bytes] = set()
        for start in range(0, len(digests), 500):
            chunk = digests[start : start + 500]
            # Plain SQL: SQLAlchemy renders an expanding IN of 500 values anew on every call.
            result = await conn.exec_driver_sql(
                "SELECT digest FROM messages WHERE digest IN "
                f"({placeholders(self._paramstyle, len(chunk))})",
                tuple(chunk),
            )
            found.update(bytes(d) for d in result.scalars())
        return found

    async def upsert_nodes(self, conn: AsyncConnection, tallies: dict[str, NodeTally]) -> None:
        """Add one batch's per-host tallies to the node table."""
        if not tallies:
            return
        values: list[dict[str, Any]] = [
            {
                "host": host[:255],
                "last_peer": t.last_peer,
                "last_transport": t.last_transport,
                "first_seen_us": t.first_seen_us,
                "last_seen_us": t.last_seen_us,
                "messages": t.messages,
                "parse_failures": t.parse_failures,
            }
            for host, t in sorted(tallies.items())
        ]
        # The same upsert on both databases; only the names of scalar min/max differ.
        postgres = self._dialect_name == "postgresql"
        insert = (postgresql.insert if postgres else sqlite.insert)(nodes)
        smaller, larger = (func.least, func.greatest) if postgres else (func.min, func.max)
        new = insert.excluded
        statement = insert.on_conflict_do_update(
            index_elements=[nodes.c.host],
            set_={
                "last_peer": new.last_peer,
                "last_transport": new.last_transport,
                "first_seen_us": smaller(nodes.c.first_seen_us, new.first_seen_us),
                "last_seen_us": larger(nodes.c.last_seen_us, new.last_seen_us),
                "messages": nodes.c.messages + new.messages,
                "parse_failures": nodes.c.parse_failures + new.parse_failures,
            },
        )
        await conn.execute(statement, values)

    async def add_node_minutes(
        self, conn: AsyncConnection, minutes: dict[tuple[int, str], int]
    ) -> None:
        """Add one batch's messages per (minute, host) to `node_minutes`; when a batch opens
        a minute this repository has not pruned for, drop the minutes older than
        NODE_MINUTES_KEPT_US (a range of the key's start: cheap)."""
        if not minutes:
            return
        values: list[dict[str, Any]] = [
            {"minute_us": minute_us, "host": host[:255], "messages": n}
            for (minute_us, host), n in sorted(minutes.items())
        ]
        insert = (postgresql.insert if self._dialect_name == "postgresql" else sqlite.insert)(
            node_minutes
        )
        statement = insert.on_conflict_do_update(
            index_elements=[node_minutes.c.minute_us, node_minutes.c.host],
            set_={"messages": node_minutes.c.messages + insert.excluded.messages},
        )
        await conn.execute(statement, values)
        newest = max(minute_us for minute_us, _ in minutes)
        if newest > self._pruned_minute_us:
            self._pruned_minute_us = newest
            await conn.execute(
                delete(node_minutes).where(node_minutes.c.minute_us < newest - NODE_MINUTES_KEPT_US)
            )

    async def node_steps_since(
        self, conn: AsyncConnection, since_us: int, step_us: int
    ) -> list[tuple[str, int, int]]:
        """(host, step, messages): the messages of each host in each `step_us` from
        `since_us` on (step 0 starts at `since_us`), summed by the database."""
        first, width, again = (placeholder(conn.dialect.paramstyle, i) for i in (1, 2, 3))
        rows = await fetch_tuples(
            conn,
            f"SELECT host, (minute_us - {first}) / {width} AS step, sum(messages) "
            f"FROM node_minutes WHERE minute_us >= {again} GROUP BY host, step",
            (since_us, step_us, since_us),
        )
        return [(str(host), int(step), int(n)) for host, step, n in rows]

    async def list_nodes(self, conn: AsyncConnection) -> list[dict[str, Any]]:
        """Every sending host with its counters, most recently seen first."""
        result = await conn.execute(
            select(nodes).order_by(nodes.c.last_seen_us.desc(), nodes.c.host)
        )
        return [dict(row._mapping) for row in result]
