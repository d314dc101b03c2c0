"""The run page's timeline queries over real databases: records per hour of call start, and
the MN records kept either side of a gap, checked against the stored rows themselves."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import cdrs, mn_participants
from app.reconcile import service
from tests.reconcile.generator import generate
from tests.reconcile.loading import loaded_engine, us

SCENARIO = generate(seed=7, days=1, calls_per_day=50)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with loaded_engine(database_url, SCENARIO) as engine:
        yield engine


async def test_density_counts_each_record_in_the_hour_it_started(engine: AsyncEngine) -> None:
    start, end = us(SCENARIO.window[0]), us(SCENARIO.window[1])
    async with engine.connect() as conn:
        density = await service.density(conn, start, end)
        legs = (await conn.execute(select(cdrs.c.start_us, cdrs.c.end_us))).all()
        records = (await conn.execute(select(mn_participants.c.start_us))).all()
    assert density.bucket_us == service.HOUR_US and len(density.syslog) == 24

    def per_hour(starts: list[int | None]) -> list[int]:
        found = Counter((s - start) // service.HOUR_US for s in starts if s and start <= s < end)
        return [found.get(hour, 0) for hour in range(24)]

    assert density.syslog == per_hour([s for s, _ in legs])
    assert density.mn == per_hour([s for (s,) in records])
    assert sum(density.syslog) > sum(density.mn) > 0  # the MN lost some
    # A window of several years is drawn in wider buckets, no more than asked for.
    async with engine.connect() as conn:
        wide = await service.density(conn, start - 3 * 365 * 24 * service.HOUR_US, end, 500)
    assert len(wide.syslog) <= 500 and sum(wide.syslog) == sum(density.syslog)


async def test_the_records_kept_around_a_gap_are_the_nearest_ones(engine: AsyncEngine) -> None:
    start, end = us(SCENARIO.window[0]), us(SCENARIO.window[1])
    summary = await service.reconcile(engine, start, end, 2_000_000, "test")
    [gap] = summary["gaps"]
    async with engine.connect() as conn:
        [(before, after)] = await service.kept_around_gaps(conn, summary, limit=2)
        rows = await conn.execute(
            select(
                mn_participants.c.id,
                mn_participants.c.end_us,
                mn_participants.c.start_us,
                mn_participants.c.protocol,
            )
        )
        # Failed attempts (no start) and backplanes bound no gap: never "kept around" one.
        ends = sorted(
            (e, i)
            for i, e, s, protocol in rows
            if e is not None and start <= e < end and s is not None and protocol != "BACKPLANE"
        )
    first, last = us(datetime.fromisoformat(gap["from"])), us(datetime.fromisoformat(gap["until"]))
    assert [r["id"] for r in before] == [
        i for _, i in reversed([x for x in ends if x[0] <= first])
    ][:2]
    assert [r["id"] for r in after] == [i for _, i in [x for x in ends if x[0] >= last]][:2]
    # The gap is bounded by the syslog side's end of a pair: the MN's is within tolerance.
    if gap["last_kept_before"]:
        bound = us(datetime.fromisoformat(gap["last_kept_before"]))
        assert abs(us(datetime.fromisoformat(before[0]["end"])) - bound) <= 2_000_000
