"""The disk budget: how much the database takes and how much room is left, against
CDRECON_DISK_MIN_FREE_BYTES and CDRECON_DATABASE_MAX_BYTES. Crossing either is a warning
(/healthz, /metrics, the console) before anything stops; it never deletes anything."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings


@dataclass(frozen=True, slots=True)
class DiskState:
    """One measurement against the budget."""

    database_bytes: int
    # Free to this (unprivileged) process on the database's file system; None on PostgreSQL,
    # whose files are on the server's disk.
    free_bytes: int | None
    min_free_bytes: int
    database_max_bytes: int  # 0: no limit
    warnings: tuple[str, ...] = ()

    @property
    def exceeded(self) -> bool:
        """True when the database is over its size or its disk under its free space."""
        return bool(self.warnings)

    def as_json(self) -> dict[str, Any]:
        """The `disk` object of /healthz."""
        return {
            "database_bytes": self.database_bytes,
            "free_bytes": self.free_bytes,
            "min_free_bytes": self.min_free_bytes,
            "database_max_bytes": self.database_max_bytes,
            "exceeded": self.exceeded,
            "warnings": list(self.warnings),
        }


def judge(database_bytes: int, free_bytes: int | None, settings: Settings) -> DiskState:
    """The measurement against the settings' budget, with a sentence per line crossed."""
    warnings = []
    floor = settings.disk_min_free_bytes
    if free_bytes is not None and floor and free_bytes < floor:
        warnings.append(
            f"{free_bytes} bytes free on the database's disk, under "
            f"CDRECON_DISK_MIN_FREE_BYTES ({floor}): free space, or lower the retention days"
        )
    ceiling = settings.database_max_bytes
    if ceiling and database_bytes > ceiling:
        warnings.append(
            f"the database takes {database_bytes} bytes, over CDRECON_DATABASE_MAX_BYTES "
            f"({ceiling}): lower the retention days, or raise the limit"
        )
    return DiskState(database_bytes, free_bytes, floor, ceiling, tuple(warnings))


async def measure(engine: AsyncEngine, settings: Settings) -> DiskState:
    """Measure the database and its disk now and judge them against the budget."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            return judge(0, None, settings)
        size, free = await asyncio.to_thread(_sqlite_sizes, Path(database))
        return judge(size, free, settings)
    async with engine.connect() as conn:
        size = (
            await conn.exec_driver_sql("SELECT pg_database_size(current_database())")
        ).scalar_one()
    return judge(int(size), None, settings)


def _sqlite_sizes(database: Path) -> tuple[int, int]:
    """The SQLite file with its write-ahead log and shared memory, and the bytes free to
    us on its file system."""
    size = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            size += os.stat(f"{database}{suffix}").st_size
    disk = os.statvfs(database.parent)
    return size, disk.f_bavail * disk.f_frsize
