"""Fixtures of the hostile tests: a real serve, a database that refuses chosen rows (as a
database might refuse a value nobody foresaw) or takes no writes for a while."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cdr.conftest import engine  # noqa: F401  (the same real database)
from tests.conftest import CDRECON, Service, writes_held

# Makes the database refuse rows of `table` where the SQL condition on NEW/the row holds.
Refuse = Callable[[str, str], Awaitable[None]]


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Service]:
    service = Service(tmp_path, env={"CDRECON_DATABASE_URL": database_url})
    service.start()
    yield service
    if service.process is not None:
        try:
            service.stop()
        except subprocess.TimeoutExpired:
            # A writer stuck on a batch never finishes a SIGTERM: the test has failed already.
            service.process.kill()
            service.process.wait()


@pytest.fixture
async def refuse(engine: AsyncEngine) -> AsyncIterator[Refuse]:  # noqa: F811
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


def writes_blocked(database_url: str) -> AbstractAsyncContextManager[None]:
    """Hold the database's writes (on PostgreSQL, `messages`) from another connection, as a
    stuck or failing database would."""
    return writes_held(database_url, "messages")


def rebuild(database_url: str) -> str:
    """Run `cdrecon rebuild` on the database; what it printed."""
    rebuilt = subprocess.run(
        [CDRECON, "rebuild"],
        env={**os.environ, "CDRECON_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    return rebuilt.stdout
