"""The disk budget: each line crossed is one warning, measured on both databases."""

from __future__ import annotations

import os

from app.config import Settings
from app.db.engine import create_engine
from app.retention.budget import judge, measure

GIB = 1024**3


def test_each_line_crossed_is_a_warning_and_none_crossed_is_none() -> None:
    budget = Settings(disk_min_free_bytes=2 * GIB, database_max_bytes=10 * GIB)
    assert not judge(5 * GIB, 3 * GIB, budget).exceeded
    low = judge(5 * GIB, GIB, budget)
    assert len(low.warnings) == 1 and "under CDRECON_DISK_MIN_FREE_BYTES" in low.warnings[0]
    both = judge(11 * GIB, GIB, budget)
    assert len(both.warnings) == 2 and "CDRECON_DATABASE_MAX_BYTES" in both.warnings[1]
    # No size limit by default; no free space known (PostgreSQL's disk is the server's).
    assert not judge(10**15, None, Settings()).exceeded


async def test_measure_sizes_the_database_on_both_kinds(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        state = await measure(engine, Settings(database_max_bytes=1))
    finally:
        await engine.dispose()
    assert state.database_bytes > 0 and state.exceeded
    if engine.dialect.name == "sqlite":
        size = os.stat(str(engine.url.database)).st_size
        assert state.database_bytes >= size
        assert state.free_bytes is not None and state.free_bytes > 0
    else:
        assert state.free_bytes is None
