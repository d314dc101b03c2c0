"""The messages whose call events are still to be derived: SQL of the deferred-work table,
which only `deriving` writes.

A batch writer's deriver lists messages here (in the transaction that stores them) when it
defers deriving because the database is behind, as runs of consecutive message ids: a
batch's ids are one run on SQLite and nearly always on PostgreSQL, so a batch costs one
row, not one per message. The catch-up takes the oldest run. On PostgreSQL, where several
receivers may catch up at once, a taken run is locked and the others skip it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.models import pending_derivations
from app.db.packing import unpack
from app.db.sql import fetch_tuples, insert_sql, placeholder, placeholders

# (message id, sending host, raw frame as received, offset of MSG in the frame)
StoredMessage = tuple[int, str | None, bytes, int]


@dataclass(slots=True)
class Fed:
    """The messages of one listed run as the writer stored them, from `first` on: what
    `messages_of` would read back, handed to the deriving process beside the list so that
    it need not read them again (packed as stored: a quarter of the bytes through the pipe).
    The list stays what counts: a run with no such copy (the process started since, or was
    behind) is read from the database."""

    first: int
    nodes: list[str | None]  # the sending host as `_messages` names it
    offsets: list[int]
    raws: list[bytes]  # as `messages.raw` keeps them
    packed: list[int]  # `messages.packed`

    @property
    def last(self) -> int:
        """The id of its last message."""
        return self.first + len(self.raws) - 1

    def messages(self) -> list[StoredMessage]:
        """Its messages as `messages_of` gives them."""
        return [
            (message_id, node, unpack(raw, packed), offset)
            for message_id, node, raw, packed, offset in zip(
                range(self.first, self.last + 1),
                self.nodes,
                self.raws,
                self.packed,
                self.offsets,
                strict=True,
            )
        ]


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
    """List `message_ids` (stored in this transaction) for the catch-up."""
    if message_ids:
        sql = insert_sql("pending_derivations", ("first_id", "last_id"), conn.dialect.paramstyle)
        await conn.exec_driver_sql(sql, runs(sorted(message_ids)))


async def take(
    conn: AsyncConnection, limit: int | None = None
) -> tuple[tuple[int, int, int] | None, list[StoredMessage]]:
    """The oldest listed run, or at most its first `limit` messages: (first id of the run,
    last id of the run, last id taken), or None if no run is left, and the messages taken,
    with what deriving needs of each. On PostgreSQL the run stays locked until the
    transaction ends."""
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
        return None, []
    first, last = (int(i) for i in listed[0])
    upto = last if limit is None else min(last, first + limit - 1)
    return (first, last, upto), await _messages(conn, first, upto)


async def peek(
    conn: AsyncConnection,
    limit: int,
    skip: Collection[int] = (),
    fed: Mapping[int, Fed] | None = None,
) -> tuple[list[tuple[int, int]], list[StoredMessage]]:
    """`oldest` runs and their messages (from `fed`, by first id, where it holds a run
    whole), read without taking them."""
    runs = await oldest(conn, limit, skip)
    return runs, await messages_of(conn, runs, fed)


async def oldest(
    conn: AsyncConnection, limit: int, skip: Collection[int] = ()
) -> list[tuple[int, int]]:
    """The oldest listed runs (first id, last id), as many as hold at most `limit` messages
    (at least one), less those whose first id is in `skip` (handed on already): for a
    deriving process, which hands what it finds to the writer (`claim` there). Several at
    once, because a writer under steady traffic lists many small batches."""
    listed = await fetch_tuples(
        conn,
        "SELECT first_id, last_id FROM pending_derivations ORDER BY first_id "
        f"LIMIT {100 + len(skip)}",
        (),
    )
    runs: list[tuple[int, int]] = []
    size = 0
    for first, last in listed:
        first, last = int(first), int(last)
        if first in skip:
            continue
        if runs and size + last - first + 1 > limit:
            break
        runs.append((first, last))
        size += last - first + 1
    return runs


async def messages_of(
    conn: AsyncConnection, runs: list[tuple[int, int]], fed: Mapping[int, Fed] | None = None
) -> list[StoredMessage]:
    """The messages of `runs` (ascending, not overlapping), with what deriving needs of each:
    those of a run `fed` holds whole (by its first id) from there, the rest read."""
    copies = {
        run: copy
        for run in runs
        if fed and (copy := fed.get(run[0])) is not None and copy.last == run[1]
    }
    if not copies:
        return await _read(conn, runs)
    read = await _read(conn, [run for run in runs if run not in copies])
    stored: list[StoredMessage] = []
    position = 0
    for run in runs:
        copy = copies.get(run)
        if copy is not None:
            stored.extend(copy.messages())
            continue
        start = position
        while position < len(read) and read[position][0] <= run[1]:
            position += 1
        stored.extend(read[start:position])
    return stored


async def _read(conn: AsyncConnection, runs: list[tuple[int, int]]) -> list[StoredMessage]:
    """The stored messages of `runs` (ascending, not overlapping)."""
    if not runs:
        return []
    stored = await _messages(conn, runs[0][0], runs[-1][1])
    if len(runs) > 1:
        # Ids between the runs are not listed (derived already, or another writer's).
        bounds = iter(runs)
        first, last = next(bounds)
        kept = []
        for message in stored:
            while message[0] > last:
                first, last = next(bounds, (message[0] + 1, message[0] + 1))
            if first <= message[0] <= last:
                kept.append(message)
        stored = kept
    return stored


async def claim(conn: AsyncConnection, runs: list[tuple[int, int]]) -> bool:
    """Take the runs `peek` saw if each is still listed whole, for this transaction: on
    SQLite with the write lock, on PostgreSQL with row locks no one else holds."""
    if not runs:
        return True
    style = conn.dialect.paramstyle
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("DELETE FROM pending_derivations WHERE first_id < 0")
        lock = ""
    else:
        lock = " FOR UPDATE SKIP LOCKED"
    found = await fetch_tuples(
        conn,
        "SELECT first_id, last_id FROM pending_derivations "
        f"WHERE first_id IN ({placeholders(style, len(runs))}){lock}",
        tuple(first for first, _ in runs),
    )
    return sorted((int(a), int(b)) for a, b in found) == sorted(runs)


async def done_runs(conn: AsyncConnection, runs: list[tuple[int, int]]) -> None:
    """Strike the whole `runs` off the list."""
    if not runs:
        return
    style = conn.dialect.paramstyle
    await conn.exec_driver_sql(
        f"DELETE FROM pending_derivations WHERE first_id IN ({placeholders(style, len(runs))})",
        tuple(first for first, _ in runs),
    )


async def _messages(conn: AsyncConnection, first: int, last: int) -> list[StoredMessage]:
    """The messages `first` to `last`, with what deriving needs of each."""
    style = conn.dialect.paramstyle
    rows = await fetch_tuples(
        conn,
        # The sending node as the writer names it: HOSTNAME, else the peer.
        "SELECT id, coalesce(hostname, peer_host), raw, packed, msg_offset FROM messages "
        f"WHERE id BETWEEN {placeholder(style, 1)} AND {placeholder(style, 2)} ORDER BY id",
        (first, last),
    )
    return [
        (int(i), node, unpack(bytes(raw), packed), int(offset))
        for i, node, raw, packed, offset in rows
    ]


async def done(conn: AsyncConnection, run: tuple[int, int, int]) -> None:
    """Strike what `take` took off the list: the whole run, or the part of it taken."""
    first, last, upto = run
    row = pending_derivations.c.first_id == first
    if upto >= last:
        await conn.execute(delete(pending_derivations).where(row))
    else:
        await conn.execute(update(pending_derivations).where(row).values(first_id=upto + 1))


async def count(conn: AsyncConnection) -> int:
    """Messages still to derive."""
    table = pending_derivations.c
    query = select(func.coalesce(func.sum(table.last_id - table.first_id + 1), 0))
    return int((await conn.execute(query)).scalar_one())


async def listed_runs(conn: AsyncConnection) -> set[int]:
    """The listed runs, each by its last id: the one `done` keeps when part of a run is
    taken, so that a run is known until the whole of it is derived."""
    rows = await fetch_tuples(conn, "SELECT last_id FROM pending_derivations", ())
    return {int(last) for (last,) in rows}


async def clear(conn: AsyncConnection) -> None:
    """Forget the whole list: a rebuild derives every message anyway."""
    await conn.execute(delete(pending_derivations))
