"""Export batches over real databases: frozen, byte-stable, idempotent, exactly once."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import exports
from app.errors import InvalidInputError, NotFoundError
from app.export.service import (
    AlreadyExported,
    ExportFormat,
    ExportRequest,
    IdempotencyConflict,
    NothingToExport,
    create_export,
    stream_export,
)
from app.reconcile import service as reconcile_service
from tests.reconcile.generator import generate
from tests.reconcile.loading import loaded_engine, us

SCENARIO = generate(seed=5, days=2, calls_per_day=60)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with loaded_engine(database_url, SCENARIO) as engine:
        yield engine


async def run_id(engine: AsyncEngine) -> int:
    start, end = SCENARIO.window
    summary = await reconcile_service.reconcile(engine, us(start), us(end))
    return int(summary["id"])


async def export(
    engine: AsyncEngine, request: ExportRequest, key: str | None = None
) -> dict[str, Any]:
    async with engine.begin() as conn:
        manifest, _ = await create_export(conn, engine, request, "tester", key)
    return manifest


async def batch_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(exports.c.id))).scalars())


async def download(engine: AsyncEngine, export_id: str, fmt: ExportFormat) -> bytes:
    return b"".join([chunk async for chunk in stream_export(engine, export_id, fmt)])


async def test_a_run_exports_its_lost_records_byte_stably(engine: AsyncEngine) -> None:
    manifest = await export(engine, ExportRequest(run_id=await run_id(engine)))
    assert manifest["record_count"] == len(SCENARIO.lost)
    first_csv = await download(engine, manifest["id"], ExportFormat.CSV)
    first_jsonl = await download(engine, manifest["id"], ExportFormat.JSONL)
    assert await download(engine, manifest["id"], ExportFormat.CSV) == first_csv
    assert hashlib.sha256(first_csv).hexdigest() == manifest["sha256"]["csv"]
    assert hashlib.sha256(first_jsonl).hexdigest() == manifest["sha256"]["jsonl"]
    rows = list(csv.DictReader(io.StringIO(first_csv.decode(), newline="")))
    objects = [json.loads(line) for line in first_jsonl.decode().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(SCENARIO.lost)
    assert [o["id"] for o in objects] == [r["id"] for r in rows]
    assert sum(o["duration"] for o in objects) == manifest["total_duration"]
    assert manifest["first_start_time"] == min(o["start_time"] for o in objects)


async def test_calls_after_the_history_are_never_exported_as_lost(engine: AsyncEngine) -> None:
    after = {pid for pid, status in SCENARIO.expected.items() if status == "after_history"}
    run = await run_id(engine)
    async with engine.connect() as conn:
        listed, _ = await reconcile_service.page_items(conn, run, "after_history", None, 1000)
    assert {item["cdr_id"] for item in listed} == after != set()
    manifest = await export(engine, ExportRequest(run_id=run))
    jsonl = await download(engine, manifest["id"], ExportFormat.JSONL)
    exported = {json.loads(line)["id"] for line in jsonl.splitlines()}
    assert exported == set(SCENARIO.lost) and not exported & after


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("after_history", "newest MN history's as-of"),
        ("outside_retention", "older than anything the MN still holds"),
        ("open", "has not ended"),
        ("excluded", "not billable"),
        ("missing_in_syslog", "no syslog CDR"),
        ("lost", "unknown status 'lost'"),
    ],
)
async def test_statuses_not_known_to_be_lost_are_never_exported(
    engine: AsyncEngine, status: str, reason: str
) -> None:
    run = await run_id(engine)
    with pytest.raises(InvalidInputError, match=reason):
        await export(engine, ExportRequest(run_id=run, status=status))
    assert await batch_ids(engine) == set()


async def test_records_are_exported_exactly_once_unless_asked(engine: AsyncEngine) -> None:
    run = await run_id(engine)
    first = await export(engine, ExportRequest(run_id=run))
    with pytest.raises(AlreadyExported) as refused:
        await export(engine, ExportRequest(run_id=run))
    assert str(refused.value) == (
        f"all {len(SCENARIO.lost)} lost records of run {run} are already in batch "
        f"{first['id']}; pass include_exported to export them again"
    )
    again = await export(engine, ExportRequest(run_id=run, include_exported=True))
    assert first["record_count"] == again["record_count"] == len(SCENARIO.lost)
    assert await batch_ids(engine) == {first["id"], again["id"]}


async def test_a_batch_that_reexports_records_still_claims_the_new_ones(
    engine: AsyncEngine,
) -> None:
    """Records first exported in an include_exported batch are not exported again."""
    start, end = SCENARIO.window
    middle = start + (end - start) / 2
    early = await export(engine, ExportRequest(from_us=us(start), until_us=us(middle)))
    whole = await export(
        engine, ExportRequest(from_us=us(start), until_us=us(end), include_exported=True)
    )
    assert 0 < early["record_count"] < whole["record_count"]
    with pytest.raises(AlreadyExported) as refused:
        await export(engine, ExportRequest(from_us=us(start), until_us=us(end)))
    assert f"batches {early['id']}, {whole['id']}" in str(refused.value) or (
        f"batches {whole['id']}, {early['id']}" in str(refused.value)
    )


async def test_an_empty_batch_is_not_made(engine: AsyncEngine) -> None:
    run = await run_id(engine)
    with pytest.raises(NothingToExport) as refused:
        await export(engine, ExportRequest(run_id=run, status="mismatched", protocols=("none",)))
    assert str(refused.value) == (
        f"there are no mismatched records of run {run} that pass the filters; no batch was made"
    )
    with pytest.raises(NothingToExport, match="no closed CDRs starting until 2000-01-01T00"):
        await export(engine, ExportRequest(until_us=us(datetime(2000, 1, 1, tzinfo=UTC))))
    assert await batch_ids(engine) == set()


async def test_an_unknown_run_or_an_empty_window_is_refused(engine: AsyncEngine) -> None:
    start, end = SCENARIO.window
    with pytest.raises(NotFoundError, match="no reconciliation run 99"):
        await export(engine, ExportRequest(run_id=99))
    with pytest.raises(InvalidInputError, match="the window is empty"):
        await export(engine, ExportRequest(from_us=us(end), until_us=us(start)))
    with pytest.raises(InvalidInputError, match="the window is empty"):
        await export(engine, ExportRequest(from_us=us(start), until_us=us(start)))
    assert await batch_ids(engine) == set()


async def test_the_idempotency_key_returns_the_same_batch(engine: AsyncEngine) -> None:
    run = await run_id(engine)
    first = await export(engine, ExportRequest(run_id=run), key="billing-2026-11")
    retried = await export(engine, ExportRequest(run_id=run), key="billing-2026-11")
    assert retried == first
    with pytest.raises(IdempotencyConflict):
        await export(engine, ExportRequest(run_id=run, min_duration=60), key="billing-2026-11")


async def test_window_exports_and_filters(engine: AsyncEngine) -> None:
    start, end = SCENARIO.window
    everything = await export(engine, ExportRequest(from_us=us(start), until_us=us(end)))
    closed = [c for c in SCENARIO.calls if c.kind not in ("mn_only", "open", "failed", "backplane")]
    assert everything["record_count"] == len(closed)
    sip_long = await export(
        engine,
        ExportRequest(
            from_us=us(start),
            until_us=us(end),
            protocols=("sip",),
            min_duration=600,
            include_exported=True,
        ),
    )
    objects = [
        json.loads(line)
        for line in (await download(engine, sip_long["id"], ExportFormat.JSONL)).splitlines()
    ]
    assert objects and all(o["protocol"] == "SIP" and o["duration"] >= 600 for o in objects)
    no_media = await export(
        engine,
        ExportRequest(from_us=us(start), until_us=us(end), has_media=False, include_exported=True),
    )
    api = [c for c in closed if c.protocol == "API"]
    assert no_media["record_count"] == len(api) > 0


async def test_an_export_needs_a_source(engine: AsyncEngine) -> None:
    with pytest.raises(InvalidInputError):
        await export(engine, ExportRequest())
