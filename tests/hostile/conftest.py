"""Fixtures of the hostile tests: a database that refuses chosen rows, as a database might
refuse a value nobody foresaw."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine

# Makes the database refuse rows of `table` where the SQL condition on NEW/the row holds.
Refuse = Callable[[str, str], Awaitable[None]]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def refuse(engine: AsyncEngine) -> AsyncIterator[Refuse]:
    """On SQLite a trigger raising ABORT, on PostgreSQL a CHECK constraint: both an
    IntegrityError, as any constraint would be. PostgreSQL's are dropped after the test (its
    database serves the whole session)."""
    added: list[tuple[str, str]] = []

    async def install(table: str, condition: str) -> None:
        name = f"refuse_{len(added)}"
        async with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                for when in ("INSERT", "UPDATE"):
                    row = condition.replace("{row}", "NEW.")
                    await conn.execute(
                        text(
                            f"CREATE TRIGGER {name}_{when.lower()} BEFORE {when} ON {table} "
                            f"WHEN {row} BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
                        )
                    )
            else:
                row = condition.replace("{row}", "")
                await conn.execute(
                    text(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK (NOT ({row})) NOT VALID")
                )
        added.append((table, name))

    yield install
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            for table, name in added:
                await conn.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT {name}"))
