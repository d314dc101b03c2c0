"""Notices a SQLite database file deleted, moved or replaced under the running service.

SQLite keeps writing to the file it opened even after its path is gone, and everything
stored then is lost when the process ends; a new connection would open (or create) whatever
is at the path now. So the file's identity (device, inode) is taken at start-up and the
path is compared with it: on every /healthz and every few seconds in the background, which
logs the first time it goes wrong.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHECK_INTERVAL = 5.0


class DatabaseFile:
    """The SQLite file the service opened, and whether its path still leads to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        status = os.stat(path)
        self._identity = (status.st_dev, status.st_ino)
        self._reported: str | None = None

    @classmethod
    def of(cls, database_url: str) -> DatabaseFile | None:
        """The file of a SQLite URL (which must exist); None for other databases."""
        url = make_url(database_url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return cls(Path(url.database).absolute())

    def problem(self) -> str | None:
        """Why the path no longer leads to the open file, or None; logged once when it starts."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            reason = f"the database file {self.path} (or its directory) was deleted or moved"
        except OSError as exc:
            reason = f"the database file {self.path} cannot be seen: {exc.strerror}"
        else:
            if (status.st_dev, status.st_ino) == self._identity:
                if self._reported is not None:
                    log.warning("the database file %s is back at its path", self.path)
                self._reported = None
                return None
            reason = f"the database file {self.path} was replaced by another file"
        reason += (
            " while cdrecon runs: it still writes to the file it opened, and what it stores "
            "is lost when it stops; put the file back, or stop cdrecon (SIGTERM) and restore"
        )
        if reason != self._reported:
            log.error("%s", reason)
            self._reported = reason
        return reason

    async def watch(self, interval: float = CHECK_INTERVAL) -> None:
        """Check every `interval` seconds until cancelled (each problem is logged once)."""
        while True:
            await asyncio.sleep(interval)
            self.problem()
