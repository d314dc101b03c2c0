"""All SQL of reconciliation: loading both sides of a window, storing runs and items."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Integer, Table, and_, case, cast, delete, func, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.models import cdrs, mn_participants, reconciliation_items, reconciliations
from app.db.sql import fetch_tuples, insert_sql, placeholder, placeholders
from parsers.mn_record import COMPARED_FIELDS, compared_text

from .items import ITEM_COLUMNS, STORED, ItemRow
from .rows import COMPARED, ID, LEG_COLUMNS, Row
from .runs import RunState


async def _rows_in_range(
    conn: AsyncConnection, select: str, column: str, fallback: str, from_us: int, until_us: int
) -> list[Row]:
    """The rows of `select` whose `column` is in [from, until), then those with no `column`
    whose `fallback` is.

    Two indexed ranges rather than coalesce(column, fallback), since a slice must not scan
    the whole table; and two queries rather than one with OR, which made SQLite collect and
    sort the row ids of both ranges first, for the same rows in the same order."""
    low, high = placeholder(conn.dialect.paramstyle, 1), placeholder(conn.dialect.paramstyle, 2)
    rows = await fetch_tuples(
        conn, f"{select} WHERE {column} >= {low} AND {column} < {high}", (from_us, until_us)
    )
    rows += await fetch_tuples(
        conn,
        f"{select} WHERE {column} IS NULL AND {fallback} >= {low} AND {fallback} < {high}",
        (from_us, until_us),
    )
    return rows


async def _with_compared(conn: AsyncConnection, table: str, rows: list[Row]) -> list[Row]:
    """`rows` (of `rows.LEG_COLUMNS` first), each with the text of its compared values: a
    row stored without it (written by anything but cdrecon's own writers) gets it from
    its columns."""
    missing = [row[ID] for row in rows if row[COMPARED] is None]
    if not missing:
        return rows
    texts: dict[str, str] = {}
    for start in range(0, len(missing), 500):
        chunk = missing[start : start + 500]
        in_chunk = placeholders(conn.dialect.paramstyle, len(chunk))
        found = await fetch_tuples(
            conn, f"SELECT id, {_COMPARED_FIELDS} FROM {table} WHERE id IN ({in_chunk})", chunk
        )
        texts.update((row[0], compared_text(row[1:])) for row in found)
    return [
        row
        if row[COMPARED] is not None
        else (*row[:COMPARED], texts[row[ID]], *row[COMPARED + 1 :])
        for row in rows
    ]


# pg_advisory_lock's first key for "a reconciliation run is live" (the bytes of "cdrc"); the
# second is the run's id, cut to 31 bits as `fail_interrupted` cuts it in SQL.
_RUN_LOCK = 0x63647263


def _lock_key(run_id: int) -> int:
    return run_id % 2**31


_LEGS = ", ".join(LEG_COLUMNS)
_COMPARED_FIELDS = ", ".join(f.column for f in COMPARED_FIELDS)
# The MN's node is left out: items name the syslog side's node, and nothing else reads it.
_SELECT_MN = f"SELECT {_LEGS} FROM mn_participants"


class ReconcileRepository:
    """Reads both sides of a window; writes runs and their items."""

    async def time_span(
        self, conn: AsyncConnection, from_us: int, until_us: int
    ) -> tuple[int, int] | None:
        """The first and last record time (either side) in [from, until), if any: a wide
        window is sliced only where there is data."""
        found: list[int] = []
        for time_column, fallback, table_start in (
            (cdrs.c.start_us, cdrs.c.first_seen_us, cdrs.c.start_us),
            (mn_participants.c.start_us, mn_participants.c.end_us, mn_participants.c.start_us),
        ):
            for column, condition in (
                (time_column, true()),
                (fallback, table_start.is_(None)),
            ):
                in_range = and_(column >= from_us, column < until_us, condition)
                low, high = (
                    await conn.execute(select(func.min(column), func.max(column)).where(in_range))
                ).one()
                found += [int(v) for v in (low, high) if v is not None]
        return (min(found), max(found)) if found else None

    async def syslog_rows(self, conn: AsyncConnection, from_us: int, until_us: int) -> list[Row]:
        """CDRs whose start (or first event, for failed legs) is in [from, until), as rows
        of `rows.LEG_COLUMNS`, then node and state."""
        select = f"SELECT {_LEGS}, node, state FROM cdrs"
        rows = await _rows_in_range(conn, select, "start_us", "first_seen_us", from_us, until_us)
        return await _with_compared(conn, "cdrs", rows)

    async def mn_rows(
        self, conn: AsyncConnection, from_us: int, until_us: int, ids: Iterable[str]
    ) -> list[Row]:
        """MN records placed in [from, until) by start (or end, for failed calls), plus any
        whose id is in `ids`, wherever they sit in time; rows of `rows.LEG_COLUMNS`."""
        found = await _rows_in_range(conn, _SELECT_MN, "start_us", "end_us", from_us, until_us)
        known = {row[ID] for row in found}
        wanted = [i for i in ids if i not in known]
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            in_chunk = placeholders(conn.dialect.paramstyle, len(chunk))
            rows = await fetch_tuples(conn, f"{_SELECT_MN} WHERE id IN ({in_chunk})", chunk)
            for row in rows:
                if row[ID] not in known:
                    known.add(row[ID])
                    found.append(row)
        return await _with_compared(conn, "mn_participants", found)

    async def create_run(self, conn: AsyncConnection, values: dict[str, Any]) -> int:
        """Store a run; its id. On PostgreSQL `conn`'s session also takes the run's advisory
        lock, which says the run is live until `release_run` or the session's end (a killed
        process's session ends with it): several processes may share the database, and
        another one's run is judged by that lock alone. Call it in the transaction that
        commits the row, so that no one sees the row without its lock."""
        result = await conn.execute(reconciliations.insert().values(values))
        primary_key = result.inserted_primary_key
        assert primary_key is not None
        run_id = int(primary_key[0])
        if conn.dialect.name == "postgresql":
            await conn.execute(select(func.pg_advisory_lock(_RUN_LOCK, _lock_key(run_id))))
        return run_id

    async def release_run(self, conn: AsyncConnection, run_id: int) -> None:
        """Give up the run's advisory lock that `create_run` took on `conn`'s session."""
        if conn.dialect.name == "postgresql":
            await conn.execute(select(func.pg_advisory_unlock(_RUN_LOCK, _lock_key(run_id))))

    async def finish_run(
        self, conn: AsyncConnection, run_id: int, summary: dict[str, Any], finished_us: int
    ) -> bool:
        """Store the run's summary and mark it done, if it is still running; whether it was
        (a run found interrupted meanwhile stays failed)."""
        result = await conn.execute(
            reconciliations.update()
            .where(reconciliations.c.id == run_id, reconciliations.c.status == RunState.RUNNING)
            .values(summary=json.dumps(summary), status=RunState.DONE, finished_us=finished_us)
        )
        return bool(result.rowcount)

    async def fail_run(
        self, conn: AsyncConnection, run_id: int, failure: str, finished_us: int
    ) -> bool:
        """Mark a running run failed, saying why; whether it was running."""
        result = await conn.execute(
            reconciliations.update()
            .where(reconciliations.c.id == run_id, reconciliations.c.status == RunState.RUNNING)
            .values(status=RunState.FAILED, failure=failure, finished_us=finished_us)
        )
        return bool(result.rowcount)

    async def ended_runs(
        self, conn: AsyncConnection, is_live: Callable[[int, str | None], bool]
    ) -> list[int]:
        """The runs left running by a process that is gone; reads only (mark them with
        `fail_runs` in a transaction of their own: a run found gone stays gone).

        PostgreSQL: a run whose advisory lock (see `create_run`) this transaction can take
        has no live session behind it (the lock goes at the transaction's end). SQLite
        (one host): `is_live(id, process)` judges each running run."""
        table = reconciliations
        running = table.c.status == RunState.RUNNING
        if conn.dialect.name == "postgresql":
            # CASE: the lock is tried on running runs alone.
            unlocked = case(
                (
                    running,
                    func.pg_try_advisory_xact_lock(_RUN_LOCK, cast(table.c.id % 2**31, Integer)),
                ),
                else_=False,
            )
            found = await conn.execute(select(table.c.id).where(unlocked))
            return sorted(int(run_id) for (run_id,) in found)
        found = await conn.execute(select(table.c.id, table.c.process).where(running))
        return [int(run_id) for run_id, process in found if not is_live(int(run_id), process)]

    async def fail_runs(
        self, conn: AsyncConnection, run_ids: list[int], failure: str, finished_us: int
    ) -> list[int]:
        """Mark those of these runs still running failed, saying why; their ids (a run that
        finished meanwhile is left as it is)."""
        table = reconciliations
        result = await conn.execute(
            table.update()
            .where(table.c.id.in_(run_ids), table.c.status == RunState.RUNNING)
            .values(status=RunState.FAILED, failure=failure, finished_us=finished_us)
            .returning(table.c.id)
        )
        return sorted(int(run_id) for (run_id,) in result)

    async def delete_items(self, conn: AsyncConnection, run_id: int, count: int) -> int:
        """Delete up to `count` of a run's items, lowest numbers first; how many went. One
        statement, a write from the start (see `take_write_lock`)."""
        item = reconciliation_items
        first = select(item.c.seq).where(item.c.run_id == run_id).order_by(item.c.seq).limit(count)
        result = await conn.execute(
            delete(item).where(item.c.run_id == run_id, item.c.seq.in_(first.scalar_subquery()))
        )
        return int(result.rowcount)

    async def delete_run(self, conn: AsyncConnection, run_id: int) -> None:
        """Delete a run whose items are gone."""
        await conn.execute(delete(reconciliations).where(reconciliations.c.id == run_id))

    async def insert_items(
        self, conn: AsyncConnection, run_id: int, items: Iterable[ItemRow], first_seq: int = 1
    ) -> None:
        """Store item rows of a run (`items.ItemRow`), numbered from `first_seq`."""
        sql = insert_sql("reconciliation_items", ITEM_COLUMNS, conn.dialect.paramstyle)
        rows: list[tuple[object, ...]] = []
        for seq, item in enumerate(items, start=first_seq):
            rows.append((run_id, seq, *item[STORED]))
            if len(rows) >= 10000:
                await conn.exec_driver_sql(sql, rows)
                rows = []
        if rows:
            await conn.exec_driver_sql(sql, rows)

    async def get_run(self, conn: AsyncConnection, run_id: int) -> dict[str, Any] | None:
        """A run's stored summary."""
        row = (
            await conn.execute(select(reconciliations).where(reconciliations.c.id == run_id))
        ).first()
        return None if row is None else dict(row._mapping)

    async def newest_summaries(self, conn: AsyncConnection, limit: int) -> list[str]:
        """The stored summary JSON of the newest `limit` done runs, newest first."""
        result = await conn.execute(
            select(reconciliations.c.summary)
            .where(reconciliations.c.status == RunState.DONE)
            .order_by(reconciliations.c.id.desc())
            .limit(limit)
        )
        return [str(text) for (text,) in result]

    async def page_items(
        self, conn: AsyncConnection, run_id: int, status: str | None, after: int, limit: int
    ) -> list[dict[str, Any]]:
        """Items of a run after sequence number `after`, optionally of one status."""
        query = select(reconciliation_items).where(
            reconciliation_items.c.run_id == run_id, reconciliation_items.c.seq > after
        )
        if status is not None:
            query = query.where(reconciliation_items.c.status == status)
        query = query.order_by(reconciliation_items.c.seq).limit(limit)
        return [dict(row._mapping) for row in await conn.execute(query)]

    async def legs_by_id(
        self, conn: AsyncConnection, table: Table, ids: Iterable[str], columns: Iterable[str]
    ) -> dict[str, dict[str, Any]]:
        """`columns` of the rows of `table` (cdrs or mn_participants) with these ids, by id."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        query = select(table.c.id, *(table.c[name] for name in columns)).where(
            table.c.id.in_(wanted)
        )
        return {row.id: dict(row._mapping) for row in await conn.execute(query)}

    async def starts_per_bucket(
        self, conn: AsyncConnection, table: Table, from_us: int, until_us: int, bucket_us: int
    ) -> list[int]:
        """How many legs of `table` (cdrs or mn_participants) started in each
        `bucket_us`-long bucket of [from, until), in order. One count per bucket over the
        start-time index, all in one statement: the index alone is read, once, where a
        GROUP BY sorts every row first. The statement is plain SQL with the edges written
        in (integers computed here): built as SQLAlchemy expressions, its 720 subqueries
        took ten times as long to compile as to run (bench/timeline.py)."""
        edges = [int(edge) for edge in (*range(from_us, until_us, bucket_us), until_us)]
        name = table.name
        counts = ", ".join(
            f"(SELECT count(*) FROM {name} WHERE start_us >= {low} AND start_us < {high})"
            for low, high in itertools.pairwise(edges)
        )
        row = (await conn.exec_driver_sql(f"SELECT {counts}")).one()
        return [int(n) for n in row]

    async def kept_around(
        self, conn: AsyncConnection, window: tuple[int, int], gap: tuple[int, int], limit: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The billable MN records of `window` that ended last before the gap's first lost
        record and first after its last one (up to `limit` each, nearest first): what the
        MN kept either side of the hole. Billable as `matching.LegView.not_billable` has it
        for an MN record (a start, not a backplane): the records gaps are bounded by."""
        table = mn_participants
        columns = [table.c[name] for name in KEPT_COLUMNS]
        billable = and_(
            table.c.start_us.is_not(None),
            func.upper(func.coalesce(table.c.protocol, "")) != "BACKPLANE",
        )
        # One range on the end-time index each, walked from the gap outwards and stopped
        # at `limit` (no tie-breaker, which would make SQLite sort the whole range; with
        # two upper bounds it would walk down from the window's end instead).
        before = await conn.execute(
            select(*columns)
            .where(table.c.end_us.between(window[0], min(gap[0], window[1] - 1)), billable)
            .order_by(table.c.end_us.desc())
            .limit(limit)
        )
        after = await conn.execute(
            select(*columns)
            .where(table.c.end_us.between(max(gap[1], window[0]), window[1] - 1), billable)
            .order_by(table.c.end_us)
            .limit(limit)
        )
        return [dict(r._mapping) for r in before], [dict(r._mapping) for r in after]


# What the page shows of an MN record kept around a gap.
KEPT_COLUMNS = (
    "id",
    "conference_name",
    "display_name",
    "remote_alias",
    "start_us",
    "end_us",
    "duration",
)
