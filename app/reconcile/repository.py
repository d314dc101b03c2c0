"""All SQL of reconciliation: loading both sides of a window, storing runs and items."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.models import cdrs, mn_participants, reconciliation_items, reconciliations
from app.db.sql import insert_sql
from app.times import iso

from .matching import Item, LegView


def _aliases(display: str | None, remote: str | None) -> tuple[str, ...]:
    first = display.strip().lower() if display else ""
    second = remote.strip().lower() if remote else ""
    if first and second and first != second:
        return (first, second)
    return (first or second,) if first or second else ()


# Conference names, protocols, directions, nodes and states repeat across a million rows:
# one shared string each keeps a large window's memory down.
_intern = sys.intern


def _shared(value: str | None) -> str | None:
    return None if value is None else _intern(value)


def _view(row: Sequence[Any], state: str | None) -> LegView:
    (
        pid,
        call_uuid,
        conference,
        display,
        _local_alias,
        remote,
        protocol,
        direction,
        start,
        end,
        duration,
        node,
    ) = row[:12]
    return LegView(
        id=pid,
        call_uuid=call_uuid,
        conference_name=_shared(conference),
        aliases=_aliases(display, remote),
        protocol=_shared(protocol),
        call_direction=_shared(direction),
        start_us=start,
        end_us=end,
        duration=duration,
        node=_shared(node),
        state=_shared(state),
    )


# Rows are read a partition at a time: a million-row window never sits in memory twice,
# once as result rows and once as LegViews.
_PARTITION = 10_000

ITEM_COLUMNS = (
    "run_id",
    "seq",
    "status",
    "cdr_id",
    "mn_id",
    "matched_by",
    "time_us",
    "conference_name",
    "node",
    "differences",
)


def _differences(differences: dict[str, dict[str, object]] | None) -> str | None:
    if not differences:
        return None
    readable = {
        name: {
            side: iso(value) if name.endswith("_time") and isinstance(value, int) else value
            for side, value in pair.items()
        }
        for name, pair in differences.items()
    }
    return json.dumps(readable)


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

    async def syslog_legs(
        self, conn: AsyncConnection, from_us: int, until_us: int
    ) -> list[LegView]:
        """CDRs whose start (or first event, for failed legs) is in [from, until)."""
        # Written as two indexed ranges rather than coalesce(start, first seen): a slice must
        # not scan the whole table.
        in_window = or_(
            and_(cdrs.c.start_us >= from_us, cdrs.c.start_us < until_us),
            and_(
                cdrs.c.start_us.is_(None),
                cdrs.c.first_seen_us >= from_us,
                cdrs.c.first_seen_us < until_us,
            ),
        )
        query = (
            select(
                cdrs.c.id,
                cdrs.c.call_uuid,
                cdrs.c.conference_name,
                cdrs.c.display_name,
                cdrs.c.local_alias,
                cdrs.c.remote_alias,
                cdrs.c.protocol,
                cdrs.c.call_direction,
                cdrs.c.start_us,
                cdrs.c.end_us,
                cdrs.c.duration,
                cdrs.c.node,
                cdrs.c.state,
            )
            .where(in_window)
            .execution_options(yield_per=_PARTITION)
        )
        legs: list[LegView] = []
        result = await conn.stream(query)
        async for partition in result.partitions():
            legs.extend(_view(row, row[12]) for row in partition)
        return legs

    async def mn_records(
        self, conn: AsyncConnection, from_us: int, until_us: int, ids: Iterable[str]
    ) -> list[LegView]:
        """MN records placed in [from, until) by start (or end, for failed calls), plus any
        whose id is in `ids`, wherever they sit in time."""
        mn = mn_participants.c
        in_window = or_(
            and_(mn.start_us >= from_us, mn.start_us < until_us),
            and_(mn.start_us.is_(None), mn.end_us >= from_us, mn.end_us < until_us),
        )
        columns = (
            mn_participants.c.id,
            mn_participants.c.call_uuid,
            mn_participants.c.conference_name,
            mn_participants.c.display_name,
            mn_participants.c.local_alias,
            mn_participants.c.remote_alias,
            mn_participants.c.protocol,
            mn_participants.c.call_direction,
            mn_participants.c.start_us,
            mn_participants.c.end_us,
            mn_participants.c.duration,
            mn_participants.c.signalling_node,
        )
        found: dict[str, LegView] = {}
        result = await conn.stream(
            select(*columns).where(in_window).execution_options(yield_per=_PARTITION)
        )
        async for partition in result.partitions():
            for row in partition:
                found[row[0]] = _view(row, None)
        wanted = [i for i in ids if i not in found]
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = await conn.execute(select(*columns).where(mn_participants.c.id.in_(chunk)))
            for row in rows:
                found[row[0]] = _view(row, None)
        return list(found.values())

    async def create_run(self, conn: AsyncConnection, values: dict[str, Any]) -> int:
        """Store a run; its id."""
        result = await conn.execute(reconciliations.insert().values(values))
        primary_key = result.inserted_primary_key
        assert primary_key is not None
        return int(primary_key[0])

    async def save_summary(
        self, conn: AsyncConnection, run_id: int, summary: dict[str, Any]
    ) -> None:
        """Store the run's summary JSON."""
        await conn.execute(
            reconciliations.update()
            .where(reconciliations.c.id == run_id)
            .values(summary=json.dumps(summary))
        )

    async def insert_items(
        self, conn: AsyncConnection, run_id: int, items: Sequence[Item], first_seq: int = 1
    ) -> None:
        """Store items of a run, numbered from `first_seq` (times in differences as ISO)."""
        sql = insert_sql("reconciliation_items", ITEM_COLUMNS, conn.dialect.paramstyle)
        rows: list[tuple[object, ...]] = []
        for seq, item in enumerate(items, start=first_seq):
            leg = item.cdr or item.mn
            assert leg is not None
            rows.append(
                (
                    run_id,
                    seq,
                    item.status.value,
                    item.cdr.id if item.cdr else None,
                    item.mn.id if item.mn else None,
                    item.matched_by,
                    item.time_us,
                    leg.conference_name,
                    item.cdr.node if item.cdr else None,
                    _differences(item.differences),
                )
            )
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
        """The stored summary JSON of the newest `limit` runs, newest first."""
        result = await conn.execute(
            select(reconciliations.c.summary).order_by(reconciliations.c.id.desc()).limit(limit)
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
