"""All SQL of export batches: choosing records, freezing them, reading them back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.models import cdrs, export_records, exports, reconciliation_items


def candidates(
    *,
    run_id: int | None,
    status: str,
    from_us: int | None,
    until_us: int | None,
    protocols: Sequence[str],
    service_type: str | None,
    conference: str | None,
    has_media: bool | None,
    min_duration: int | None,
    include_exported: bool,
) -> Select[Any]:
    """The CDRs a new batch would hold, in their batch order."""
    query: Select[Any]
    if run_id is not None:
        query = (
            select(cdrs)
            .join(reconciliation_items, reconciliation_items.c.cdr_id == cdrs.c.id)
            .where(reconciliation_items.c.run_id == run_id, reconciliation_items.c.status == status)
            .order_by(reconciliation_items.c.seq)
        )
    else:
        query = select(cdrs).where(cdrs.c.state == "closed").order_by(cdrs.c.start_us, cdrs.c.id)
        if from_us is not None:
            query = query.where(cdrs.c.start_us >= from_us)
        if until_us is not None:
            query = query.where(cdrs.c.start_us < until_us)
    if protocols:
        query = query.where(func.lower(cdrs.c.protocol).in_([p.lower() for p in protocols]))
    if service_type is not None:
        query = query.where(cdrs.c.service_type == service_type)
    if conference is not None:
        query = query.where(cdrs.c.conference_name == conference)
    if has_media is not None:
        media = func.upper(func.coalesce(cdrs.c.protocol, "")) != "API"
        query = query.where(media if has_media else ~media)
    if min_duration is not None:
        query = query.where(cdrs.c.duration >= min_duration)
    if not include_exported:
        query = query.where(~exists().where(export_records.c.cdr_id == cdrs.c.id))
    return query


class ExportRepository:
    """Stores batches and their frozen records."""

    async def by_idempotency_key(self, conn: AsyncConnection, key: str) -> dict[str, Any] | None:
        """The batch created with `key`, if any."""
        row = (await conn.execute(select(exports).where(exports.c.idempotency_key == key))).first()
        return None if row is None else dict(row._mapping)

    async def get(self, conn: AsyncConnection, export_id: str) -> dict[str, Any] | None:
        """A batch's manifest row."""
        row = (await conn.execute(select(exports).where(exports.c.id == export_id))).first()
        return None if row is None else dict(row._mapping)

    async def newest(
        self, conn: AsyncConnection, limit: int, before: tuple[int, str] | None = None
    ) -> list[dict[str, Any]]:
        """The newest batches, in (creation time, id) order, older than the keyset `before`."""
        query = select(exports).order_by(exports.c.created_us.desc(), exports.c.id.desc())
        if before is not None:
            created, export_id = before
            query = query.where(
                or_(
                    exports.c.created_us < created,
                    and_(exports.c.created_us == created, exports.c.id < export_id),
                )
            )
        result = await conn.execute(query.limit(limit))
        return [dict(row._mapping) for row in result]

    async def insert_records(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        """Freeze records of a batch."""
        if rows:
            await conn.execute(export_records.insert(), rows)

    async def insert_batch(self, conn: AsyncConnection, values: dict[str, Any]) -> None:
        """Store a batch's manifest."""
        await conn.execute(exports.insert().values(values))

    async def records(
        self, conn: AsyncConnection, export_id: str, after: int, limit: int
    ) -> list[tuple[int, str, str]]:
        """(seq, record JSON, CSV row) of a batch after `after`, in order."""
        result = await conn.execute(
            select(export_records.c.seq, export_records.c.record, export_records.c.csv_row)
            .where(export_records.c.export_id == export_id, export_records.c.seq > after)
            .order_by(export_records.c.seq)
            .limit(limit)
        )
        return [(int(seq), str(record), str(line)) for seq, record, line in result]
