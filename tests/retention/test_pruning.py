"""Retention on real databases filled through the batch writer with old receive times: a
pass keeps what billing still needs (unexported lost records, their events, messages and
run) and takes the rest; a dry run changes nothing; SQLite gives the space back."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import counts, partitions
from app.db.engine import create_engine
from app.db.models import metadata
from app.export.service import ExportRequest, create_export
from app.history.coverage import Kind, import_export
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from app.reconcile.service import reconcile
from app.retention.policy import DAY_US, Policy
from app.retention.service import Resume, make_partitions, prune
from parsers.framing import Frame
from tests.conftest import cdrecon
from tests.reconcile.generator import generate
from tests.reconcile.loading import us

SCENARIO = generate(seed=7, days=1, calls_per_day=60)
START, END = SCENARIO.window
SUPPORT_LINES = 300
POLICY = Policy(messages_days=14, billing_days=400, batch_rows=50)  # small: many batches


def _support(n: int) -> Frame:
    """A support-log line that carries no call event."""
    return Frame(f"<134>1 {START.isoformat()} conf-lon-1 kernel - - - eth0 link check {n}".encode())


async def _ingest(engine: AsyncEngine, frames: list[Frame], received_us: int) -> None:
    writer = BatchWriter(engine, Metrics(), batch_size=200, linger=0)
    writer.start()
    writer.submit(Origin("tcp", "10.0.0.1", 1), frames, received_us)
    await writer.stop()


@dataclass
class Loaded:
    engine: AsyncEngine
    run_id: int
    exported: set[str]  # lost records a batch holds
    unexported: set[str]  # lost records no batch holds: billing still needs them


@pytest.fixture
async def loaded(database_url: str) -> AsyncIterator[Loaded]:
    """The scenario's calls received when they happened, support lines received at its
    start, its MN history, a run, and a batch of some of the run's lost records."""
    engine = create_engine(database_url)
    try:
        # PostgreSQL: the scenario's day in partitions of its own, as serve makes them.
        await make_partitions(engine, us(START))
        calls = [
            Frame(f"<134>1 {at.isoformat()} {node} pexip - - - {body}".encode())
            for node, at, body in SCENARIO.lines
        ]
        await _ingest(engine, calls, us(START))
        await _ingest(engine, [_support(n) for n in range(SUPPORT_LINES)], us(START))
        # A failed attempt as the MN keeps it: no start, no end (pruned by its import time).
        attempt = {**SCENARIO.mn_records[0], "id": "attempt-1", "start_time": None}
        attempt["end_time"] = attempt["duration"] = None
        async with engine.begin() as conn:
            await import_export(
                conn,
                json.dumps([*SCENARIO.mn_records, attempt]),
                "mn.json",
                Kind.FILE,
                as_of_us=us(SCENARIO.as_of),
            )
        summary = await reconcile(engine, us(START), us(END), created_by="test")
        lost = set(SCENARIO.lost)
        assert summary["counts"]["missing_in_mn"] == len(lost) > 2
        async with engine.connect() as conn:
            conferences = (
                await conn.execute(
                    text("SELECT id, conference_name FROM cdrs ORDER BY start_us"), {}
                )
            ).all()
        conference = next(name for cdr_id, name in conferences if cdr_id in lost)
        request = ExportRequest(run_id=int(summary["id"]), conference=conference)
        async with engine.begin() as conn:
            manifest, _ = await create_export(conn, engine, request, "test")
        exported = {cdr_id for cdr_id, name in conferences if cdr_id in lost and name == conference}
        assert manifest["record_count"] == len(exported) and lost - exported
        yield Loaded(engine, int(summary["id"]), exported, lost - exported)
    finally:
        await engine.dispose()


async def _rows(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            table.name: int((await conn.execute(select(func.count()).select_from(table))).scalar())
            for table in metadata.sorted_tables
            if table.name != "row_counts"
        }


async def _evidence(engine: AsyncEngine, cdr_ids: set[str]) -> tuple[set[int], int]:
    """The raw messages behind the CDRs `cdr_ids` (their events' first and further
    messages), and how many events they have."""
    async with engine.connect() as conn:
        listed: set[int] = set()
        for cdr_id in cdr_ids:
            row = (
                await conn.execute(
                    text("SELECT message_ids FROM cdrs WHERE id = :i"), {"i": cdr_id}
                )
            ).scalar_one()
            listed.update(int(i) for i in row.split(","))
        event_rows = (
            await conn.execute(
                text(
                    "SELECT digest, participant_id FROM events WHERE message_id IN :ids"
                ).bindparams(_expanding("ids")),
                {"ids": sorted(listed)},
            )
        ).all()
        assert {pid for _, pid in event_rows} == cdr_ids
        further = (
            await conn.execute(
                text("SELECT message_id FROM event_messages WHERE digest IN :d").bindparams(
                    _expanding("d")
                ),
                {"d": [digest for digest, _ in event_rows]},
            )
        ).scalars()
        return listed | {int(i) for i in further}, len(event_rows)


def _expanding(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)


async def _true_counts(engine: AsyncEngine) -> None:
    """The maintained row counts still match the tables."""
    async with engine.connect() as conn:
        kept = await counts.read(conn)
    rows = await _rows(engine)
    assert kept == {table: rows[table] for table in counts.COUNTED}


async def test_past_the_billing_horizon_only_unexported_lost_records_and_their_evidence_stay(
    loaded: Loaded,
) -> None:
    engine = loaded.engine
    # Past the billing horizon of everything: the calls, and the run and batch made today.
    later = time.time_ns() // 1000 + 401 * DAY_US
    before = await _rows(engine)
    wanted_messages, wanted_events = await _evidence(engine, loaded.unexported)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA auto_vacuum")).scalar() == 2  # incremental
            pages_before = (await conn.exec_driver_sql("PRAGMA page_count")).scalar()

    # SQLite deletes every message but the evidence; PostgreSQL drops the day's partition
    # of support lines and keeps the one holding the evidence whole.
    kept_messages = len(wanted_messages)
    if not sqlite:
        held = partitions.Partition(partitions.day_of(us(START)), calls=True)
        async with engine.connect() as conn:
            kept_messages = await partitions.rows_in(conn, held)
        assert kept_messages + SUPPORT_LINES == before["messages"]

    dry = await prune(engine, POLICY, now_us=later, dry_run=True, rest=False)
    assert await _rows(engine) == before
    assert dry.tally.rows["cdrs"] == before["cdrs"] - len(loaded.unexported)
    assert dry.tally.rows["messages"] == before["messages"] - kept_messages
    if not sqlite:
        support = partitions.Partition(held.day, calls=False)
        # (and the empty ones made ahead of it)
        assert {name: n for name, n in dry.tally.partitions.items() if n} == {
            support.name: SUPPORT_LINES
        }
        assert held.name not in dry.tally.partitions

    done = await prune(engine, POLICY, now_us=later, rest=False)
    assert done.tally.rows == dry.tally.rows
    assert done.tally.partitions == dry.tally.partitions
    after = await _rows(engine)
    assert after["cdrs"] == len(loaded.unexported)
    assert after["events"] == wanted_events
    assert after["messages"] == kept_messages
    assert await _evidence(engine, loaded.unexported) == (wanted_messages, wanted_events)
    assert after["reconciliations"] == 1  # the run that exports them
    for table in ("mn_participants", "mn_conferences", "exports", "export_records", "audit_log"):
        assert after[table] == 0, table
    await _true_counts(engine)

    # Billing can still have them: the run's lost records not yet exported, and no others.
    async with engine.begin() as conn:
        manifest, _ = await create_export(
            conn, engine, ExportRequest(run_id=loaded.run_id), "billing"
        )
    assert manifest["record_count"] == len(loaded.unexported)

    if sqlite:
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA freelist_count")).scalar() == 0
            assert (await conn.exec_driver_sql("PRAGMA page_count")).scalar() < pages_before
        assert done.pages_returned > 0


async def test_past_the_message_horizon_only_raw_messages_without_a_call_event_go(
    loaded: Loaded, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = loaded.engine
    if engine.dialect.name != "sqlite":
        pytest.skip("row by row on SQLite; PostgreSQL drops partitions (test_partitions.py)")
    now_us = time.time_ns() // 1000
    # Support lines of today stay; of three weeks ago go, but for those still to be derived.
    await _ingest(engine, [_support(n) for n in range(10)], now_us)
    old_us = now_us - 21 * DAY_US
    await _ingest(engine, [_support(n) for n in range(40)], old_us)
    async with engine.begin() as conn:
        waiting = (await conn.execute(text("SELECT max(id) - 4, max(id) FROM messages"))).one()
        await conn.execute(
            text("INSERT INTO pending_derivations (first_id, last_id) VALUES (:f, :l)"),
            {"f": waiting[0], "l": waiting[1]},
        )
    before = await _rows(engine)
    support_received_at_start = SUPPORT_LINES  # the fixture's, received the scenario's day

    # The billing horizon kept forever: the scenario's calls must stay whatever today's date.
    monkeypatch.setenv("CDRECON_RETAIN_MESSAGES_DAYS", "14")
    monkeypatch.setenv("CDRECON_RETAIN_BILLING_DAYS", "0")
    dry = cdrecon(database_url, "prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    expected = support_received_at_start + 40 - 5
    assert dry.stdout.decode().splitlines() == [f"messages\t{expected}"]
    assert await _rows(engine) == before

    resume = Resume()
    done = await prune(engine, Policy(14, 0, batch_rows=64), rest=False, resume=resume)
    assert dict(done.tally.rows) == {"messages": expected}
    after = await _rows(engine)
    assert after == {**before, "messages": before["messages"] - expected}
    waiting_sql = text("SELECT count(*) FROM messages WHERE id BETWEEN :f AND :l")
    async with engine.connect() as conn:
        kept = (await conn.execute(waiting_sql, {"f": waiting[0], "l": waiting[1]})).scalar()
        first_young = (
            await conn.execute(
                text("SELECT min(id) FROM messages WHERE received_us >= :t"), {"t": now_us}
            )
        ).scalar()
    assert kept == 5
    await _true_counts(engine)
    # The next pass starts after what this one settled: up to the first message it could not
    # decide for good (today's, sent before the old ones), which it must look at again.
    assert resume.messages == first_young - 1 < waiting[0]

    # Three more old lines; the writer, stopping, derives the five waiting ones (no call
    # event in them): all eight go.
    await _ingest(engine, [_support(n) for n in range(3)], old_us)
    again = await prune(engine, Policy(14, 0, batch_rows=64), rest=False, resume=resume)
    assert dict(again.tally.rows) == {"messages": 8}
    async with engine.connect() as conn:
        kept = (await conn.execute(waiting_sql, {"f": waiting[0], "l": waiting[1]})).scalar()
    assert kept == 0
    await _true_counts(engine)
