"""Reconciliation over real databases: syslog through the writer, MN history imported."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import InvalidInputError
from app.history.service import HistoryImportError, import_document
from app.reconcile import service
from app.times import FIRST_US
from parsers.mn_record import COMPARED_FIELDS, compared_text
from tests.reconcile.generator import generate
from tests.reconcile.loading import loaded_engine, us

SCENARIO = generate(seed=11, days=2, calls_per_day=80)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with loaded_engine(database_url, SCENARIO) as engine:
        yield engine


@pytest.mark.parametrize("slice_minutes", [360, 1])
async def test_a_run_classifies_every_record_and_finds_the_gap(
    engine: AsyncEngine, slice_minutes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short slices put many records near slice edges: the result must not change.
    monkeypatch.setattr(service, "SLICE_US", slice_minutes * 60 * 1_000_000)
    start, end = SCENARIO.window
    summary = await service.reconcile(engine, us(start), us(end), 2_000_000, "test")
    expected = Counter(SCENARIO.expected.values())
    assert summary["counts"] == {status: expected.get(status, 0) for status in summary["counts"]}
    [gap] = summary["gaps"]
    assert gap["count"] == len(SCENARIO.lost)
    async with engine.connect() as conn:
        items, _ = await service.page_items(conn, summary["id"], None, None, 100_000)
        lost, _ = await service.page_items(conn, summary["id"], "missing_in_mn", None, 100_000)
        again = await service.get_summary(conn, summary["id"])
    found = {item["cdr_id"] or item["mn_id"]: item["status"] for item in items}
    assert found == SCENARIO.expected
    assert sorted(item["cdr_id"] for item in lost) == sorted(SCENARIO.lost)
    assert again == summary


async def test_a_history_document_with_a_bad_record_is_rejected_whole(engine: AsyncEngine) -> None:
    records = [dict(r) for r in SCENARIO.mn_records[:3]]
    records[0]["id"] = "new-1"
    records[1]["id"] = "new-2"
    records[1]["start_time"] = "yesterday"
    async with engine.begin() as conn:
        with pytest.raises(HistoryImportError) as raised:
            await import_document(conn, json.dumps(records), "bad.json")
    assert [(e.row, e.field) for e in raised.value.errors] == [(2, "start_time")]
    start, end = SCENARIO.window
    summary = await service.reconcile(engine, us(start), us(end))
    assert "new-1" not in json.dumps(summary)
    async with engine.begin() as conn:
        with pytest.raises(InvalidInputError):
            await import_document(conn, b"this is not history", "junk.txt")


async def test_an_empty_or_unnameable_window_is_refused(engine: AsyncEngine) -> None:
    with pytest.raises(InvalidInputError):
        await service.reconcile(engine, 10, 10)
    with pytest.raises(InvalidInputError):  # before the year 1: no time can name it
        await service.reconcile(engine, FIRST_US - 30_000_000, FIRST_US + 10)


async def test_a_window_of_a_century_gives_the_same_run(engine: AsyncEngine) -> None:
    """Slices are cut only where there is data: a wide window is as quick and as exact."""
    from datetime import UTC, datetime

    start, end = SCENARIO.window
    exact = await service.reconcile(engine, us(start), us(end))
    wide = await service.reconcile(
        engine, us(datetime(2000, 1, 1, tzinfo=UTC)), us(datetime(2100, 1, 1, tzinfo=UTC))
    )
    assert wide["counts"] == exact["counts"]
    assert wide["gaps"] == exact["gaps"]


async def test_both_stores_keep_the_text_of_their_compared_values(engine: AsyncEngine) -> None:
    fields = ", ".join(f.column for f in COMPARED_FIELDS)
    async with engine.connect() as conn:
        for table in ("cdrs", "mn_participants"):
            rows = (await conn.exec_driver_sql(f"SELECT compared, {fields} FROM {table}")).all()
            assert rows
            assert all(row[0] == compared_text(row[1:]) for row in rows), table


async def test_rows_stored_without_the_text_are_reconciled_from_their_columns(
    engine: AsyncEngine,
) -> None:
    start, end = SCENARIO.window
    async with engine.begin() as conn:
        for table in ("cdrs", "mn_participants"):
            await conn.exec_driver_sql(f"UPDATE {table} SET compared = NULL")
    summary = await service.reconcile(engine, us(start), us(end), 2_000_000, "test")
    expected = Counter(SCENARIO.expected.values())
    assert summary["counts"] == {status: expected.get(status, 0) for status in summary["counts"]}
