"""A connection that reads one consistent snapshot of the database and writes nothing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@contextlib.asynccontextmanager
async def read_snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a read transaction: every query sees the database as it was at the
    first one, whatever commits meanwhile, and none waits for or holds up a writer.

    SQLite in WAL mode gives a read transaction that snapshot (from its first read) and
    never blocks the one writer. PostgreSQL needs REPEATABLE READ for it (READ COMMITTED
    sees each statement's own), read-only so that nothing can write through it."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = await conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        async with conn.begin():
            yield conn
