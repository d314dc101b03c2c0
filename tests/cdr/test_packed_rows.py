"""Raw messages are stored packed; every reader sees the bytes received, and rows stored plain
(as an older cdrecon wrote them, or a frame packing would not shrink) read the same."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr import deriving, queries
from app.db.models import messages
from app.db.packing import CURRENT, PLAIN, unpack
from tests.cdr.scenario import CALL_EVENTS, EXPECTED, LINES
from tests.cdr.stored import legs


async def what_readers_see(engine: AsyncEngine) -> dict[str, Any]:
    """Every CDR as the API and the console read it: the leg, its events (with the keys
    parsed again from the raw messages), and the raw lines behind it."""
    seen: dict[str, Any] = {}
    async with engine.connect() as conn:
        rows, _ = await queries.page_cdrs(conn, limit=100, cursor=None)
        for row in rows:
            found = await queries.get_cdr(conn, row["id"])
            assert found is not None
            leg, leg_events = found
            ids = [i for event in leg_events for i in event["message_ids"]]
            received = await queries.received_messages(conn, ids)
            events = [{k: v for k, v in e.items() if k != "id"} for e in leg_events]
            seen[row["id"]] = (leg, events, [(r["id"], bytes(r["raw"])) for r in received])
    return seen


async def stored_rows(engine: AsyncEngine) -> list[tuple[int, bytes, int]]:
    async with engine.connect() as conn:
        query = select(messages.c.id, messages.c.raw, messages.c.packed).order_by(messages.c.id)
        return [(int(i), bytes(raw), int(packed)) for i, raw, packed in await conn.execute(query)]


async def test_rows_are_packed_and_every_reader_sees_the_frames_received(
    ingested: AsyncEngine,
) -> None:
    rows = await stored_rows(ingested)
    assert [packed for _, _, packed in rows] == [CURRENT] * len(LINES)
    frames = [line.rfc5424() for line in LINES]
    # (in id order: on PostgreSQL, a day's lines with no call event come first)
    assert sorted(unpack(raw, packed) for _, raw, packed in rows) == sorted(frames)
    assert sum(len(raw) for _, raw, _ in rows) < sum(len(f) for f in frames) / 2
    seen = await what_readers_see(ingested)
    lines = {raw for _, _, received in seen.values() for _, raw in received}
    assert lines and lines <= set(frames)


async def test_plain_rows_read_and_rebuild_as_packed_ones_do(ingested: AsyncEngine) -> None:
    packed_view = await what_readers_see(ingested)
    async with ingested.begin() as conn:
        for message_id, raw, packed in await stored_rows(ingested):
            await conn.execute(
                update(messages)
                .where(messages.c.id == message_id)
                .values(raw=unpack(raw, packed), packed=PLAIN)
            )
    assert await what_readers_see(ingested) == packed_view
    derived = await deriving.rebuild(ingested, chunk=3)
    assert derived.events == CALL_EVENTS
    assert await legs(ingested) == EXPECTED
    assert await what_readers_see(ingested) == packed_view
