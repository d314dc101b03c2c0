"""A request that cannot get the database's lock in time answers 503 `database_busy` with
Retry-After at once, changes nothing, and the same request works once the lock is free."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import Service

PARTICIPANT = (
    Path(__file__).parents[1]
    / "fixtures"
    / "history"
    / "history_participant_object.pexip-docs-example.json"
)


@asynccontextmanager
async def history_locked(database_url: str) -> AsyncIterator[None]:
    """Another connection holds SQLite's write lock, or an exclusive lock on PostgreSQL's
    `mn_participants` (reads go on; writes wait)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        lock = sqlite3.connect(url.database, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lock.rollback()
            lock.close()
        return
    conn = await asyncpg.connect(
        url.set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE mn_participants IN EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Service]:
    service = Service(
        tmp_path,
        env={"CDRECON_DATABASE_URL": database_url, "CDRECON_REQUEST_DATABASE_WAIT": "0.5"},
    )
    service.start()
    yield service
    service.stop()


async def test_a_request_that_cannot_get_the_lock_answers_busy_and_changes_nothing(
    served: Service, database_url: str
) -> None:
    token = served.token()  # before the lock: creating it writes
    async with history_locked(database_url):
        busy = served.post("/api/v1/history", token=token, content=PARTICIPANT.read_bytes())
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"] == "database_busy"
        assert busy.headers["Retry-After"] == "1"
        # Reads go on meanwhile.
        assert served.get("/api/v1/audit", token=token).status_code == 200
    stored = served.post("/api/v1/history", token=token, content=PARTICIPANT.read_bytes())
    assert stored.status_code == 200, stored.text
    audit = served.get("/api/v1/audit", token=token).json()["items"]
    assert [entry["action"] for entry in audit].count("history.import") == 1
