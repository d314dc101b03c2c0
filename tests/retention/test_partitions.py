"""PostgreSQL's raw store in day partitions (app/db/partitions.py): made ahead, each message
in its day's partition of its class, whole days dropped by retention unless something in
them is still needed, and the default partition's rows reported."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import counts, partitions
from app.db.engine import create_engine
from app.db.partitions import Partition
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from app.retention.policy import DAY_US, Policy
from app.retention.service import make_partitions, prune
from parsers.framing import Frame
from tests.conftest import cdrecon

pytestmark = pytest.mark.postgres

NOW_US = time.time_ns() // 1000
TODAY = partitions.day_of(NOW_US)
# A call event of now: its CDR is inside any horizon the tests set.
CALL = (
    f'{datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S,000")} Level="INFO" '
    'Name="administrator.conference" Message="Participant has joined." '
    'Participant-id="{n}" Conference="c"'
)


def _support(n: int) -> Frame:
    return Frame(f"<134>1 2026-11-26T10:00:00Z conf-lon-1 kernel - - - eth0 check {n}".encode())


def _call(n: int) -> Frame:
    return Frame(f"<134>1 2026-11-26T10:00:00Z conf-lon-1 pexip - - - {CALL}".format(n=n).encode())


@pytest.fixture
async def engine(postgres_database: str, database_url: str) -> AsyncIterator[AsyncEngine]:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:  # the session's database: start from no days
            for partition in await partitions.existing(conn):
                await partitions.drop(conn, partition)
        yield engine
    finally:
        await engine.dispose()


async def _ingest(engine: AsyncEngine, frames: list[Frame], received_us: int) -> None:
    writer = BatchWriter(engine, Metrics(), batch_size=200, linger=0)
    writer.start()
    writer.submit(Origin("tcp", "10.0.0.1", 1), frames, received_us)
    await writer.stop()


async def _where(engine: AsyncEngine) -> dict[str, int]:
    """Messages per partition, by the partition's table name."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT tableoid::regclass::text, count(*) FROM messages GROUP BY 1 ORDER BY 1")
        )
        return {str(name).split(".")[-1]: int(n) for name, n in rows}


async def test_partitions_are_made_ahead_and_a_message_lands_in_its_days(
    engine: AsyncEngine,
) -> None:
    made = await make_partitions(engine, NOW_US)
    days = [TODAY + n for n in range(partitions.DAYS_AHEAD + 1)]
    assert sorted(made) == sorted(Partition(d, c).name for d in days for c in (False, True))
    assert await make_partitions(engine, NOW_US) == []  # made once

    await _ingest(engine, [_support(n) for n in range(7)] + [_call(n) for n in range(3)], NOW_US)
    tomorrow = NOW_US + DAY_US
    await _ingest(engine, [_call(9)], tomorrow)
    assert await _where(engine) == {
        Partition(TODAY, False).name: 7,
        Partition(TODAY, True).name: 3,
        Partition(TODAY + 1, True).name: 1,
    }
    async with engine.connect() as conn:
        events = (await conn.execute(text("SELECT count(*) FROM events"))).scalar()
    assert events == 4
    # A lookup by a known id reads one partition (pruned when the plan is made).
    async with engine.connect() as conn:
        one = (await conn.execute(text("SELECT max(message_id) FROM events"))).scalar()
        explained = await conn.execute(text(f"EXPLAIN SELECT raw FROM messages WHERE id = {one}"))
        plan = "\n".join(str(row[0]) for row in explained)
    assert plan.count(" on messages_") == 1, plan


async def test_pruning_drops_whole_days_past_their_horizon_but_not_a_needed_one(
    engine: AsyncEngine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_us = NOW_US - 30 * DAY_US
    older_us = NOW_US - 31 * DAY_US
    await make_partitions(engine, older_us)
    await make_partitions(engine, NOW_US)
    await _ingest(engine, [_support(n) for n in range(20)] + [_call(n) for n in range(2)], old_us)
    await _ingest(engine, [_support(n) for n in range(5)] + [_call(n) for n in range(4)], older_us)
    await _ingest(engine, [_support(n) for n in range(3)], NOW_US)
    old, older = partitions.day_of(old_us), partitions.day_of(older_us)
    # One of the older day's support lines still waits to be derived: that day stays.
    async with engine.begin() as conn:
        waiting = (
            await conn.execute(
                text("SELECT max(id) FROM messages WHERE id < :high"),
                {"high": Partition(older, False).high},
            )
        ).scalar()
        await conn.execute(
            text("INSERT INTO pending_derivations (first_id, last_id) VALUES (:i, :i)"),
            {"i": waiting},
        )

    # Support lines are kept 14 days, the rest 20: the old days' calls stay, held by their
    # call events (their CDRs, of today, are kept).
    monkeypatch.setenv("CDRECON_RETAIN_MESSAGES_DAYS", "14")
    monkeypatch.setenv("CDRECON_RETAIN_BILLING_DAYS", "20")
    dry = cdrecon(database_url, "prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = [line for line in dry.stdout.decode().splitlines() if line.startswith("partition")]
    assert f"partition {Partition(old, False).name}\t20" in listed
    assert not any(Partition(older, False).name in line for line in listed)
    assert not any("_calls\t" in line and not line.endswith("\t0") for line in listed)

    done = await prune(engine, Policy(14, 20), now_us=NOW_US, rest=False)
    assert {n: r for n, r in done.tally.partitions.items() if r} == {Partition(old, False).name: 20}
    assert await _where(engine) == {
        Partition(older, False).name: 5,
        Partition(older, True).name: 4,
        Partition(old, True).name: 2,
        Partition(TODAY, False).name: 3,
    }
    async with engine.connect() as conn:
        assert (await counts.read(conn))["messages"] == 14
        names = {p.name for p in await partitions.existing(conn)}
    assert Partition(old, False).name not in names and Partition(TODAY, True).name in names

    # Once the old days' call events are gone (as their CDRs would go) and the waiting
    # line derived, their days go too.
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM events"))
        await conn.execute(text("DELETE FROM event_messages"))
        await conn.execute(text("DELETE FROM pending_derivations"))
    again = await prune(engine, Policy(14, 20), now_us=NOW_US, rest=False)
    assert {n: r for n, r in again.tally.partitions.items() if r} == {
        Partition(older, False).name: 5,
        Partition(older, True).name: 4,
        Partition(old, True).name: 2,
    }
    assert await _where(engine) == {Partition(TODAY, False).name: 3}


async def test_messages_no_day_partition_takes_go_to_the_default_one_and_are_reported(
    engine: AsyncEngine, database_url: str
) -> None:
    # No partition made for this day: its messages land in the default partition.
    await _ingest(engine, [_support(n) for n in range(4)], NOW_US)
    assert await _where(engine) == {partitions.DEFAULT_PARTITION: 4}
    # Today's support partition cannot be made while the default holds its day; the rest can.
    made = await make_partitions(engine, NOW_US)
    assert Partition(TODAY, False).name not in made and Partition(TODAY, True).name in made
    done = await prune(engine, Policy(14, 400), now_us=NOW_US + 100 * DAY_US, rest=False)
    assert done.default_rows == 4  # reported, and never dropped
    assert await _where(engine) == {partitions.DEFAULT_PARTITION: 4}
    run = cdrecon(database_url, "prune", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "4 messages are in the default partition" in run.stderr.decode()
