"""The messages whose call events are still to be derived: SQL of the deferred-work table.

The batch writer lists messages here (in the transaction that stores them) when it defers
deriving because the database is behind; the catch-up takes them in message order. On
PostgreSQL, where several receivers may catch up at once, a taken row is locked and the
others skip it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.models import pending_derivations
from app.db.sql import fetch_tuples, insert_sql, placeholder

# (message id, sending host, raw frame, offset of MSG in the frame)
StoredMessage = tuple[int, str | None, bytes, int]

_DELETE_CHUNK = 1000


async def defer(conn: AsyncConnection, message_ids: Sequence[int]) -> None:
    """List `message_ids` (stored in this transaction) for the catch-up."""
    if message_ids:
        sql = insert_sql("pending_derivations", ("message_id",), conn.dialect.paramstyle)
        await conn.exec_driver_sql(sql, [(i,) for i in message_ids])


async def take(conn: AsyncConnection, limit: int) -> list[StoredMessage]:
    """The oldest `limit` messages still to derive, with what deriving needs of each. On
    PostgreSQL their rows stay locked until the transaction ends."""
    lock = " FOR UPDATE OF p SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    if conn.dialect.name == "sqlite":
        # Take SQLite's write lock before reading: a transaction that read first cannot
        # write once another (a second catch-up, a receiver) has committed meanwhile, while
        # one that waits for the lock simply waits (busy_timeout).
        await conn.exec_driver_sql("DELETE FROM pending_derivations WHERE message_id < 0")
    rows = await fetch_tuples(
        conn,
        # The sending node as the writer names it: HOSTNAME, else the peer.
        "SELECT m.id, coalesce(m.hostname, m.peer_host), m.raw, m.msg_offset "
        "FROM pending_derivations p JOIN messages m ON m.id = p.message_id "
        f"ORDER BY p.message_id LIMIT {placeholder(conn.dialect.paramstyle, 1)}{lock}",
        (limit,),
    )
    return [(int(i), node, bytes(raw), int(offset)) for i, node, raw, offset in rows]


async def done(conn: AsyncConnection, message_ids: Sequence[int]) -> None:
    """Strike `message_ids` off the list."""
    column = pending_derivations.c.message_id
    for start in range(0, len(message_ids), _DELETE_CHUNK):
        chunk = list(message_ids[start : start + _DELETE_CHUNK])
        await conn.execute(delete(pending_derivations).where(column.in_(chunk)))


async def count(conn: AsyncConnection) -> int:
    """Messages still to derive."""
    query = select(func.count()).select_from(pending_derivations)
    return int((await conn.execute(query)).scalar_one())


async def clear(conn: AsyncConnection) -> None:
    """Forget the whole list: a rebuild derives every message anyway."""
    await conn.execute(delete(pending_derivations))
