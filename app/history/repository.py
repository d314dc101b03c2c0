"""All SQL of the MN record store and pull checkpoints; dialect differences chosen once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import counts
from app.db.models import (
    history_coverage,
    mn_conferences,
    mn_participants,
    pull_attempts,
    pull_checkpoints,
)

# Pull attempts kept for the console: a scheduled pull adds one every interval, for years.
PULL_ATTEMPTS_KEPT = 100


class HistoryRepository:
    """Writes and reads MN participant and conference records."""

    def __init__(self, dialect_name: str) -> None:
        self._dialect_name = dialect_name

    @classmethod
    def for_connection(cls, conn: AsyncConnection) -> HistoryRepository:
        """The repository for the dialect of `conn`."""
        return cls(conn.dialect.name)

    async def _upsert(
        self, conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]
    ) -> None:
        if not rows:
            return
        updated = {c.name for c in table.columns} - {"id"}
        insert = (postgresql.insert if self._dialect_name == "postgresql" else sqlite.insert)(table)
        statement = insert.on_conflict_do_update(
            index_elements=["id"], set_={name: insert.excluded[name] for name in updated}
        )
        for start in range(0, len(rows), 1000):
            await conn.execute(statement, list(rows[start : start + 1000]))

    async def upsert_participants(
        self, conn: AsyncConnection, rows: Sequence[dict[str, Any]]
    ) -> None:
        """Store participant records; a newer copy of a record replaces the older one."""
        ids = {row["id"] for row in rows}
        known: set[str] = set()
        listed = sorted(ids)
        for start in range(0, len(listed), 500):
            chunk = listed[start : start + 500]
            query = select(mn_participants.c.id).where(mn_participants.c.id.in_(chunk))
            known.update(str(i) for i in (await conn.execute(query)).scalars())
        await self._upsert(conn, mn_participants, rows)
        await counts.adjust(conn, "mn_participants", len(ids - known))

    async def upsert_conferences(
        self, conn: AsyncConnection, rows: Sequence[dict[str, Any]]
    ) -> None:
        """Store conference records; a newer copy replaces the older one."""
        await self._upsert(conn, mn_conferences, rows)

    async def take_write_lock(self, conn: AsyncConnection) -> None:
        """On SQLite, make the transaction's first statement a write: one that read first
        could not write once the batch writer committed meanwhile (SQLite answers "database
        is locked" at once), while one that waits for the lock simply waits (busy_timeout).
        PostgreSQL locks rows as it writes them."""
        if self._dialect_name == "sqlite":
            await conn.exec_driver_sql("DELETE FROM mn_conferences WHERE id IS NULL")

    async def imported_by(
        self,
        conn: AsyncConnection,
        kind: str,
        ids: Sequence[str],
        source: str,
        imported_us: Sequence[int],
    ) -> dict[str, int]:
        """Of `ids`, those stored from `source` at one of the instants `imported_us` (an
        import in progress), each with its instant; `kind` is "participant" or
        "conference"."""
        table = mn_participants if kind == "participant" else mn_conferences
        found: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            query = select(table.c.id, table.c.imported_us).where(
                table.c.id.in_(ids[start : start + 500]),
                table.c.source == source,
                table.c.imported_us.in_(imported_us),
            )
            found.update((str(i), int(at)) for i, at in (await conn.execute(query)).all())
        return found

    async def checkpoint(self, conn: AsyncConnection, resource: str) -> tuple[str, int] | None:
        """(MN URL, end time in µs) up to which `resource` has been pulled, if ever."""
        row = (
            await conn.execute(
                select(pull_checkpoints.c.url, pull_checkpoints.c.end_us).where(
                    pull_checkpoints.c.resource == resource
                )
            )
        ).first()
        return None if row is None else (str(row[0]), int(row[1]))

    async def save_checkpoint(
        self, conn: AsyncConnection, resource: str, url: str, end_us: int, now_us: int
    ) -> None:
        """Move the pull checkpoint of `resource` forward."""
        values = {"resource": resource, "url": url, "end_us": end_us, "updated_us": now_us}
        insert = postgresql.insert if self._dialect_name == "postgresql" else sqlite.insert
        statement = insert(pull_checkpoints).values(values)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["resource"],
                set_={"url": url, "end_us": end_us, "updated_us": now_us},
            )
        )

    async def count_participants(self, conn: AsyncConnection) -> int:
        """MN participant records stored."""
        return int(
            (await conn.execute(select(func.count()).select_from(mn_participants))).scalar_one()
        )

    async def oldest_record(self, conn: AsyncConnection) -> tuple[int, str] | None:
        """(start in µs, source) of the oldest participant record held, if any."""
        row = (
            await conn.execute(
                select(mn_participants.c.start_us, mn_participants.c.source)
                .where(mn_participants.c.start_us.is_not(None))
                .order_by(mn_participants.c.start_us)
                .limit(1)
            )
        ).first()
        return None if row is None else (int(row[0]), str(row[1]))

    async def add_coverage(self, conn: AsyncConnection, values: dict[str, Any]) -> None:
        """Store one `history_coverage` row."""
        await conn.execute(history_coverage.insert().values(values))

    async def newest_coverage(self, conn: AsyncConnection) -> dict[str, Any] | None:
        """The `history_coverage` row with the latest "as of" (the latest recorded of ties),
        of the imports and pulls: a confirming pull read only its windows."""
        row = (
            await conn.execute(
                select(history_coverage)
                .where(history_coverage.c.kind != "confirm")
                .order_by(history_coverage.c.as_of_us.desc(), history_coverage.c.id.desc())
                .limit(1)
            )
        ).first()
        return None if row is None else dict(row._mapping)

    async def latest_coverage(self, conn: AsyncConnection) -> dict[str, Any] | None:
        """The `history_coverage` row recorded last: the newest import or pull."""
        row = (
            await conn.execute(
                select(history_coverage)
                .where(history_coverage.c.kind != "confirm")
                .order_by(history_coverage.c.id.desc())
                .limit(1)
            )
        ).first()
        return None if row is None else dict(row._mapping)

    async def reads_since(
        self, conn: AsyncConnection, as_of_us: int
    ) -> list[tuple[int | None, int | None]]:
        """The end_time windows (from, until) of the reads whose "as of" is `as_of_us` or
        later; None leaves a side unbounded."""
        rows = await conn.execute(
            select(history_coverage.c.from_us, history_coverage.c.until_us)
            .where(history_coverage.c.as_of_us >= as_of_us)
            .order_by(history_coverage.c.id)
        )
        return [
            (None if low is None else int(low), None if high is None else int(high))
            for low, high in rows
        ]

    async def add_pull_attempt(self, conn: AsyncConnection, values: dict[str, Any]) -> None:
        """Store one `pull_attempts` row and drop all but the newest PULL_ATTEMPTS_KEPT."""
        await conn.execute(pull_attempts.insert().values(values))
        newest = (await conn.execute(select(func.max(pull_attempts.c.id)))).scalar_one()
        await conn.execute(
            delete(pull_attempts).where(pull_attempts.c.id <= int(newest) - PULL_ATTEMPTS_KEPT)
        )

    async def last_pull_attempt(self, conn: AsyncConnection) -> dict[str, Any] | None:
        """The newest `pull_attempts` row."""
        row = (
            await conn.execute(select(pull_attempts).order_by(pull_attempts.c.id.desc()).limit(1))
        ).first()
        return None if row is None else dict(row._mapping)
