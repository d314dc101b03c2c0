"""One pull of MN history over REST into the store: the CLI command and the scheduled job."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from .client import HistoryClient, MNConnection
from .coverage import AsOf, record_pull
from .service import HistoryImport, pull

log = logging.getLogger(__name__)


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
    async with HistoryClient(connection) as client:
        stored = await pull(engine, client.page, url, HistoryClient.window_filters, since)
    # Complete: the MN's history is stored up to when the pull started.
    async with engine.begin() as conn:
        return stored, await record_pull(conn, url, started_us, stored)


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
