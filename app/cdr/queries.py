"""Read queries on CDRs, their events and conferences: pages, one leg, the raw messages
behind it, instances."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.paging import cut_page, decode_cursor

from .conferences import ConferenceInstance, group_instances
from .repository import CdrRepository


async def page_cdrs(
    conn: AsyncConnection,
    *,
    limit: int,
    cursor: str | None,
    from_us: int | None = None,
    until_us: int | None = None,
    conference: str | None = None,
    protocol: str | None = None,
    state: str | None = None,
    alias: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of CDRs and the cursor of the next page (None on the last)."""
    rows = await CdrRepository.for_connection(conn).page_legs(
        conn,
        limit=limit + 1,
        after=decode_cursor(cursor, int, str) if cursor else None,
        from_us=from_us,
        until_us=until_us,
        conference=conference,
        protocol=protocol,
        state=state,
        alias=alias,
    )
    return cut_page(rows, limit, lambda row: (row["first_seen_us"], row["id"]))


async def get_cdr(
    conn: AsyncConnection, participant_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """One CDR with its events, or None."""
    repository = CdrRepository.for_connection(conn)
    leg = await repository.get_leg(conn, participant_id)
    if leg is None:
        return None
    return leg, await repository.events_of_leg(conn, participant_id)


async def received_messages(conn: AsyncConnection, message_ids: list[int]) -> list[dict[str, Any]]:
    """The raw syslog messages behind a CDR's events (their `message_ids`), as received."""
    return await CdrRepository.for_connection(conn).received_messages(conn, message_ids)


async def list_conferences(
    conn: AsyncConnection, from_us: int | None, until_us: int | None
) -> list[ConferenceInstance]:
    """Conference instances whose first leg started in the window."""
    legs = await CdrRepository.for_connection(conn).legs_between(conn, from_us, until_us)
    return group_instances(legs)
