"""Events and CDRs derived by the batch writer in real databases: exact, once, any order."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr import service
from app.db.engine import create_engine
from app.db.models import event_messages, events
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from parsers.framing import Frame
from tests.cdr.scenario import CALL_EVENTS, EXPECTED, LINES
from tests.cdr.stored import count, legs


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


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
    derived = await service.rebuild(engine, chunk=3)
    assert derived.events == CALL_EVENTS
    assert await legs(engine) == before == EXPECTED


async def test_a_leg_can_be_read_with_its_events_and_raw_messages(engine: AsyncEngine) -> None:
    await ingest(engine, [line.rfc5424() for line in LINES], Origin("tcp", "h", 1), batch=100)
    async with engine.connect() as conn:
        found = await service.get_cdr(conn, "p-carol")
    assert found is not None
    leg, leg_events = found
    assert leg["conference_name"] == "Weekly sync"
    assert leg["vendor"] == 'Polycom "HDX"'
    assert [e["message"] for e in leg_events] == [
        "Participant has joined.",
        "Participant has disconnected.",
    ]
    assert all(len(e["message_ids"]) == 1 for e in leg_events)
    # The keys are parsed again from the raw message the event came in.
    assert leg_events[0]["fields"]["participant-id"] == "p-carol"
    assert leg_events[0]["fields"]["vendor"] == 'Polycom "HDX"'


async def test_cdr_pages_follow_a_stable_cursor(engine: AsyncEngine) -> None:
    await ingest(engine, [line.rfc5424() for line in LINES], Origin("tcp", "h", 1), batch=100)
    seen: list[str] = []
    cursor = None
    async with engine.connect() as conn:
        while True:
            rows, cursor = await service.page_cdrs(conn, limit=2, cursor=cursor)
            seen += [row["id"] for row in rows]
            if cursor is None:
                break
        everything, _ = await service.page_cdrs(conn, limit=100, cursor=None)
        closed, _ = await service.page_cdrs(conn, limit=100, cursor=None, state="closed")
    assert seen == [row["id"] for row in everything]
    assert len(seen) == len(EXPECTED)
    assert {row["id"] for row in closed} == {k for k, v in EXPECTED.items() if v[0] == "closed"}


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
