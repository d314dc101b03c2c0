"""What the billing page reads, over real databases: the lost records no batch holds yet
(each once across runs), how many of a run's are billed, and which batch holds a record."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.export.service import (
    ExportRequest,
    batches_holding,
    create_export,
    lost_per_run,
    remaining_to_bill,
)
from app.reconcile import service as reconcile_service
from tests.reconcile.generator import generate
from tests.reconcile.loading import loaded_engine, us

SCENARIO = generate(seed=9, days=1, calls_per_day=50)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with loaded_engine(database_url, SCENARIO) as engine:
        yield engine


async def _run(engine: AsyncEngine) -> int:
    start, end = SCENARIO.window
    summary = await reconcile_service.reconcile(engine, us(start), us(end), 2_000_000, "t")
    return int(summary["id"])


async def test_what_remains_to_bill_shrinks_as_batches_are_made(engine: AsyncEngine) -> None:
    lost = sorted(SCENARIO.lost)
    assert lost
    first, newer = await _run(engine), await _run(engine)
    async with engine.connect() as conn:
        remaining = await remaining_to_bill(conn, [newer, first], 1000)
        assert await lost_per_run(conn, [first, newer]) == {
            first: (len(lost), 0),
            newer: (len(lost), 0),
        }
        assert await batches_holding(conn, lost) == {}
    # Each record once, under the newest run that lists it, in start order.
    assert sorted(r["id"] for r in remaining) == lost
    assert {r["run_id"] for r in remaining} == {newer}
    assert [r["start"] for r in remaining] == sorted(r["start"] for r in remaining)
    async with engine.connect() as conn:
        assert len(await remaining_to_bill(conn, [first, newer], 3)) <= 3

    async with engine.begin() as conn:
        manifest, _ = await create_export(conn, engine, ExportRequest(run_id=first), "billing")
    async with engine.connect() as conn:
        assert await remaining_to_bill(conn, [first, newer], 1000) == []
        # The newer run still lists them lost; it now says they are billed, and where.
        assert await lost_per_run(conn, [first, newer]) == {
            first: (len(lost), len(lost)),
            newer: (len(lost), len(lost)),
        }
        assert await batches_holding(conn, [*lost, "not-a-cdr"]) == {
            cdr_id: manifest["id"] for cdr_id in lost
        }
        assert await lost_per_run(conn, []) == {} and await batches_holding(conn, []) == {}
