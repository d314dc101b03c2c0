"""One pull of MN history over REST into the store: the CLI command and the scheduled job."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .client import HistoryClient, MNConnection
from .coverage import AsOf, record_confirmation, record_pull
from .repository import HistoryRepository
from .service import HistoryImport, confirm, pull

log = logging.getLogger(__name__)

ERROR_MAX = 2000  # characters of a failed pull's error kept


async def pull_once(
    engine: AsyncEngine,
    url: str,
    user: str,
    password: str,
    ca_bundle: Path | None = None,
    since: datetime | None = None,
) -> tuple[HistoryImport, AsOf]:
    """Pull everything written since the checkpoint (or `since`) and store it through the
    process's engine (on SQLite a second engine would fight the writer for the lock); what
    was stored, and the "as of" recorded for it once it is complete (when it started)."""
    connection = MNConnection(url=url, username=user, password=password, ca_bundle=ca_bundle)
    started_us = time.time_ns() // 1000
    try:
        async with HistoryClient(connection) as client:
            stored = await pull(engine, client.page, url, HistoryClient.window_filters, since)
        # Complete: the MN's history is stored up to when the pull started.
        async with engine.begin() as conn:
            as_of = await record_pull(conn, url, started_us, stored)
            records = stored.participants + stored.conferences
            await _attempted(conn, url, started_us, records, None)
        return stored, as_of
    except Exception as exc:
        await _failed(engine, url, started_us, exc)
        raise


async def confirm_once(
    connection: MNConnection, engine: AsyncEngine, windows: Sequence[tuple[int, int]]
) -> HistoryImport:
    """Read the MN's participant records ending in each window [from, until) (µs) again
    and store them, recording each window as read as of when this started once it is
    stored (the confirmation a run's lost records need, `coverage.Coverage.confirms`). A
    window that fails records nothing: its records stay unconfirmed."""
    started_us = time.time_ns() // 1000
    total = HistoryImport(connection.url)
    async with HistoryClient(connection) as client:
        for window in windows:
            stored = await confirm(
                engine, client.page, connection.url, HistoryClient.window_filters, [window]
            )
            async with engine.begin() as conn:
                await record_confirmation(
                    conn, connection.url, started_us, window, stored.participants
                )
            total.participants += stored.participants
    return total


async def _attempted(
    conn: AsyncConnection, url: str, started_us: int, records: int | None, error: str | None
) -> None:
    await HistoryRepository.for_connection(conn).add_pull_attempt(
        conn,
        {
            "started_us": started_us,
            "finished_us": time.time_ns() // 1000,
            "url": url,
            "records": records,
            "error": error,
        },
    )


async def _failed(engine: AsyncEngine, url: str, started_us: int, exc: Exception) -> None:
    """Keep a failed pull's error for the console; when even that cannot be stored (the
    database is the failure), the log has it."""
    error = (str(exc) or type(exc).__name__)[:ERROR_MAX]
    try:
        async with engine.begin() as conn:
            await _attempted(conn, url, started_us, None, error)
    except Exception:
        log.warning("could not record the failed pull from %s", url, exc_info=True)


async def pull_forever(
    engine: AsyncEngine,
    url: str,
    user: str,
    password: str,
    ca_bundle: Path | None,
    interval: float,
    after_pull: Callable[[AsOf], Awaitable[None]] | None = None,
) -> None:
    """Pull every `interval` seconds until cancelled; a failed pull is logged and retried.
    `after_pull` is awaited after each successful pull with its "as of" (the watch)."""
    while True:
        try:
            result, as_of = await pull_once(engine, url, user, password, ca_bundle)
            log.info(
                "pulled %d participant and %d conference records from %s; %s",
                result.participants,
                result.conferences,
                url,
                as_of.describe(),
            )
        except Exception:
            log.exception("pulling MN history from %s failed; next try in %.0fs", url, interval)
        else:
            if after_pull is not None:
                try:
                    await after_pull(as_of)
                except Exception:
                    # Whatever follows a pull must not end the schedule.
                    log.exception("the work after pulling MN history from %s failed", url)
        await asyncio.sleep(interval)
