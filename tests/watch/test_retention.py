"""Retention keeps what an open alert is about, and lets it go once the alert is cleared."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.history.coverage import Kind, import_export
from app.retention.policy import Policy
from app.retention.service import prune
from app.watch.service import acknowledge, record_vanished
from tests.reconcile.loading import us
from tests.watch.test_watch import ingest
from tests.watch.timeline import mn_record, recent_calls


async def test_retention_keeps_an_open_restore_alerts_records_until_it_is_cleared(
    database_url: str,
) -> None:
    calls = recent_calls(6, datetime.now(UTC) - timedelta(days=30), timedelta(minutes=4))
    engine = create_engine(database_url)
    try:
        await ingest(engine, calls)
        async with engine.begin() as conn:
            await import_export(conn, json.dumps([mn_record(c) for c in calls]), "mn", Kind.FILE)
        named = {c.pid: us(c.end) for c in calls[2:4]}
        now_us = time.time_ns() // 1000
        [notice] = await record_vanished(engine, "https://mn", named, us(calls[0].start), now_us)
        policy = Policy(messages_days=1, billing_days=1, batch_rows=2)

        await prune(engine, policy, rest=False)
        assert await _ids(engine, "mn_participants") == sorted(named)
        assert await _ids(engine, "cdrs") == sorted(named)

        async with engine.begin() as conn:
            await acknowledge(conn, notice.alert["id"], "ops", now_us)
        await prune(engine, policy, rest=False)
        assert await _ids(engine, "mn_participants") == []
        assert await _ids(engine, "cdrs") == []
    finally:
        await engine.dispose()


async def _ids(engine: AsyncEngine, table: str) -> list[str]:
    async with engine.connect() as conn:
        return sorted(str(i) for (i,) in await conn.execute(text(f"SELECT id FROM {table}")))
