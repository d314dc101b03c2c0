"""Rows the database refuses, for a reason nobody foresaw (here a constraint the test adds):
they cost only themselves, on SQLite and PostgreSQL (issue 12)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr import deriving
from app.db.models import messages
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from parsers.framing import Frame
from tests.cdr.scenario import CALL_EVENTS, EXPECTED, JOIN, LEAVE, LINES, Line, admin
from tests.cdr.stored import legs
from tests.hostile.conftest import Refuse

ORIGIN = Origin("tcp", "10.0.1.11", 5000)
# A leg the database refuses to store: its join and its disconnect.
POISON = [
    Line("conf-a", "10:00:30,000", admin(JOIN, "p-poison", 'Participant="poison"')),
    Line("conf-a", "10:09:30,000", admin(LEAVE, "p-poison", 'Participant="poison"')),
]
# Every batch is deferred (the queue always holds more than -1 messages), or none is.
ALWAYS, NEVER = -1, None


async def write(engine: AsyncEngine, metrics: Metrics, defer_backlog: int | None) -> None:
    """The scenario with the poison leg in the middle, one batch, through the real writer."""
    frames = [Frame(line.rfc5424()) for line in LINES[:3] + POISON + LINES[3:]]
    writer = BatchWriter(engine, metrics, batch_size=100, linger=0, defer_backlog=defer_backlog)
    writer.start()
    writer.submit(ORIGIN, frames)
    await writer.stop()


async def test_a_leg_the_database_refuses_costs_only_its_own_lines(
    engine: AsyncEngine, refuse: Refuse
) -> None:
    await refuse("cdrs", "{row}display_name = 'poison'")
    metrics = Metrics()
    await write(engine, metrics, NEVER)
    assert await legs(engine) == EXPECTED
    assert metrics.registry.get_sample_value("cdrecon_events_total") == CALL_EVENTS
    assert metrics.registry.get_sample_value("cdrecon_derive_errors_total") == len(POISON)
    assert metrics.registry.get_sample_value(
        "cdrecon_messages_stored_total", {"transport": "tcp"}
    ) == (len(LINES) + len(POISON))


async def test_deferred_deriving_isolates_a_refused_leg_too(
    engine: AsyncEngine, refuse: Refuse
) -> None:
    await refuse("cdrs", "{row}display_name = 'poison'")
    metrics = Metrics()
    await write(engine, metrics, ALWAYS)
    assert await legs(engine) == EXPECTED
    assert metrics.registry.get_sample_value("cdrecon_derive_errors_total") == len(POISON)


async def test_rebuild_skips_and_reports_a_refused_leg(engine: AsyncEngine, refuse: Refuse) -> None:
    await write(engine, Metrics(), NEVER)
    await refuse("cdrs", "{row}display_name = 'poison'")
    derived = await deriving.rebuild(engine, chunk=4)
    assert derived.failed == len(POISON)
    assert derived.events == CALL_EVENTS
    assert await legs(engine) == EXPECTED


async def test_an_event_the_database_refuses_costs_only_its_line(
    engine: AsyncEngine, refuse: Refuse
) -> None:
    await refuse("events", "{row}participant_id = 'p-poison'")
    metrics = Metrics()
    await write(engine, metrics, NEVER)
    assert await legs(engine) == EXPECTED
    assert metrics.registry.get_sample_value("cdrecon_derive_errors_total") == len(POISON)


def frame_sql_contains(engine: AsyncEngine, needle: str) -> str:
    """SQL true for a `messages` row whose raw frame contains `needle`."""
    if engine.dialect.name == "sqlite":
        return f"instr({{row}}raw, CAST('{needle}' AS BLOB)) > 0"
    return f"position(convert_to('{needle}', 'UTF8') in {{row}}raw) > 0"


async def write_around(
    engine: AsyncEngine, metrics: Metrics, hostile: bytes, quarantine: Path
) -> None:
    """The scenario with `hostile` in the middle of its one batch, through the real writer."""
    frames = [Frame(line.rfc5424()) for line in LINES]
    frames.insert(5, Frame(hostile))
    writer = BatchWriter(engine, metrics, batch_size=100, linger=0, quarantine_path=quarantine)
    writer.start()
    writer.submit(ORIGIN, frames)
    await writer.stop()


async def test_a_message_the_database_refuses_parsed_is_stored_raw_with_the_reason(
    engine: AsyncEngine, refuse: Refuse, tmp_path: Path
) -> None:
    await refuse("messages", "{row}app_name = 'poison'")
    hostile = b"<134>1 2026-11-26T10:00:00Z conf-a poison - - - hello"
    metrics = Metrics()
    await write_around(engine, metrics, hostile, tmp_path / "quarantine.jsonl")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(messages.c.raw, messages.c.format, messages.c.error))
        ).all()
    assert len(rows) == len(LINES) + 1
    refused = [row for row in rows if bytes(row[0]) == hostile]
    assert [(row[1], str(row[2]).startswith("refused by the database: ")) for row in refused] == [
        ("raw", True)
    ]
    assert await legs(engine) == EXPECTED
    assert metrics.registry.get_sample_value("cdrecon_events_total") == CALL_EVENTS
    assert metrics.registry.get_sample_value("cdrecon_batch_errors_total") == 0
    assert not (tmp_path / "quarantine.jsonl").exists()


async def test_a_message_the_database_refuses_even_raw_is_quarantined_to_a_file(
    engine: AsyncEngine, refuse: Refuse, tmp_path: Path
) -> None:
    await refuse("messages", frame_sql_contains(engine, "poison"))
    hostile = b"<134>1 2026-11-26T10:00:00Z conf-a app - - - poison"
    metrics = Metrics()
    quarantine = tmp_path / "quarantine.jsonl"
    await write_around(engine, metrics, hostile, quarantine)
    async with engine.connect() as conn:
        raws = {bytes(raw) for (raw,) in await conn.execute(select(messages.c.raw))}
    assert raws == {line.rfc5424() for line in LINES}
    assert await legs(engine) == EXPECTED
    (entry,) = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert base64.b64decode(entry["raw"]) == hostile
    assert (entry["transport"], entry["peer_host"], entry["peer_port"]) == (
        "tcp",
        "10.0.1.11",
        5000,
    )
    assert entry["reason"]
    assert (
        metrics.registry.get_sample_value(
            "cdrecon_messages_quarantined_total", {"transport": "tcp"}
        )
        == 1
    )
