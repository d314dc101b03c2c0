"""PostgreSQL's raw store in day partitions, so that retention drops a day instead of
deleting its rows (SQLite keeps one table and deletes rows).

`messages` is partitioned by RANGE of its id, and a message's id says the UTC day it was
received and whether it may carry a call event: `day << 41 | calls << 40 | sequence`. So
each (day, class) is one range of ids and one partition, the primary key stays `id` alone,
and a lookup by id (events, CDRs, the console) reaches one partition's index, pruned by
the planner. The two classes follow different horizons (retention's MESSAGES and BILLING):
a partition of messages that carry no call event goes after days, one that may carry them
once its call events have gone with their CDRs. The ids keep receive order within a class
and across days; within a day, the class comes first.

Partitions live in their own schema (`PARTITION_SCHEMA`), out of the way of the models'
comparison; a DEFAULT partition catches what no day partition takes (a day not created
ahead) and is never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .sql import fetch_tuples

DAY_US = 86_400 * 1_000_000
CLASS_SHIFT = 40  # 2**40 sequence values: 34 years at 1,000 messages a second
DAY_SHIFT = 41
PARTITION_SCHEMA = "message_days"
DEFAULT_PARTITION = "messages_default"
# Days created ahead of today: a serve that stops for two days finds them waiting.
DAYS_AHEAD = 3
# The longest partition DDL waits for a lock (it takes the parent's): ingest waits as long.
LOCK_TIMEOUT = "2s"

_NAME = re.compile(r"^messages_(\d{8})_(calls|other)$")


def partitioned(bind: AsyncConnection | AsyncEngine) -> bool:
    """Whether `messages` is in day partitions there (PostgreSQL)."""
    return bind.dialect.name == "postgresql"


def day_of(received_us: int) -> int:
    """The UTC day (since the epoch) of an instant in µs."""
    return received_us // DAY_US


def id_base(day: int, calls: bool) -> int:
    """The first message id of (day, class)."""
    return day << DAY_SHIFT | int(calls) << CLASS_SHIFT


@dataclass(frozen=True, slots=True)
class Partition:
    """One day's messages of one class: ids [low, high), received [start_us, end_us)."""

    day: int
    calls: bool

    @property
    def name(self) -> str:
        stamp = (date(1970, 1, 1) + timedelta(days=self.day)).strftime("%Y%m%d")
        return f"messages_{stamp}_{'calls' if self.calls else 'other'}"

    @property
    def low(self) -> int:
        return id_base(self.day, self.calls)

    @property
    def high(self) -> int:
        return self.low + (1 << CLASS_SHIFT)

    @property
    def end_us(self) -> int:
        """The end of its day: every message in it was received before this."""
        return (self.day + 1) * DAY_US

    @classmethod
    def named(cls, name: str) -> Partition | None:
        """The partition a table name stands for; None for another table (the default)."""
        match = _NAME.match(name)
        if match is None:
            return None
        day = datetime.strptime(match[1], "%Y%m%d").replace(tzinfo=UTC).date()
        return cls((day - date(1970, 1, 1)).days, match[2] == "calls")


def ahead(now_us: int, days: int = DAYS_AHEAD) -> list[Partition]:
    """Today's partitions and those of the next `days` days."""
    today = day_of(now_us)
    return [Partition(d, calls) for d in range(today, today + days + 1) for calls in (False, True)]


async def existing(conn: AsyncConnection) -> list[Partition]:
    """The day partitions of `messages`, oldest first."""
    rows = await fetch_tuples(
        conn,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'messages'::regclass",
        (),
    )
    found = [p for (name,) in rows if (p := Partition.named(str(name))) is not None]
    return sorted(found, key=lambda p: p.low)


async def create(conn: AsyncConnection, partitions: list[Partition]) -> list[str]:
    """Create those of `partitions` that do not exist; the names of those made. A day
    whose messages the default partition holds already is left there (PostgreSQL would
    refuse it): `default_rows` reports them."""
    have = {p.name for p in await existing(conn)}
    made = []
    for partition in partitions:
        if partition.name in have:
            continue
        taken = await fetch_tuples(
            conn,
            f"SELECT 1 FROM {PARTITION_SCHEMA}.{DEFAULT_PARTITION} "
            f"WHERE id >= {partition.low} AND id < {partition.high} LIMIT 1",
            (),
        )
        if taken:
            continue
        await conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await conn.exec_driver_sql(
            f"CREATE TABLE {PARTITION_SCHEMA}.{partition.name} PARTITION OF messages "
            f"FOR VALUES FROM ({partition.low}) TO ({partition.high})"
        )
        made.append(partition.name)
    return made


async def rows_in(conn: AsyncConnection, partition: Partition) -> int:
    """How many messages a partition holds."""
    rows = await fetch_tuples(conn, f"SELECT count(*) FROM {PARTITION_SCHEMA}.{partition.name}", ())
    return int(rows[0][0])


async def drop(conn: AsyncConnection, partition: Partition) -> None:
    """Detach and drop a partition: its messages go with it, in one short lock."""
    await conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    await conn.exec_driver_sql(
        f"ALTER TABLE messages DETACH PARTITION {PARTITION_SCHEMA}.{partition.name}"
    )
    await conn.exec_driver_sql(f"DROP TABLE {PARTITION_SCHEMA}.{partition.name}")


async def default_rows(conn: AsyncConnection) -> tuple[int, int | None]:
    """Messages in the default partition (no day partition took them), and the oldest one's
    receive time (µs), for reporting: a day partition was not made ahead."""
    rows = await fetch_tuples(
        conn,
        f"SELECT count(*), min(received_us) FROM {PARTITION_SCHEMA}.{DEFAULT_PARTITION}",
        (),
    )
    count, oldest = rows[0]
    return int(count), None if oldest is None else int(oldest)
