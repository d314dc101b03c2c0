"""The leanest CPython syslog receiver we could write that still stores every message,
parsed, in cdrecon's raw store: a yardstick for what Python itself allows, not a product.

Why
    Issue 2 asks cdrecon to store messages, durably and parsed, at least as fast as syslog-ng
    copies them to a file. This receiver measures how close *any* CPython receiver can get
    on this machine, next to syslog-ng and cdrecon in the same run (bench.ingest,
    receiver `python-lean`).

What it does, per message, and nothing else
    * frames RFC 6587 octet-counted frames from an asyncio Protocol (the benchmark's framing;
      no LF framing, no size limit, no error recovery);
    * splits the RFC 5424 header on spaces (PRI, version, timestamp, host, app, procid,
      msgid), takes the timestamp with `datetime.fromisoformat` (checking it, as cdrecon's
      parser does), treats structured data as `-` (the benchmark's lines have none);
    * packs the frame as cdrecon stores it (`app.db.packing.pack`);
    * appends a row with the columns of cdrecon's `messages` table, and every 5,000 messages
      (or 20 ms) inserts them with one `executemany` and commits, on the event loop's own
      thread, so reading simply stops while SQLite writes: that is its back-pressure.

    It keeps no events and no CDRs, no per-node tallies, no metrics, and it never checks a
    frame. cdrecon does all of those, so this is an upper bound for the raw store alone.
    The database must exist with cdrecon's schema (`cdrecon db upgrade`); the pragmas are
    cdrecon's. SIGTERM commits what was read and exits 0.

Run:  python -m bench.lean_receiver --db bench.db --port 5514 [--tls-cert C --tls-key K]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sqlite3
import ssl
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from app.db.packing import pack
from bench.floor import PRAGMAS

BATCH = 5000
LINGER = 0.02
INSERT = (
    "INSERT INTO messages (received_us, transport, peer_host, peer_port, tls_subject, format, "
    "hostname, msg_offset, truncated, error, raw, packed, source, digest) "
    "VALUES (?, ?, ?, ?, NULL, 'rfc5424', ?, ?, 0, NULL, ?, ?, NULL, NULL)"
)


class Store:
    """Rows waiting for the next commit, and the connection they go through."""

    def __init__(self, database: Path) -> None:
        self.conn = sqlite3.connect(database, isolation_level=None)
        for pragma in PRAGMAS:
            self.conn.execute(pragma)
        self.rows: list[tuple[Any, ...]] = []
        self.stored = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, transport: str, peer: tuple[str, int], frames: list[bytes]) -> None:
        """Parse `frames` into rows; commit once a batch is full, or soon."""
        received_us = time.time_ns() // 1000
        host, port = peer
        append = self.rows.append
        fromiso = datetime.fromisoformat
        for frame in frames:
            head, stamp, hostname, _app, _procid, _msgid, rest = frame.split(b" ", 6)
            int(head[1 : head.index(b">")])
            fromiso(stamp.decode())
            append(
                (
                    received_us,
                    transport,
                    host,
                    port,
                    hostname.decode(),
                    len(frame) - len(rest) + 2,  # the message starts after "- "
                    *pack(frame),
                )
            )
        if len(self.rows) >= BATCH:
            self.commit()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LINGER, self.commit)

    def commit(self) -> None:
        """Insert and commit every waiting row."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.rows:
            return
        self.conn.execute("BEGIN")
        self.conn.executemany(INSERT, self.rows)
        self.conn.execute("COMMIT")
        self.stored += len(self.rows)
        self.rows = []


class OctetCounted(asyncio.Protocol):
    """Cuts RFC 6587 octet-counted frames out of one connection's bytes."""

    def __init__(self, store: Store, transport_name: str) -> None:
        self.store = store
        self.name = transport_name
        self.buffer = bytearray()
        self.peer: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.peer = transport.get_extra_info("peername")[:2]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        frames = []
        pos, size = 0, len(buffer)
        while True:
            space = buffer.find(b" ", pos, pos + 12)
            if space < 0:
                break
            end = space + 1 + int(buffer[pos:space])
            if end > size:
                break
            frames.append(bytes(buffer[space + 1 : end]))
            pos = end
        del buffer[:pos]
        if frames:
            self.store.add(self.name, self.peer, frames)


async def serve(args: argparse.Namespace) -> None:
    """Receive until SIGTERM, then commit what was read."""
    loop = asyncio.get_running_loop()
    store = Store(args.db)
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        # As cdrecon (bench/README.md, "TLS messages lost when the sender closed"): loggen
        # never reads, so unread session tickets would turn its close into a RST.
        context.num_tickets = 0
    name = "tls" if context else "tcp"
    server = await loop.create_server(
        lambda: OctetCounted(store, name), "127.0.0.1", args.port, ssl=context, backlog=128
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"lean receiver listening on 127.0.0.1:{args.port} ({name})", flush=True)
    await stop.wait()
    server.close()
    store.commit()
    store.conn.close()
    print(f"lean receiver stored {store.stored} messages", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="a database at cdrecon's schema")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
