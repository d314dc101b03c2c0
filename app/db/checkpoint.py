"""Copies SQLite's write-ahead log back into the database file from a thread of its own.

SQLite's own checkpoint runs inside the commit that passes `wal_autocheckpoint`: the batch
writer would stop to copy pages and fsync both files, tens of milliseconds every few batches,
with the second CPU idle. Checkpointing from another connection on a worker thread (sqlite3
releases the GIL) lets the writer go on committing meanwhile; the writer's automatic
checkpoint stays as the backstop (engine.py) for when this one falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


class WalCheckpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` every `interval` seconds until stopped."""

    def __init__(self, path: str, interval: float = 0.25) -> None:
        self.path = path
        self.interval = interval
        self.checkpoints = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._connection: sqlite3.Connection | None = None

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> WalCheckpointer | None:
        """A checkpointer for the engine's database file; None if it is not a SQLite file."""
        url = engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return cls(str(url.database))

    def start(self) -> None:
        """Start checkpointing in the background."""
        self._task = asyncio.create_task(self._run(), name="cdrecon-wal-checkpointer")

    async def stop(self) -> None:
        """Stop, after one last checkpoint of everything committed so far."""
        if self._task is None:
            return
        self._stopping.set()
        await self._task
        self._task = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            try:
                await asyncio.to_thread(self._checkpoint)
            except sqlite3.Error:
                # A busy or locked database: the next round, or the writer's own, catches up.
                log.debug("background checkpoint failed", exc_info=True)
            if self._stopping.is_set():
                return

    def _checkpoint(self) -> None:
        if self._connection is None:
            self._connection = sqlite3.connect(
                self.path, timeout=1, isolation_level=None, check_same_thread=False
            )
        self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.checkpoints += 1
