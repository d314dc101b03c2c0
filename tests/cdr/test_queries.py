"""Read queries on CDRs over real databases: one leg with its events, stable pages."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr import queries
from tests.cdr.scenario import EXPECTED


async def test_a_leg_can_be_read_with_its_events_and_raw_messages(ingested: AsyncEngine) -> None:
    async with ingested.connect() as conn:
        found = await queries.get_cdr(conn, "p-carol")
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


async def test_cdr_pages_follow_a_stable_cursor(ingested: AsyncEngine) -> None:
    seen: list[str] = []
    cursor = None
    async with ingested.connect() as conn:
        while True:
            rows, cursor = await queries.page_cdrs(conn, limit=2, cursor=cursor)
            seen += [row["id"] for row in rows]
            if cursor is None:
                break
        everything, _ = await queries.page_cdrs(conn, limit=100, cursor=None)
        closed, _ = await queries.page_cdrs(conn, limit=100, cursor=None, state="closed")
    assert seen == [row["id"] for row in everything]
    assert len(seen) == len(EXPECTED)
    assert {row["id"] for row in closed} == {k for k, v in EXPECTED.items() if v[0] == "closed"}
