"""All SQL of export batches: choosing records, freezing them, reading them back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.models import cdrs, export_records, exports, first_exports, reconciliation_items


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
        query = query.where(~exists().where(first_exports.c.cdr_id == cdrs.c.id))
    return query


# The advisory lock key that makes batches one at a time on PostgreSQL ("cdrexprt").
_EXPORT_LOCK = int.from_bytes(b"cdrexprt", "big") & 0x7FFF_FFFF_FFFF_FFFF


class ExportRepository:
    """Stores batches and their frozen records; dialect differences chosen once."""

    def __init__(self, dialect_name: str) -> None:
        self._postgresql = dialect_name == "postgresql"
        self._insert = postgresql.insert if self._postgresql else sqlite.insert

    @classmethod
    def for_connection(cls, conn: AsyncConnection) -> ExportRepository:
        """The repository for the dialect of `conn`."""
        return cls(conn.dialect.name)

    async def start_batch(self, conn: AsyncConnection, values: dict[str, Any]) -> bool:
        """Store a new batch's row; False (and nothing stored) if its Idempotency-Key is
        taken. A key still in flight in another transaction is waited for.

        Batches are made one at a time, so each one reads what the previous ones claimed:
        on SQLite this insert takes the database's write lock, on PostgreSQL a
        transaction-scoped advisory lock comes first."""
        if self._postgresql:
            await conn.execute(select(func.pg_advisory_xact_lock(_EXPORT_LOCK)))
        statement = (
            self._insert(exports)
            .values(values)
            .on_conflict_do_nothing(index_elements=[exports.c.idempotency_key])
        )
        return (await conn.execute(statement)).rowcount == 1

    async def finish_batch(
        self, conn: AsyncConnection, export_id: str, values: dict[str, Any]
    ) -> None:
        """Store what a batch's manifest says once its records are frozen."""
        await conn.execute(update(exports).where(exports.c.id == export_id).values(values))

    async def claim_records(self, conn: AsyncConnection, export_id: str) -> int:
        """Record `export_id` as the first batch of each of its records that had none;
        how many it claimed. In record id order, so that batches claiming overlapping
        records wait for each other rather than deadlock."""
        mine = (
            select(export_records.c.cdr_id, export_records.c.export_id)
            .where(export_records.c.export_id == export_id)
            .order_by(export_records.c.cdr_id)
        )
        statement = (
            self._insert(first_exports)
            .from_select(["cdr_id", "export_id"], mine)
            .on_conflict_do_nothing(index_elements=[first_exports.c.cdr_id])
        )
        return (await conn.execute(statement)).rowcount

    async def first_batches(
        self, conn: AsyncConnection, query: Select[Any], limit: int
    ) -> tuple[int, list[str]]:
        """How many records `query` chooses, and (up to `limit`) the batches that first
        exported any of them."""
        chosen = query.order_by(None).with_only_columns(cdrs.c.id).subquery()
        count = (await conn.execute(select(func.count()).select_from(chosen))).scalar_one()
        held = await conn.execute(
            select(first_exports.c.export_id)
            .join(chosen, chosen.c.id == first_exports.c.cdr_id)
            .group_by(first_exports.c.export_id)
            .order_by(first_exports.c.export_id)
            .limit(limit)
        )
        return int(count), list(held.scalars())

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

    async def batches_holding(
        self, conn: AsyncConnection, cdr_ids: Sequence[str]
    ) -> dict[str, str]:
        """The batch each of these records was first exported in, for those exported."""
        wanted = sorted(set(cdr_ids))
        if not wanted:
            return {}
        result = await conn.execute(
            select(first_exports.c.cdr_id, first_exports.c.export_id).where(
                first_exports.c.cdr_id.in_(wanted)
            )
        )
        return {str(cdr_id): str(export_id) for cdr_id, export_id in result}

    async def lost_per_run(
        self, conn: AsyncConnection, run_ids: Sequence[int], status: str
    ) -> dict[int, tuple[int, int]]:
        """For each run, how many records it gave `status` and how many of those are in
        a batch."""
        if not run_ids:
            return {}
        items = reconciliation_items
        result = await conn.execute(
            select(items.c.run_id, func.count(), func.count(first_exports.c.cdr_id))
            .select_from(items)
            .outerjoin(first_exports, first_exports.c.cdr_id == items.c.cdr_id)
            .where(items.c.run_id.in_(list(run_ids)), items.c.status == status)
            .group_by(items.c.run_id)
        )
        return {int(run): (int(n), int(exported)) for run, n, exported in result}

    async def unexported(
        self,
        conn: AsyncConnection,
        run_ids: Sequence[int],
        status: str,
        columns: Sequence[str],
        limit: int,
    ) -> list[dict[str, Any]]:
        """The CDRs these runs gave `status` that no batch holds (`run_id` and `columns`
        of each), by start time; a CDR several runs list comes once per run."""
        if not run_ids:
            return []
        items = reconciliation_items
        query = (
            select(items.c.run_id, *(cdrs.c[name] for name in columns))
            .join(cdrs, cdrs.c.id == items.c.cdr_id)
            .where(
                items.c.run_id.in_(list(run_ids)),
                items.c.status == status,
                ~exists().where(first_exports.c.cdr_id == items.c.cdr_id),
            )
            .order_by(cdrs.c.start_us, cdrs.c.id, items.c.run_id)
            .limit(limit)
        )
        return [dict(row._mapping) for row in await conn.execute(query)]
