"""Syslog over UDP (RFC 5426): one datagram is one message."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from parsers.framing import Frame

from .sources import SourceFilter

log = logging.getLogger(__name__)


class SyslogDatagramProtocol(asyncio.DatagramProtocol):
    """Hands each datagram to the writer as one frame. The sender cannot be slowed down, but
    the socket can stop being read: when the writer refuses a host its share, reading stops
    until the queue drains, and the kernel drops what arrives meanwhile at no cost to the
    other senders (`cdrecon_udp_kernel_drops_total`)."""

    def __init__(
        self, writer: BatchWriter, max_frame_size: int, sources: SourceFilter, metrics: Metrics
    ) -> None:
        self._writer = writer
        self._max = max_frame_size
        self._sources = sources
        self._refused = metrics.source_refused.labels("udp")
        self._origins: dict[tuple[str, int], Origin] = {}
        self._transport: asyncio.ReadTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's datagram transport reads like a stream's (pause_reading, resume_reading),
        # though its class does not say it is an asyncio.DatagramTransport.
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._writer.release(self._transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        key = (str(addr[0]), int(addr[1]))
        origin = self._origins.get(key)
        if origin is None:
            if not self._sources.allows(key[0]):
                self._refused.inc()
                return
            if len(self._origins) > 10000:
                self._origins.clear()  # bound the cache of peers; rebuilt on demand
            origin = self._origins[key] = Origin("udp", key[0], key[1])
        data = data.rstrip(b"\r\n\x00")
        frame = Frame(data[: self._max], True) if len(data) > self._max else Frame(data)
        if self._writer.submit(origin, [frame], time.time_ns() // 1000):
            assert self._transport is not None
            self._writer.hold(self._transport)


def set_receive_buffer(sock: socket.socket, wanted: int) -> int:
    """Ask for a `wanted`-byte receive buffer; the bytes granted. Says in the log when the
    kernel granted less (it caps requests at net.core.rmem_max)."""
    if wanted > 0:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
        except OSError as exc:
            log.warning("cannot set the UDP receive buffer to %d bytes: %s", wanted, exc)
    # Linux reports twice the size asked for (the other half is its bookkeeping).
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if os.uname().sysname == "Linux":
        granted //= 2
    if 0 < granted < wanted:
        log.warning(
            "the UDP receive buffer is %d bytes, not the %d asked for "
            "(CDRECON_UDP_RECEIVE_BUFFER): the kernel caps it at net.core.rmem_max; "
            "raise it with `sysctl -w net.core.rmem_max=%d` or bursts will be dropped",
            granted,
            wanted,
            wanted,
        )
    return granted


def kernel_drops_reader(sock: socket.socket) -> Callable[[], int | None]:
    """A function that reads how many datagrams the kernel dropped on `sock`, from the
    `drops` column of /proc/net/udp (udp6), matched by the socket's inode; None where
    /proc does not say (not Linux)."""
    inode = str(os.fstat(sock.fileno()).st_ino)
    table = Path("/proc/net/udp6" if sock.family == socket.AF_INET6 else "/proc/net/udp")

    def read() -> int | None:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            return None
        for line in lines:
            fields = line.split()
            if len(fields) >= 13 and fields[9] == inode:
                return int(fields[12])
        return None

    return read
