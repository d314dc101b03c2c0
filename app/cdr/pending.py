"""The messages whose call events are still to be derived: SQL of the deferred-work table,
which only `deriving` writes.

A batch writer's deriver lists messages here (in the transaction that stores them) when it
defers deriving because the database is behind, as runs of consecutive message ids: a
batch's ids are one run on SQLite and nearly always on PostgreSQL, so a batch costs one
row, not one per message. The catch-up takes the oldest run. On PostgreSQL, where several
receivers may catch up at once, a taken run is locked and the others skip it; and the
deriving processes of several receivers take different runs (`Claims`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.models import pending_derivations
from app.db.packing import unpack
from app.db.sql import fetch_tuples, insert_sql, placeholder, placeholders

# (message id, sending host, raw frame as received, offset of MSG in the frame)
StoredMessage = tuple[int, str | None, bytes, int]

# pg_try_advisory_lock's first key for "a deriving process has taken this run" (the bytes
# of "cdrd"); the second is the run's first id cut to 32 bits (`_run_key`).
_RUN_LOCK = 0x63647264
# ... for "the deriving process of this receiver is alive" ("cdrl"); the second is its
# writer's `lister`.
_LISTER_LOCK = 0x6364726C
# Listed runs a deriving process looks at beyond those it has handed on: more than one
# derivation holds under steady traffic, fewer than a statement minds.
_LOOK_AHEAD = 100


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
    """List `message_ids` (stored in this transaction) for the catch-up; on PostgreSQL with
    this receiver as their `lister`."""
    if not message_ids:
        return
    style = conn.dialect.paramstyle
    found = runs(sorted(message_ids))
    if conn.dialect.name == "postgresql":
        sql = insert_sql("pending_derivations", ("first_id", "last_id", "lister"), style)
        own = lister()
        await conn.exec_driver_sql(sql, [(first, last, own) for first, last in found])
    else:
        sql = insert_sql("pending_derivations", ("first_id", "last_id"), style)
        await conn.exec_driver_sql(sql, found)


def lister(pid: int | None = None) -> int:
    """Who lists runs: this host's process `pid` (by default this one), as 31 bits, which
    PostgreSQL keeps in `lister` and as an advisory lock's key. A deriving process is its
    writer's child, and so knows its writer's. Two receivers that came to share one would
    only no longer prefer their own runs."""
    name = f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest()) >> 1


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
    return _fill(await _oldest(conn, skip), limit)


def _locked(key: int) -> str:
    """SQL: the second keys of the advisory locks held in this database under `key`, as
    int8 (a lock's keys show as oids: a negative second key as its low 32 bits)."""
    return (
        "(SELECT objid::int8 FROM pg_locks WHERE locktype = 'advisory' AND "
        f"classid = {key} AND objsubid = 2 AND "
        "database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
    )


async def _oldest(
    conn: AsyncConnection, skip: Collection[int], lister: int | None = None
) -> list[tuple[int, int]]:
    """The oldest listed runs, less those whose first id is in `skip`. With `lister`
    (PostgreSQL, `Claims`): less those a deriving process has taken, and less those another
    receiver listed whose deriving process is alive; the runs `lister` listed first."""
    where = order = ""
    if lister is not None:
        where = (
            f" WHERE first_id & 4294967295 NOT IN {_locked(_RUN_LOCK)} AND (lister = {lister} "
            f"OR lister IS NULL OR lister NOT IN {_locked(_LISTER_LOCK)})"
        )
        order = f"lister IS DISTINCT FROM {lister}, "
    # Runs in `skip` are taken by this process, and left out with `lister` already.
    look = _LOOK_AHEAD if lister is not None else _LOOK_AHEAD + len(skip)
    listed = await fetch_tuples(
        conn,
        f"SELECT first_id, last_id FROM pending_derivations{where} "
        f"ORDER BY {order}first_id LIMIT {look}",
        (),
    )
    return [(int(first), int(last)) for first, last in listed if int(first) not in skip]


def _fill(listed: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """The first of `listed` that hold at most `limit` messages together (at least one)."""
    runs: list[tuple[int, int]] = []
    size = 0
    for first, last in listed:
        if runs and size + last - first + 1 > limit:
            break
        runs.append((first, last))
        size += last - first + 1
    return runs


def _run_key(first_id: int) -> int:
    """The second advisory-lock key of the run starting at `first_id`: its low 32 bits, as
    PostgreSQL's int4. Two runs that share one only wait for each other."""
    low = first_id & 0xFFFFFFFF
    return low - (1 << 32) if low >= 1 << 31 else low


class Claims:
    """The listed runs one deriving process has taken, so that the deriving processes of
    several receivers on one PostgreSQL database derive different runs instead of the same
    oldest ones. A run taken is a session advisory lock on a connection of the process's
    own, held while the run is handed on (`oldest`'s `skip`) and let go at the next look
    after: by then the writer has struck it off, or given it back. A process that is killed
    loses its connection and with it its locks, and another process takes its runs at
    once; a lost connection only lets two processes take the same runs for a while. The
    locks steer the deriving processes, nothing more: what is stored is still decided by
    the writer's checks (`claim`, app/cdr/derivation.py).

    A process takes the runs its own receiver listed (`lister`) first, and those of another
    receiver only once that one's process is gone (it holds a lock under its `lister` while
    alive): a node's lines go to one receiver, so its legs do, and two processes that took
    runs with events of the same legs would each assemble them without the other's events,
    and one of the two derivations would be stale (derived again by its writer).

    SQLite has one writer and one deriving process: `oldest` is the plain one there, and
    takes nothing."""

    def __init__(self, engine: AsyncEngine, lister: int) -> None:
        self._engine = engine
        self.lister = lister
        self._locks: AsyncConnection | None = None
        self._alive = False  # holds the lock that says its receiver's runs are looked after
        self._held: dict[int, int] = {}  # first id of a run taken -> its key

    async def oldest(
        self, conn: AsyncConnection, limit: int, skip: Collection[int] = ()
    ) -> list[tuple[int, int]]:
        """`oldest`, of runs no other deriving process has taken, which this one takes."""
        if conn.dialect.name != "postgresql":
            return await oldest(conn, limit, skip)
        try:
            return await self._oldest(conn, limit, skip)
        except BaseException:
            # The locks' connection may be gone, and its locks with it: start again.
            await self.close()
            raise

    async def _oldest(
        self, conn: AsyncConnection, limit: int, skip: Collection[int]
    ) -> list[tuple[int, int]]:
        if self._locks is None:
            self._locks = await self._engine.connect()
            await self._locks.execution_options(isolation_level="AUTOCOMMIT")
        if not self._alive:
            # Held by another only while a replaced process has not yet gone.
            result = await self._locks.exec_driver_sql(
                "SELECT pg_try_advisory_lock($1, $2)", (_LISTER_LOCK, self.lister)
            )
            self._alive = bool(result.scalar_one())
        await self._unlock([first for first in self._held if first not in skip])
        # Those others have taken are left out before trying: the oldest may all be.
        taken = await self._lock(await _oldest(conn, skip, self.lister))
        # Read after taking: a run struck off (and let go) in between is no longer listed.
        listed = set(await _listed(conn, taken))
        # In id order, as `messages_of` reads them: its own receiver's came first.
        runs = sorted(_fill([run for run in taken if run in listed], limit))
        await self._unlock([run[0] for run in taken if run not in runs])
        return runs

    async def _lock(self, listed: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Those of `listed` no one else has taken, taken."""
        if not listed:
            return []
        assert self._locks is not None
        keys = [_run_key(first) for first, _ in listed]
        # One statement, each key tried in turn: those taken by others come back false.
        result = await self._locks.exec_driver_sql(
            "SELECT pg_try_advisory_lock($1, k) FROM unnest($2::int4[]) WITH ORDINALITY "
            "AS t(k, n) ORDER BY n",
            (_RUN_LOCK, keys),
        )
        taken = []
        for run, key, (locked,) in zip(listed, keys, result.all(), strict=True):
            if locked:
                self._held[run[0]] = key
                taken.append(run)
        return taken

    async def _unlock(self, firsts: list[int]) -> None:
        """Let the runs starting at `firsts` go."""
        keys = [self._held.pop(first) for first in firsts]
        if keys:
            assert self._locks is not None
            await self._locks.exec_driver_sql(
                "SELECT pg_advisory_unlock($1, k) FROM unnest($2::int4[]) AS k",
                (_RUN_LOCK, keys),
            )

    async def close(self) -> None:
        """Let every run go: the connection is closed, not given back to the pool with its
        locks."""
        locks, self._locks = self._locks, None
        self._held.clear()
        self._alive = False
        if locks is not None:
            with contextlib.suppress(Exception):
                await locks.invalidate()
                await locks.close()


async def _listed(conn: AsyncConnection, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Those of `runs` that are still listed as they are."""
    if not runs:
        return []
    found = await fetch_tuples(
        conn,
        "SELECT first_id, last_id FROM pending_derivations WHERE first_id = ANY($1::int8[])",
        ([first for first, _ in runs],),
    )
    return [(int(first), int(last)) for first, last in found]


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
