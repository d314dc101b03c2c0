"""Syslog over UDP (RFC 5426): one datagram is one message."""

from __future__ import annotations

import asyncio
import time

from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from parsers.framing import Frame


class SyslogDatagramProtocol(asyncio.DatagramProtocol):
    """Hands each datagram to the writer as one frame (UDP cannot be paused)."""

    def __init__(self, writer: BatchWriter, max_frame_size: int) -> None:
        self._writer = writer
        self._max = max_frame_size
        self._origins: dict[tuple[str, int], Origin] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        key = (str(addr[0]), int(addr[1]))
        origin = self._origins.get(key)
        if origin is None:
            if len(self._origins) > 10000:
                self._origins.clear()  # bound the cache of peers; rebuilt on demand
            origin = self._origins[key] = Origin("udp", key[0], key[1])
        data = data.rstrip(b"\r\n\x00")
        frame = Frame(data[: self._max], True) if len(data) > self._max else Frame(data)
        self._writer.submit(origin, [frame], time.time_ns() // 1000)
