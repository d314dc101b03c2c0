"""All SQL of retention: each step takes the next few thousand rows past a cursor, in the
order of an index, and deletes them with what hangs on them (or, in a dry run, only counts
them). The guard that keeps the evidence of unexported lost records is here, in every query
that could take it, so it holds in the very transaction that deletes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import counts, partitions
from app.db.models import (
    audit_log,
    cdrs,
    event_messages,
    events,
    export_records,
    exports,
    first_exports,
    messages,
    mn_conferences,
    mn_participants,
    pending_derivations,
    reconciliation_items,
    reconciliations,
)
from app.reconcile.runs import RunState
from app.watch.repository import open_alert_records

from .policy import Tally, listed_ids

# A cursor: the sort key of the last row a step took (its index columns, then its id).
Cursor = tuple[Any, ...]

LOST = "missing_in_mn"


async def take_write_lock(conn: AsyncConnection) -> None:
    """On SQLite, make the transaction's first statement a write: one that read first could
    not write after the batch writer committed meanwhile, while one that waits for the lock
    simply waits (busy_timeout). PostgreSQL locks rows as it deletes them."""
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("DELETE FROM row_counts WHERE slot < -1")


def unexported_lost() -> Select[Any]:
    """The ids of CDRs some run found lost (`missing_in_mn`) and no batch has exported:
    billing still needs them, with everything behind them. A run still running counts (it
    may well finish); a failed one does not."""
    item = reconciliation_items
    return (
        select(item.c.cdr_id)
        .select_from(
            reconciliations.join(
                item, and_(item.c.run_id == reconciliations.c.id, item.c.status == LOST)
            )
        )
        .where(
            reconciliations.c.status != RunState.FAILED,
            item.c.cdr_id.is_not(None),
            ~exists().where(first_exports.c.cdr_id == item.c.cdr_id),
        )
    )


def _after(keys: Sequence[ColumnElement[Any]], cursor: Cursor | None) -> ColumnElement[bool]:
    """Rows past `cursor` in the order of `keys`, written so that an index on the first key
    serves it on both databases (a row-value comparison is not always planned that way)."""
    if not cursor:  # None, or () for "from the start, again"
        return literal(True)
    if len(keys) == 1:
        past: ColumnElement[bool] = keys[0] > cursor[0]
        return past
    first, rest = keys[0], keys[1:]
    return and_(first >= cursor[0], or_(first > cursor[0], _after(rest, cursor[1:])))


@dataclass(frozen=True, slots=True)
class _Scan:
    """Rows of `table` matching `where`, in the order of `keys` (the last one unique)."""

    table: Table
    where: ColumnElement[bool]
    keys: tuple[ColumnElement[Any], ...]

    async def next(
        self,
        conn: AsyncConnection,
        cursor: Cursor | None,
        limit: int,
        *extra: ColumnElement[Any],
    ) -> list[tuple[Any, ...]]:
        query = (
            select(*self.keys, *extra)
            .where(self.where, _after(self.keys, cursor))
            .order_by(*self.keys)
            .limit(limit)
        )
        return [tuple(row) for row in await conn.execute(query)]


async def _delete(conn: AsyncConnection, column: ColumnElement[Any], values: Sequence[Any]) -> int:
    """Delete the rows whose `column` is one of `values`; how many."""
    if not values:
        return 0
    table = column.table
    assert isinstance(table, Table)
    result = await conn.execute(delete(table).where(column.in_(values)))
    return int(result.rowcount)


async def _events_with_messages(
    conn: AsyncConnection, event_rows: list[tuple[int, bytes, int]], dry_run: bool, tally: Tally
) -> None:
    """Delete events (id, digest, first message) with their further messages and all their
    raw messages; counts kept true in the same transaction."""
    if not event_rows:
        return
    digests = [digest for _, digest, _ in event_rows]
    further = [
        int(message_id)
        for (message_id,) in await conn.execute(
            select(event_messages.c.message_id).where(event_messages.c.digest.in_(digests))
        )
    ]
    message_ids = [message_id for _, _, message_id in event_rows] + further
    if partitions.partitioned(conn):
        message_ids = []  # they go with their day's partition (`prune_call_messages`)
    if dry_run:
        tally.add("events", len(event_rows))
        tally.add("event_messages", len(further))
        tally.add("messages", len(set(message_ids)))
        return
    tally.add("event_messages", await _delete(conn, event_messages.c.digest, digests))
    gone_events = await _delete(conn, events.c.id, [event_id for event_id, _, _ in event_rows])
    tally.add("events", gone_events)
    await counts.adjust(conn, "events", -gone_events)
    gone_messages = await _delete(conn, messages.c.id, sorted(set(message_ids)))
    tally.add("messages", gone_messages)
    await counts.adjust(conn, "messages", -gone_messages)


async def prune_cdrs(
    conn: AsyncConnection, cutoff_us: int, cursor: Cursor | None, limit: int, dry_run: bool
) -> tuple[Cursor | None, Tally]:
    """CDRs that started before the cut-off (those that never started: first seen before
    it), except unexported lost records, with their events and messages. The cursor is
    ("started", start, id), then ("unstarted", first seen, id)."""
    tally = Tally()
    # An open alert's records (a restore's are MN ids, which name the CDR syslog saw) are
    # what its responder needs to look at.
    kept = and_(cdrs.c.id.not_in(unexported_lost()), cdrs.c.id.not_in(open_alert_records()))
    if cursor is None or cursor[0] == "started":
        scan = _Scan(cdrs, and_(cdrs.c.start_us < cutoff_us, kept), (cdrs.c.start_us, cdrs.c.id))
        phase, position = "started", None if cursor is None else cursor[1:]
    else:
        scan = _Scan(
            cdrs,
            and_(cdrs.c.start_us.is_(None), cdrs.c.first_seen_us < cutoff_us, kept),
            (cdrs.c.first_seen_us, cdrs.c.id),
        )
        phase, position = "unstarted", cursor[1:] or None
    rows = await scan.next(conn, position, limit, cdrs.c.message_ids)
    if rows:
        ids = [str(cdr_id) for _, cdr_id, _ in rows]
        listed = [message_id for *_, text in rows for message_id in listed_ids(str(text))]
        event_rows = [
            (int(event_id), bytes(digest), int(message_id))
            for event_id, digest, message_id in await conn.execute(
                select(events.c.id, events.c.digest, events.c.message_id).where(
                    events.c.message_id.in_(listed)
                )
            )
        ]
        await _events_with_messages(conn, event_rows, dry_run, tally)
        if dry_run:
            tally.add("cdrs", len(ids))
            claimed = select(func.count()).where(first_exports.c.cdr_id.in_(ids))
            tally.add("first_exports", int((await conn.execute(claimed)).scalar_one()))
        else:
            tally.add("first_exports", await _delete(conn, first_exports.c.cdr_id, ids))
            gone = await _delete(conn, cdrs.c.id, ids)
            tally.add("cdrs", gone)
            await counts.adjust(conn, "cdrs", -gone)
    if len(rows) == limit:
        return (phase, *rows[-1][:2]), tally
    if phase == "started":
        return ("unstarted",), tally
    return None, tally


async def prune_events(
    conn: AsyncConnection, cutoff_us: int, cursor: Cursor | None, limit: int, dry_run: bool
) -> tuple[Cursor | None, Tally]:
    """Call events before the cut-off that belong to no CDR (a kept CDR keeps its events),
    with their messages. The cursor is (time, digest)."""
    tally = Tally()
    of_no_cdr = or_(
        events.c.participant_id.is_(None),
        ~exists().where(cdrs.c.id == events.c.participant_id),
    )
    scan = _Scan(
        events, and_(events.c.time_us < cutoff_us, of_no_cdr), (events.c.time_us, events.c.digest)
    )
    rows = await scan.next(conn, cursor, limit, events.c.id, events.c.message_id)
    await _events_with_messages(
        conn,
        [
            (int(event_id), bytes(digest), int(message_id))
            for _, digest, event_id, message_id in rows
        ],
        dry_run,
        tally,
    )
    return ((rows[-1][0], rows[-1][1]) if len(rows) == limit else None), tally


SETTLED = "settled"


async def prune_messages(
    conn: AsyncConnection, cutoff_us: int, cursor: Cursor | None, limit: int, dry_run: bool
) -> tuple[Cursor | None, Tally]:
    """Raw messages received before the cut-off that carry no call event and are not waiting
    to be derived, `limit` ids at a time in id order (the order they were received); the
    step ends at the first message younger than the cut-off. The cursor is (last id looked
    at, settled, blocked): every message up to `settled` is decided for good (gone, or kept
    for its call event, which later steps prune with its CDR), until a message still to be
    derived or a young one `blocked` it. The step's last cursor is (SETTLED, settled): where
    the next pass may start instead of the first message (`Resume`).

    On PostgreSQL, the day partitions of messages that carry no call event whose day ended
    before the cut-off are dropped instead (`drop_partitions`)."""
    if partitions.partitioned(conn):
        return await drop_partitions(conn, cutoff_us, False, cursor, dry_run)
    tally = Tally()
    after, settled, blocked = cursor if cursor else (None, None, False)
    query = select(messages.c.id, messages.c.received_us).order_by(messages.c.id).limit(limit)
    if after is not None:
        query = query.where(messages.c.id > after)
    rows = [(int(i), int(received)) for i, received in await conn.execute(query)]
    if not rows:
        return (SETTLED, settled), tally
    old = [message_id for message_id, received in rows if received < cutoff_us]
    waiting: list[tuple[int, int]] = []
    if old:
        carrying = {
            int(i)
            for (i,) in await conn.execute(
                select(events.c.message_id)
                .where(events.c.message_id.in_(old))
                .union_all(
                    select(event_messages.c.message_id).where(event_messages.c.message_id.in_(old))
                )
            )
        }
        waiting = [
            (int(first), int(last))
            for first, last in await conn.execute(
                select(pending_derivations.c.first_id, pending_derivations.c.last_id).where(
                    pending_derivations.c.first_id <= old[-1],
                    pending_derivations.c.last_id >= old[0],
                )
            )
        ]
        going = [
            message_id
            for message_id in old
            if message_id not in carrying
            and not any(first <= message_id <= last for first, last in waiting)
        ]
        if dry_run:
            tally.add("messages", len(going))
        else:
            gone = await _delete(conn, messages.c.id, going)
            tally.add("messages", gone)
            await counts.adjust(conn, "messages", -gone)
    for message_id, received in rows:
        if blocked:
            break
        undecided = received >= cutoff_us or any(
            first <= message_id <= last for first, last in waiting
        )
        if undecided:
            blocked = True
        else:
            settled = message_id
    if rows[-1][1] >= cutoff_us or len(rows) < limit:
        return (SETTLED, settled), tally
    return (rows[-1][0], settled, blocked), tally


async def prune_call_messages(
    conn: AsyncConnection, cutoff_us: int, cursor: Cursor | None, limit: int, dry_run: bool
) -> tuple[Cursor | None, Tally]:
    """PostgreSQL: drop the day partitions of messages that may carry a call event whose day
    ended before the cut-off, once none of their messages carries one (the steps before
    pruned the events with their CDRs, and kept those of unexported lost records). SQLite:
    nothing, those messages went with their events."""
    if not partitions.partitioned(conn):
        return None, Tally()
    return await drop_partitions(conn, cutoff_us, True, cursor, dry_run)


async def drop_partitions(
    conn: AsyncConnection, cutoff_us: int, calls: bool, cursor: Cursor | None, dry_run: bool
) -> tuple[Cursor | None, Tally]:
    """Drop the next day partition of class `calls` whose day ended before the cut-off and
    that nothing holds (`_held`), one a transaction; the cursor is the last one's first id.
    Its messages are counted first, to keep the row counts true."""
    tally = Tally()
    after = int(cursor[0]) if cursor else -1
    for partition in await partitions.existing(conn):
        if partition.calls is not calls or partition.low <= after:
            continue
        if partition.end_us > cutoff_us:
            break
        if await _held(conn, partition):
            continue
        rows = await partitions.rows_in(conn, partition)
        if not dry_run:
            await partitions.drop(conn, partition)
            await counts.adjust(conn, "messages", -rows)
        tally.add("messages", rows)
        tally.partitions[partition.name] = rows
        return (partition.low,), tally
    return None, tally


async def _held(conn: AsyncConnection, partition: partitions.Partition) -> bool:
    """Whether a partition must stay: a message in it carries a call event still stored
    (the evidence of an unexported lost record, or of a CDR inside the horizon), or waits
    to be derived. Retention's one test of "carries a call event", as `prune_messages`
    asks it row by row; here of a range of ids, on the same indexes."""
    low, high = partition.low, partition.high
    carried = select(literal(1)).where(
        or_(
            exists().where(events.c.message_id >= low, events.c.message_id < high),
            exists().where(event_messages.c.message_id >= low, event_messages.c.message_id < high),
            exists().where(
                pending_derivations.c.first_id < high, pending_derivations.c.last_id >= low
            ),
        )
    )
    return (await conn.execute(carried)).first() is not None


async def _prune_phases(
    conn: AsyncConnection,
    phases: Sequence[_Scan],
    cursor: Cursor | None,
    limit: int,
    dry_run: bool,
) -> tuple[Cursor | None, Tally]:
    """Rows of one table found by several scans in turn, deleted by id (the last key). The
    cursor is (scan number, its keys...)."""
    phase = 0 if not cursor else int(cursor[0])
    scan = phases[phase]
    table = scan.table
    rows = await scan.next(conn, cursor[1:] if cursor else None, limit)
    tally = Tally()
    ids = [row[-1] for row in rows]
    if dry_run:
        tally.add(table.name, len(ids))
    else:
        gone = await _delete(conn, table.c.id, ids)
        tally.add(table.name, gone)
        if table.name in counts.COUNTED:
            await counts.adjust(conn, table.name, -gone)
    if len(rows) == limit:
        return (phase, *rows[-1]), tally
    return ((phase + 1,) if phase + 1 < len(phases) else None), tally


async def prune_mn_participants(
    conn: AsyncConnection, cutoff_us: int, cursor: Cursor | None, limit: int, dry_run: bool
) -> tuple[Cursor | None, Tally]:
    """MN participant records that ended before the cut-off (never ended: started before it;
    neither: imported before it), except those an open alert names (a restore: the MN's own
    record of what it lost)."""
    table = mn_participants
    kept = table.c.id.not_in(open_alert_records())
    unended = table.c.end_us.is_(None)
    phases = (
        _Scan(table, and_(table.c.end_us < cutoff_us, kept), (table.c.end_us, table.c.id)),
        _Scan(
            table,
            and_(unended, table.c.start_us < cutoff_us, kept),
            (table.c.start_us, table.c.id),
        ),
        _Scan(
            table,
            and_(unended, table.c.start_us.is_(None), table.c.imported_us < cutoff_us, kept),
            (table.c.id,),
        ),
    )
    return await _prune_phases(conn, phases, cursor, limit, dry_run)


async def prune_mn_conferences(
    conn: AsyncConnection, cutoff_us: int, cursor: Cursor | None, limit: int, dry_run: bool
) -> tuple[Cursor | None, Tally]:
    """MN conference records that ended before the cut-off (never ended: started, else were
    imported, before it)."""
    table = mn_conferences
    started = func.coalesce(table.c.start_us, table.c.imported_us)
    phases = (
        _Scan(table, table.c.end_us < cutoff_us, (table.c.end_us, table.c.id)),
        _Scan(table, and_(table.c.end_us.is_(None), started < cutoff_us), (table.c.id,)),
    )
    return await _prune_phases(conn, phases, cursor, limit, dry_run)


async def _prune_parent(
    conn: AsyncConnection,
    scan: _Scan,
    children: Table,
    cursor: Cursor | None,
    limit: int,
    dry_run: bool,
) -> tuple[Cursor | None, Tally]:
    """One parent row (a run, a batch) per transaction, its children `limit` at a time: the
    cursor stays before a parent until its last child is gone, then it goes."""
    tally = Tally()
    rows = await scan.next(conn, cursor, 1)
    if not rows:
        return None, tally
    parent_id = rows[0][-1]
    (parent_key,) = scan.keys[-1:]
    link = children.c[_PARENT_COLUMN[children.name]]
    if dry_run:
        counted = await conn.execute(select(func.count()).where(link == parent_id))
        tally.add(children.name, int(counted.scalar_one()))
        tally.add(scan.table.name, 1)
        return rows[0], tally
    seqs = (
        select(children.c.seq).where(link == parent_id).order_by(children.c.seq).limit(limit)
    ).subquery()
    last = (await conn.execute(select(func.max(seqs.c.seq)))).scalar_one()
    if last is not None:
        result = await conn.execute(
            delete(children).where(link == parent_id, children.c.seq <= last)
        )
        tally.add(children.name, int(result.rowcount))
        return cursor or (), tally
    tally.add(scan.table.name, await _delete(conn, parent_key, [parent_id]))
    return rows[0], tally


_PARENT_COLUMN = {"reconciliation_items": "run_id", "export_records": "export_id"}


async def prune_runs(
    conn: AsyncConnection, cutoff_us: int, cursor: Cursor | None, limit: int, dry_run: bool
) -> tuple[Cursor | None, Tally]:
    """Reconciliation runs made before the cut-off with their items, except a run that holds
    an unexported lost record (it is what exports that record; a failed run exports
    nothing) and one still running. The cursor is (made, id)."""
    item = reconciliation_items
    holds_lost = exists().where(
        item.c.run_id == reconciliations.c.id,
        item.c.status == LOST,
        item.c.cdr_id.is_not(None),
        ~exists().where(first_exports.c.cdr_id == item.c.cdr_id),
    )
    scan = _Scan(
        reconciliations,
        and_(
            reconciliations.c.created_us < cutoff_us,
            reconciliations.c.status != RunState.RUNNING,
            or_(reconciliations.c.status == RunState.FAILED, ~holds_lost),
        ),
        (reconciliations.c.created_us, reconciliations.c.id),
    )
    return await _prune_parent(conn, scan, item, cursor, limit, dry_run)


async def prune_batches(
    conn: AsyncConnection, cutoff_us: int, cursor: Cursor | None, limit: int, dry_run: bool
) -> tuple[Cursor | None, Tally]:
    """Export batches made before the cut-off with their frozen records. `first_exports`
    keeps their claims while the CDRs live (a CDR is not exported twice), and loses them
    with the CDRs. The cursor is (made, id)."""
    scan = _Scan(exports, exports.c.created_us < cutoff_us, (exports.c.created_us, exports.c.id))
    return await _prune_parent(conn, scan, export_records, cursor, limit, dry_run)


async def prune_audit(
    conn: AsyncConnection, cutoff_us: int, cursor: Cursor | None, limit: int, dry_run: bool
) -> tuple[Cursor | None, Tally]:
    """Audit entries written before the cut-off. The cursor is (at, id)."""
    scan = _Scan(audit_log, audit_log.c.at_us < cutoff_us, (audit_log.c.at_us, audit_log.c.id))
    rows = await scan.next(conn, cursor, limit)
    tally = Tally()
    ids = [int(row[1]) for row in rows]
    tally.add(audit_log.name, len(ids) if dry_run else await _delete(conn, audit_log.c.id, ids))
    return (rows[-1] if len(rows) == limit else None), tally


async def free_pages(conn: AsyncConnection) -> int | None:
    """SQLite's pages on its free list (None on PostgreSQL, or when the database was made
    without incremental auto-vacuum and cannot give them back while running)."""
    if conn.dialect.name != "sqlite":
        return None
    mode = (await conn.exec_driver_sql("PRAGMA auto_vacuum")).scalar_one()
    if int(mode) != 2:
        return None
    return int((await conn.exec_driver_sql("PRAGMA freelist_count")).scalar_one())


async def return_pages(conn: AsyncConnection, pages: int) -> None:
    """Give up to `pages` free pages back to the file system (SQLite, incremental mode)."""
    await conn.exec_driver_sql(f"PRAGMA incremental_vacuum({int(pages)})")
