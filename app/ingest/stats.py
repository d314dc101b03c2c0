"""Ingest figures: totals of the raw store and the sending nodes, for /stats and the page."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from app.cdr import pending
from app.db import counts
from app.times import to_time

from .repository import MessageRepository
from .schemas import Node, Stats


async def get_stats(conn: AsyncConnection, queued: int) -> Stats:
    """Totals of the raw store and what was derived from it: maintained counts, so the cost
    does not grow with the store."""
    repository = MessageRepository.for_connection(conn)
    nodes = await repository.list_nodes(conn)
    rows = await counts.read(conn)
    return Stats(
        messages=rows["messages"],
        parse_failures=sum(int(n["parse_failures"]) for n in nodes),
        events=rows["events"],
        cdrs=rows["cdrs"],
        nodes=len(nodes),
        queued=queued,
        derive_pending=await pending.count(conn),
    )


async def list_nodes(conn: AsyncConnection) -> list[Node]:
    """Every sending host with first/last seen and counters, most recent first."""
    repository = MessageRepository.for_connection(conn)
    return [
        Node(
            host=row["host"],
            last_peer=row["last_peer"],
            last_transport=row["last_transport"],
            first_seen=to_time(row["first_seen_us"]),
            last_seen=to_time(row["last_seen_us"]),
            messages=row["messages"],
            parse_failures=row["parse_failures"],
        )
        for row in await repository.list_nodes(conn)
    ]


async def traffic_since(
    conn: AsyncConnection, since_us: int, step_us: int
) -> list[tuple[str, int, int]]:
    """(host, step, messages received) of every `step_us` from `since_us` on (step 0 starts
    at `since_us`), from the per-minute counts the writer keeps."""
    return await MessageRepository.for_connection(conn).node_steps_since(conn, since_us, step_us)
