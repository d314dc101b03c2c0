"""The background checkpointer moves committed rows from the WAL into the database file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text

from app.db.checkpoint import WalCheckpointer
from app.db.engine import create_engine


def rows_in_database_file(path: Path) -> int:
    # immutable=1 reads the main file only, never the WAL: it sees checkpointed pages alone.
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 't'").fetchall():
            return 0
        return int(db.execute("SELECT count(*) FROM t").fetchone()[0])


async def test_committed_rows_reach_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        # The rows stay in the WAL: far below the engine's automatic checkpoint.
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (:x)"), [{"x": i} for i in range(500)])
        before = rows_in_database_file(path)
        checkpointer = WalCheckpointer.for_engine(engine)
        assert checkpointer is not None
        checkpointer.start()
        await checkpointer.stop()
        assert checkpointer.checkpoints >= 1
        assert (before, rows_in_database_file(path)) == (0, 500)
    finally:
        await engine.dispose()


def test_only_sqlite_files_get_one() -> None:
    assert WalCheckpointer.for_engine(create_engine("sqlite+aiosqlite:///:memory:")) is None
    postgres = create_engine("postgresql+asyncpg://u@127.0.0.1/db")
    assert WalCheckpointer.for_engine(postgres) is None
