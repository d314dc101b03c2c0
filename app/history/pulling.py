"""One pull of MN history over REST into the store: the CLI command and the scheduled job."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from .client import HistoryClient, MNConnection
from .service import HistoryImport, pull

log = logging.getLogger(__name__)


async def pull_once(
    engine: AsyncEngine,
    url: str,
    user: str,
    password: str,
    ca_bundle: Path | None = None,
    since: datetime | None = None,
) -> HistoryImport:
    """Pull everything written since the checkpoint (or `since`) and store it through the
    process's engine (on SQLite a second engine would fight the writer for the lock)."""
    connection = MNConnection(url=url, username=user, password=password, ca_bundle=ca_bundle)
    async with HistoryClient(connection) as client:
        return await pull(engine, client.page, url, HistoryClient.window_filters, since)


async def pull_forever(
    engine: AsyncEngine, url: str, user: str, password: str, ca_bundle: Path | None, interval: float
) -> None:
    """Pull every `interval` seconds until cancelled; a failed pull is logged and retried."""
    while True:
        try:
            result = await pull_once(engine, url, user, password, ca_bundle)
            log.info(
                "pulled %d participant and %d conference records from %s",
                result.participants,
                result.conferences,
                url,
            )
        except Exception:
            log.exception("pulling MN history from %s failed; next try in %.0fs", url, interval)
        await asyncio.sleep(interval)
