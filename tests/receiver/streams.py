"""Sending to a served `cdrecon serve` over plain TCP, and stopping its database's writes."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def send(port: int, payload: bytes) -> None:
    """Send `payload` over one TCP connection to 127.0.0.1 and close it."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(payload)


@contextmanager
def database_locked(path: Path) -> Iterator[None]:
    """Another connection holds the SQLite file's write lock: nothing commits meanwhile."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
