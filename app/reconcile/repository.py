"""All SQL of reconciliation: loading both sides of a window, storing runs and items."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.models import cdrs, mn_participants, reconciliation_items, reconciliations

from .matching import Item, LegView


def _aliases(*values: str | None) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in values if v and v.strip())


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
        conference_name=conference,
        aliases=_aliases(display, remote),
        protocol=protocol,
        call_direction=direction,
        start_us=start,
        end_us=end,
        duration=duration,
        node=node,
        state=state,
    )


class ReconcileRepository:
    """Reads both sides of a window; writes runs and their items."""

    async def syslog_legs(
        self, conn: AsyncConnection, from_us: int, until_us: int
    ) -> list[LegView]:
        """CDRs whose start (or first event, for failed legs) is in [from, until)."""
        time = func.coalesce(cdrs.c.start_us, cdrs.c.first_seen_us)
        result = await conn.execute(
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
            ).where(time >= from_us, time < until_us)
        )
        return [_view(row, row[12]) for row in result]

    async def mn_records(
        self, conn: AsyncConnection, from_us: int, until_us: int, ids: Iterable[str]
    ) -> list[LegView]:
        """MN records placed in [from, until) by start (or end, for failed calls), plus any
        whose id is in `ids`, wherever they sit in time."""
        time = func.coalesce(mn_participants.c.start_us, mn_participants.c.end_us)
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
        result = await conn.execute(select(*columns).where(time >= from_us, time < until_us))
        for row in result:
            found[row[0]] = _view(row, None)
        wanted = [i for i in ids if i not in found]
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            result = await conn.execute(select(*columns).where(mn_participants.c.id.in_(chunk)))
            for row in result:
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

    async def insert_items(self, conn: AsyncConnection, run_id: int, items: Sequence[Item]) -> None:
        """Store every item of a run, in order."""
        rows = []
        for seq, item in enumerate(items, start=1):
            leg = item.cdr or item.mn
            assert leg is not None
            rows.append(
                {
                    "run_id": run_id,
                    "seq": seq,
                    "status": item.status.value,
                    "cdr_id": item.cdr.id if item.cdr else None,
                    "mn_id": item.mn.id if item.mn else None,
                    "matched_by": item.matched_by,
                    "time_us": item.time_us,
                    "conference_name": leg.conference_name,
                    "node": item.cdr.node if item.cdr else None,
                    "differences": json.dumps(item.differences) if item.differences else None,
                }
            )
            if len(rows) >= 5000:
                await conn.execute(reconciliation_items.insert(), rows)
                rows = []
        if rows:
            await conn.execute(reconciliation_items.insert(), rows)

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
