"""The messages whose call events are still to be derived: SQL of the deferred-work table.

The batch writer lists messages here (in the transaction that stores them) when it defers
deriving because the database is behind, as runs of consecutive message ids: a batch's ids
are one run on SQLite and nearly always on PostgreSQL, so a batch costs one row, not one
per message. The catch-up takes the oldest run. On PostgreSQL, where several receivers may
catch up at once, a taken run is locked and the others skip it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.models import pending_derivations
from app.db.sql import fetch_tuples, insert_sql, placeholder

# (message id, sending host, raw frame, offset of MSG in the frame)
StoredMessage = tuple[int, str | None, bytes, int]


def runs(message_ids: Sequence[int]) -> list[tuple[int, int]]:
    """`message_ids` (ascending) as (first, last) runs of consecutive ids."""
    found: list[tuple[int, int]] = []
    for message_id in message_ids:
        if found and found[-1][1] + 1 == message_id:
            found[-1] = (found[-1][0], message_id)
        else:
            found.append((message_id, message_id))
    return found


async def defer(conn: AsyncConnection, message_ids: Sequence[int]) -> None:
    """List `message_ids` (stored in this transaction, ascending) for the catch-up."""
    if message_ids:
        sql = insert_sql("pending_derivations", ("first_id", "last_id"), conn.dialect.paramstyle)
        await conn.exec_driver_sql(sql, runs(message_ids))


async def take(conn: AsyncConnection) -> tuple[int, list[StoredMessage]]:
    """The oldest listed run (its first id, or 0 if none is left) and its messages, with
    what deriving needs of each. On PostgreSQL the run stays locked until the transaction
    ends."""
    style = conn.dialect.paramstyle
    if conn.dialect.name == "sqlite":
        # Take SQLite's write lock before reading: a transaction that read first cannot
        # write once another (a second catch-up, a receiver) has committed meanwhile, while
        # one that waits for the lock simply waits (busy_timeout).
        await conn.exec_driver_sql("DELETE FROM pending_derivations WHERE first_id < 0")
        lock = ""
    else:
        lock = " FOR UPDATE SKIP LOCKED"
    listed = await fetch_tuples(
        conn,
        f"SELECT first_id, last_id FROM pending_derivations ORDER BY first_id LIMIT 1{lock}",
        (),
    )
    if not listed:
        return 0, []
    first, last = (int(i) for i in listed[0])
    rows = await fetch_tuples(
        conn,
        # The sending node as the writer names it: HOSTNAME, else the peer.
        "SELECT id, coalesce(hostname, peer_host), raw, msg_offset FROM messages "
        f"WHERE id BETWEEN {placeholder(style, 1)} AND {placeholder(style, 2)} ORDER BY id",
        (first, last),
    )
    return first, [(int(i), node, bytes(raw), int(offset)) for i, node, raw, offset in rows]


async def done(conn: AsyncConnection, first_id: int) -> None:
    """Strike the run starting at `first_id` off the list."""
    await conn.execute(
        delete(pending_derivations).where(pending_derivations.c.first_id == first_id)
    )


async def count(conn: AsyncConnection) -> int:
    """Messages still to derive."""
    table = pending_derivations.c
    query = select(func.coalesce(func.sum(table.last_id - table.first_id + 1), 0))
    return int((await conn.execute(query)).scalar_one())


async def clear(conn: AsyncConnection) -> None:
    """Forget the whole list: a rebuild derives every message anyway."""
    await conn.execute(delete(pending_derivations))
