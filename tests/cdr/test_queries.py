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
    # The event row keeps its time and leg; the rest comes from its raw message.
    assert [(e["node"], e["level"], e["name"], e["truncated"]) for e in leg_events] == [
        ("conf-b", "INFO", "administrator.conference", False)
    ] * 2
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


async def test_cdrs_are_found_by_part_of_an_alias_in_any_case(ingested: AsyncEngine) -> None:
    async def ids(alias: str) -> set[str]:
        async with ingested.connect() as conn:
            rows, _ = await queries.page_cdrs(conn, limit=100, cursor=None, alias=alias)
        return {row["id"] for row in rows}

    assert await ids("ALICE@example") == {"p-alice"}  # the remote alias
    assert await ids("meet.weekly") == {"p-eve"}  # the local alias
    assert await ids("%") == set()  # a LIKE wildcard is looked for as itself
    assert await ids("_") == set()


async def test_the_raw_messages_behind_a_leg_come_with_how_they_arrived(
    ingested: AsyncEngine,
) -> None:
    async with ingested.connect() as conn:
        found = await queries.get_cdr(conn, "p-carol")
        assert found is not None
        ids = [i for event in found[1] for i in event["message_ids"]]
        received = await queries.received_messages(conn, ids)
    assert [row["id"] for row in received] == sorted(ids)
    assert all(row["transport"] == "tcp" and row["peer_host"] == "h" for row in received)
    assert all(row["hostname"] == "conf-b" for row in received)
    assert all(b'Participant-id="p-carol"' in bytes(row["raw"]) for row in received)
