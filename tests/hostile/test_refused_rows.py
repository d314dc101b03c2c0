"""Rows the database refuses, for a reason nobody foresaw (here a constraint the test adds):
they cost only themselves, on SQLite and PostgreSQL (issue 12)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr import deriving
from app.db.models import messages
from app.db.packing import pack, unpack
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
POISONED = [line.rfc5424() for line in POISON]
SCENARIO = [line.rfc5424() for line in LINES]
# Every batch is deferred (the queue always holds more than -1 messages), or none is.
ALWAYS, NEVER = -1, None


async def write(
    engine: AsyncEngine,
    metrics: Metrics,
    middle: list[bytes],
    *,
    defer_backlog: int | None = NEVER,
    quarantine: Path | None = None,
) -> None:
    """The scenario with `middle` after its third line, one batch, through the real writer."""
    frames = [Frame(f) for f in [*SCENARIO[:3], *middle, *SCENARIO[3:]]]
    writer = BatchWriter(
        engine,
        metrics,
        batch_size=100,
        linger=0,
        defer_backlog=defer_backlog,
        quarantine_path=quarantine,
    )
    writer.start()
    writer.submit(ORIGIN, frames)
    await writer.stop()


@pytest.mark.parametrize(
    ("table", "refused"),
    [("cdrs", "{row}display_name = 'poison'"), ("events", "{row}participant_id = 'p-poison'")],
    ids=["leg", "event"],
)
async def test_a_leg_or_event_the_database_refuses_costs_only_its_own_lines(
    engine: AsyncEngine, refuse: Refuse, table: str, refused: str
) -> None:
    await refuse(table, refused)
    metrics = Metrics()
    await write(engine, metrics, POISONED)
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
    await write(engine, metrics, POISONED, defer_backlog=ALWAYS)
    assert await legs(engine) == EXPECTED
    assert metrics.registry.get_sample_value("cdrecon_derive_errors_total") == len(POISON)


async def test_rebuild_skips_and_reports_a_refused_leg(engine: AsyncEngine, refuse: Refuse) -> None:
    await write(engine, Metrics(), POISONED)
    await refuse("cdrs", "{row}display_name = 'poison'")
    derived = await deriving.rebuild(engine, chunk=4)
    assert derived.failed == len(POISON)
    assert derived.events == CALL_EVENTS
    assert await legs(engine) == EXPECTED


def frame_sql_is(engine: AsyncEngine, frame: bytes) -> str:
    """SQL true for a `messages` row that stores `frame` (packed as the writer packs it):
    the same row whether the frame is stored parsed or raw."""
    stored, _ = pack(frame)
    if engine.dialect.name == "sqlite":
        return f"{{row}}raw = X'{stored.hex()}'"
    return f"{{row}}raw = '\\x{stored.hex()}'::bytea"


async def test_a_message_the_database_refuses_parsed_is_stored_raw_with_the_reason(
    engine: AsyncEngine, refuse: Refuse, tmp_path: Path
) -> None:
    await refuse("messages", "{row}hostname = 'poison'")
    hostile = b"<134>1 2026-11-26T10:00:00Z poison app - - - hello"
    metrics = Metrics()
    await write(engine, metrics, [hostile], quarantine=tmp_path / "quarantine.jsonl")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(messages.c.raw, messages.c.packed, messages.c.format, messages.c.error)
            )
        ).all()
    assert len(rows) == len(LINES) + 1
    refused = [row[1:] for row in rows if unpack(bytes(row[0]), row[1]) == hostile]
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
    hostile = b"<134>1 2026-11-26T10:00:00Z conf-a app - - - poison"
    await refuse("messages", frame_sql_is(engine, hostile))
    metrics = Metrics()
    quarantine = tmp_path / "quarantine.jsonl"
    await write(engine, metrics, [hostile], quarantine=quarantine)
    async with engine.connect() as conn:
        raws = {
            unpack(bytes(raw), packed)
            for raw, packed in await conn.execute(select(messages.c.raw, messages.c.packed))
        }
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
