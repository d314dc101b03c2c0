"""Events and CDRs derived by the batch writer in real databases: exact, once, any order."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr import deriving
from app.db.engine import create_engine
from app.db.models import event_messages, events
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from parsers.framing import Frame
from tests.cdr.scenario import CALL_EVENTS, EXPECTED, LINES
from tests.cdr.stored import count, legs


async def ingest(engine: AsyncEngine, frames: list[bytes], origin: Origin, batch: int) -> None:
    writer = BatchWriter(engine, Metrics(), batch_size=batch, linger=0)
    writer.start()
    for start in range(0, len(frames), batch):
        writer.submit(origin, [Frame(f) for f in frames[start : start + batch]])
        await writer.wait_for_room()
    await writer.stop()


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_cdrs_are_exact_whatever_the_order_and_batching(
    engine: AsyncEngine, seed: int
) -> None:
    frames = [line.rfc5424() for line in LINES]
    random.Random(seed).shuffle(frames)
    await ingest(engine, frames, Origin("tcp", "10.0.1.11", 5000), batch=seed + 2)
    assert await legs(engine) == EXPECTED
    assert await count(engine, events) == CALL_EVENTS


async def test_the_same_lines_again_add_links_not_events(engine: AsyncEngine) -> None:
    frames = [line.rfc5424() for line in LINES]
    await ingest(engine, frames, Origin("tcp", "10.0.1.11", 5000), batch=5)
    # The same bodies again, backfilled from a file in another header format.
    file_lines = [line.rsyslog().encode() for line in LINES]
    await ingest(engine, file_lines, Origin("file", source="/var/log/pexip.log"), batch=4)
    assert await count(engine, events) == CALL_EVENTS
    # Each event keeps its first message; the link table lists the second one.
    assert await count(engine, event_messages) == CALL_EVENTS
    assert await legs(engine) == EXPECTED


async def test_rebuild_recreates_the_same_cdrs(engine: AsyncEngine) -> None:
    await ingest(engine, [line.rfc5424() for line in LINES], Origin("tcp", "h", 1), batch=100)
    before = await legs(engine)
    derived = await deriving.rebuild(engine, chunk=3)
    assert derived.events == CALL_EVENTS
    assert await legs(engine) == before == EXPECTED


async def test_two_receivers_on_one_database_assemble_each_leg_from_all_events(
    database_url: str,
) -> None:
    """Scale-out: the joins reach one receiver and the disconnects another, at once."""
    count = 60
    joins, leaves = [], []
    for index in range(count):
        fields = f'Conference="c" Participant-id="leg-{index:03d}" Protocol="SIP"'
        joins.append(
            f"<134>1 2026-11-26T10:00:00Z a pexip - - - 2026-11-26 10:00:00,000 "
            f'Level="INFO" Name="administrator.conference" Message="Participant has joined." '
            f"{fields}".encode()
        )
        leaves.append(
            f"<134>1 2026-11-26T10:05:00Z b pexip - - - 2026-11-26 10:05:00,000 "
            f'Level="INFO" Name="administrator.conference" '
            f'Message="Participant has disconnected." {fields}'.encode()
        )
    engines = [create_engine(database_url), create_engine(database_url)]
    try:
        await asyncio.gather(
            ingest(engines[0], joins, Origin("tcp", "a", 1), batch=5),
            ingest(engines[1], leaves, Origin("tcp", "b", 1), batch=5),
        )
        states = await legs(engines[0])
    finally:
        for engine in engines:
            await engine.dispose()
    assert {state for state, *_ in states.values()} == {"closed"}
    assert len(states) == count


def pexip_line(host: str, clock: str, message: str, pid: str) -> bytes:
    return (
        f"<134>1 2026-11-26T{clock}Z {host} pexip - - - 2026-11-26 {clock},000 "
        f'Level="INFO" Name="administrator.conference" Message="{message}" '
        f'Conference="c" Participant-id="{pid}" Protocol="SIP"'
    ).encode()


async def test_a_writer_sees_events_another_writer_stored_since_it_last_saw_the_leg(
    engine: AsyncEngine,
) -> None:
    """The writer remembers the legs it assembled; a leg that another writer (a second
    receiver, an import-syslog alongside) has added to since must be read again."""
    live = BatchWriter(engine, Metrics(), linger=0)
    live.start()
    try:
        live.submit(
            Origin("tcp", "a", 1),
            [Frame(pexip_line("a", "10:00:00", "Participant has joined.", "leg"))],
        )
        await live.drained()  # committed, and the leg remembered
        await ingest(
            engine,
            [pexip_line("b", "10:05:00", "Participant has disconnected.", "leg")],
            Origin("file", source="/var/log/b.log"),
            batch=1,
        )
        # A late line of the same leg reaches the first writer again.
        attempt = pexip_line("a", "09:59:59", "Participant attempting to join conference.", "leg")
        live.submit(Origin("tcp", "a", 1), [Frame(attempt)])
    finally:
        await live.stop()
    state, duration, *_ = (await legs(engine))["leg"]
    assert (state, duration) == ("closed", 300)
    assert await count(engine, events) == 3


def test_events_found_in_chunks_keep_their_positions_in_the_batch() -> None:
    """A batch takes each chunk's events, less the lines stored before; what did not parse
    is counted at its place among the messages kept."""
    first = deriving.FoundEvents([None, None, None], [1])
    second = deriving.FoundEvents([None, None, None, None], [0, 3])
    batch = deriving.FoundEvents.none(0)
    batch.add(first)
    batch.add(second, keep=[1, 3])
    assert len(batch.events) == 5
    assert batch.unparsed == [1, 4]
