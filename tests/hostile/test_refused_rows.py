"""Rows the database refuses, for a reason nobody foresaw (here a constraint the test adds):
they cost only themselves, on SQLite and PostgreSQL (issue 12)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr import deriving
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
