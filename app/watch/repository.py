"""All SQL of the watch: alerts and their records, the lost records of a run, what the MN
history held at earlier pulls, and the records retention must keep."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import counts
from app.db.models import (
    cdrs,
    first_exports,
    mn_participants,
    reconciliation_items,
    reconciliations,
    watch_alert_records,
    watch_alerts,
)
from app.reconcile.runs import RunState

from .policy import Alert, Kind, LostRecord, State

_CHUNK = 500


def open_alert_records() -> Select[tuple[str]]:
    """The ids of the records (CDR or MN record ids) that open alerts are about, as a
    subquery: retention keeps them (`column.not_in(open_alert_records())`) until the alert
    clears, which it does once they are exported or an admin acknowledged it."""
    return (
        select(watch_alert_records.c.record_id)
        .join(watch_alerts, watch_alerts.c.id == watch_alert_records.c.alert_id)
        .where(watch_alerts.c.state == State.OPEN.value)
    )


async def lost_records(
    conn: AsyncConnection, run_id: int, status: str = "missing_in_mn"
) -> list[LostRecord]:
    """The run's missing_in_mn records (or those of `status`), each at its write time (call
    end, else start)."""
    query = (
        select(
            reconciliation_items.c.cdr_id,
            func.coalesce(cdrs.c.end_us, reconciliation_items.c.time_us),
            reconciliation_items.c.node,
        )
        .join(cdrs, cdrs.c.id == reconciliation_items.c.cdr_id)
        .where(
            reconciliation_items.c.run_id == run_id,
            reconciliation_items.c.status == status,
        )
    )
    return [
        LostRecord(str(cdr_id), int(write_us), node)
        for cdr_id, write_us, node in await conn.execute(query)
        if write_us is not None
    ]


async def alerts_near(conn: AsyncConnection, kind: Kind, from_us: int) -> list[Alert]:
    """The alerts of `kind`, open or cleared, that a gap at or after `from_us` could belong
    to: those whose records or kept bounds reach that far."""
    query = select(
        watch_alerts.c.id,
        watch_alerts.c.state,
        watch_alerts.c.from_us,
        watch_alerts.c.until_us,
        watch_alerts.c.before_us,
        watch_alerts.c.after_us,
        watch_alerts.c.reach_from_us,
        watch_alerts.c.reach_until_us,
    ).where(watch_alerts.c.kind == kind.value, watch_alerts.c.reach_until_us >= from_us)
    rows = list(await conn.execute(query))
    ids = await _record_ids(conn, [row.id for row in rows])
    return [
        Alert(
            row.id,
            State(row.state),
            frozenset(ids.get(row.id, ())),
            row.from_us,
            row.until_us,
            row.before_us,
            row.after_us,
            (row.reach_from_us, row.reach_until_us),
        )
        for row in rows
    ]


async def _record_ids(conn: AsyncConnection, alert_ids: Sequence[int]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for start in range(0, len(alert_ids), _CHUNK):
        chunk = alert_ids[start : start + _CHUNK]
        query = select(watch_alert_records.c.alert_id, watch_alert_records.c.record_id).where(
            watch_alert_records.c.alert_id.in_(chunk)
        )
        for alert_id, record_id in await conn.execute(query):
            found.setdefault(alert_id, set()).add(record_id)
    return found


async def insert_alert(conn: AsyncConnection, values: dict[str, Any]) -> int:
    """Store a new alert; its id."""
    result = await conn.execute(watch_alerts.insert().values(values))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


async def update_alert(conn: AsyncConnection, alert_id: int, values: dict[str, Any]) -> None:
    """Change an alert's columns."""
    await conn.execute(watch_alerts.update().where(watch_alerts.c.id == alert_id).values(values))


async def add_records(conn: AsyncConnection, alert_id: int, records: Iterable[LostRecord]) -> None:
    """Attach records to an alert."""
    rows = [{"alert_id": alert_id, "record_id": r.id, "time_us": r.write_us} for r in records]
    for start in range(0, len(rows), 1000):
        await conn.execute(watch_alert_records.insert(), rows[start : start + 1000])


async def record_nodes(conn: AsyncConnection, alert_id: int) -> list[str]:
    """The nodes of an alert's records that syslog named (gaps only)."""
    query = (
        select(cdrs.c.node)
        .distinct()
        .join(watch_alert_records, watch_alert_records.c.record_id == cdrs.c.id)
        .where(watch_alert_records.c.alert_id == alert_id, cdrs.c.node.is_not(None))
    )
    return sorted(str(node) for (node,) in await conn.execute(query))


async def get_alert(conn: AsyncConnection, alert_id: int) -> dict[str, Any] | None:
    """An alert's row."""
    row = (await conn.execute(select(watch_alerts).where(watch_alerts.c.id == alert_id))).first()
    return None if row is None else dict(row._mapping)


async def page_alerts(
    conn: AsyncConnection, state: str | None, kind: str | None, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    """Alerts newest first, optionally of one state and kind, with ids below `before_id`."""
    query = select(watch_alerts).order_by(watch_alerts.c.id.desc()).limit(limit)
    if state is not None:
        query = query.where(watch_alerts.c.state == state)
    if kind is not None:
        query = query.where(watch_alerts.c.kind == kind)
    if before_id is not None:
        query = query.where(watch_alerts.c.id < before_id)
    return [dict(row._mapping) for row in await conn.execute(query)]


async def page_records(
    conn: AsyncConnection, alert_id: int, after: tuple[int, str] | None, limit: int
) -> list[dict[str, Any]]:
    """An alert's records in write order, after the (time, id) `after`."""
    table = watch_alert_records
    query = (
        select(table.c.record_id, table.c.time_us)
        .where(table.c.alert_id == alert_id)
        .order_by(table.c.time_us, table.c.record_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            or_(
                table.c.time_us > after[0],
                and_(table.c.time_us == after[0], table.c.record_id > after[1]),
            )
        )
    return [dict(row._mapping) for row in await conn.execute(query)]


async def exported_open_alerts(conn: AsyncConnection) -> list[int]:
    """Open alerts every record of which is in an export batch."""
    unexported = (
        select(watch_alert_records.c.alert_id)
        .outerjoin(first_exports, first_exports.c.cdr_id == watch_alert_records.c.record_id)
        .where(first_exports.c.cdr_id.is_(None))
    )
    query = select(watch_alerts.c.id).where(
        watch_alerts.c.state == State.OPEN.value, watch_alerts.c.id.not_in(unexported)
    )
    return [int(alert_id) for (alert_id,) in await conn.execute(query)]


async def found_open_gaps(conn: AsyncConnection) -> list[int]:
    """Open gap alerts every record of which the MN store now holds (by id): the MN wrote
    them late."""
    missing = (
        select(watch_alert_records.c.alert_id)
        .outerjoin(mn_participants, mn_participants.c.id == watch_alert_records.c.record_id)
        .where(mn_participants.c.id.is_(None))
    )
    query = select(watch_alerts.c.id).where(
        watch_alerts.c.state == State.OPEN.value,
        watch_alerts.c.kind == Kind.GAP.value,
        watch_alerts.c.id.not_in(missing),
    )
    return [int(alert_id) for (alert_id,) in await conn.execute(query)]


async def open_figures(conn: AsyncConnection) -> dict[str, tuple[int, int, int | None]]:
    """Per kind: open alerts, their records, and the first seen of the oldest."""
    records = (
        select(watch_alert_records.c.alert_id, func.count().label("n"))
        .group_by(watch_alert_records.c.alert_id)
        .subquery()
    )
    query = (
        select(
            watch_alerts.c.kind,
            func.count(),
            func.coalesce(func.sum(records.c.n), 0),
            func.min(watch_alerts.c.first_seen_us),
        )
        .outerjoin(records, records.c.alert_id == watch_alerts.c.id)
        .where(watch_alerts.c.state == State.OPEN.value)
        .group_by(watch_alerts.c.kind)
    )
    return {
        str(kind): (int(count), int(total), None if first is None else int(first))
        for kind, count, total, first in await conn.execute(query)
    }


def _held(url: str, low_us: int, high_us: int) -> Any:
    """MN records pulled from `url` that end in [low, high) and no restore alert names yet."""
    named = (
        select(watch_alert_records.c.record_id)
        .join(watch_alerts, watch_alerts.c.id == watch_alert_records.c.alert_id)
        .where(watch_alerts.c.kind == Kind.RESTORE.value)
    )
    return and_(
        mn_participants.c.source == url,
        mn_participants.c.end_us >= low_us,
        mn_participants.c.end_us < high_us,
        mn_participants.c.id.not_in(named),
    )


async def held_count(conn: AsyncConnection, url: str, low_us: int, high_us: int) -> int:
    """How many records pulled from `url` end in [low, high) (see `_held`)."""
    query = select(func.count()).select_from(mn_participants).where(_held(url, low_us, high_us))
    return int((await conn.execute(query)).scalar_one())


async def held_records(
    conn: AsyncConnection, url: str, low_us: int, high_us: int
) -> dict[str, int]:
    """The records pulled from `url` that end in [low, high), id -> end (see `_held`)."""
    query = select(mn_participants.c.id, mn_participants.c.end_us).where(
        _held(url, low_us, high_us)
    )
    return {str(i): int(end) for i, end in await conn.execute(query)}


async def superseded_runs(
    conn: AsyncConnection, created_by: str, before_us: int, limit: int
) -> list[int]:
    """Runs by `created_by` made before `before_us` that hold no lost record still to export
    and that no open alert names: later runs have judged their window again. A run still
    running is left to finish; a failed one is superseded too."""
    item = reconciliation_items
    holds_unexported = exists().where(
        item.c.run_id == reconciliations.c.id,
        item.c.status == "missing_in_mn",
        item.c.cdr_id.is_not(None),
        ~exists().where(first_exports.c.cdr_id == item.c.cdr_id),
    )
    named = select(watch_alerts.c.run_id).where(
        watch_alerts.c.state == State.OPEN.value, watch_alerts.c.run_id.is_not(None)
    )
    query = (
        select(reconciliations.c.id)
        .where(
            reconciliations.c.created_by == created_by,
            reconciliations.c.created_us < before_us,
            reconciliations.c.status != RunState.RUNNING,
            or_(reconciliations.c.status == RunState.FAILED, ~holds_unexported),
            reconciliations.c.id.not_in(named),
        )
        .order_by(reconciliations.c.id)
        .limit(limit)
    )
    return [int(run_id) for (run_id,) in await conn.execute(query)]


async def forget_held(conn: AsyncConnection, alert_id: int) -> int:
    """Move an alert's records out of `mn_participants` into the alert (`record`, as they
    were held); how many left the store."""
    held = (
        select(mn_participants.c.record)
        .where(mn_participants.c.id == watch_alert_records.c.record_id)
        .scalar_subquery()
    )
    await conn.execute(
        watch_alert_records.update()
        .where(watch_alert_records.c.alert_id == alert_id, watch_alert_records.c.record.is_(None))
        .values(record=held)
    )
    ids = select(watch_alert_records.c.record_id).where(watch_alert_records.c.alert_id == alert_id)
    result = await conn.execute(delete(mn_participants).where(mn_participants.c.id.in_(ids)))
    gone = int(result.rowcount)
    await counts.adjust(conn, mn_participants.name, -gone)
    return gone
