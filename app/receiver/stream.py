"""One syslog connection over TCP or TLS: read, frame, hand to the batch writer."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from app.ingest.origin import Origin
from parsers.framing import Framer

from .logging_limit import LimitedLog
from .tls import certificate_subject, peer_allowed

if TYPE_CHECKING:
    from .listeners import Receivers

log = logging.getLogger(__name__)
_peer_refusals = LimitedLog(log)
_handshake_failures = LimitedLog(log)
_tls_on_tcp = LimitedLog(log)

TLS_RECORD_START = b"\x16\x03"


def enable_keepalive(transport: asyncio.BaseTransport) -> None:
    """Find dead peers with TCP keepalive: we never close an idle connection ourselves,
    because a sender writing into a connection we closed loses what it writes next."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 6)
    except OSError:
        log.debug("could not set keepalive", exc_info=True)


class SyslogStreamProtocol(asyncio.Protocol):
    """Frames one TCP or TLS connection's bytes and submits them to the writer."""

    def __init__(self, receivers: Receivers, transport_name: str) -> None:
        self._receivers = receivers
        self._writer = receivers.writer
        self._metrics = receivers.metrics
        self._transport_name = transport_name
        self._framer = Framer(receivers.settings.max_frame_size)
        self._transport: asyncio.Transport | None = None
        self._origin = Origin(transport_name)
        self._first_data = True
        # start_tls hands over bytes, EOF and even the loss of the connection as soon as the
        # handshake ends, before it returns and connection_made is called: they wait here,
        # in order, until the peer is known and admitted.
        self._before_made: list[Callable[[], object]] | None = []
        self._refused = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        before_made, self._before_made = self._before_made or [], None
        self._admit(cast(asyncio.Transport, transport))
        for event in before_made:
            event()

    def _admit(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        peername = transport.get_extra_info("peername") or ("unknown", None)
        host, port = str(peername[0]), peername[1]
        subject = None
        if self._transport_name == "tls":
            peercert = transport.get_extra_info("peercert")
            subject = certificate_subject(peercert)
            if not peer_allowed(peercert, self._receivers.settings.allowed_peers):
                _peer_refusals.warning(
                    "TLS peer %s:%s refused: certificate %s not allowed", host, port, subject
                )
                self._metrics.connections_rejected.labels("tls", "peer_not_allowed").inc()
                self._refused = True
                transport.abort()
                return
        elif self._transport_name == "tcp" and not self._receivers.sources.allows(host):
            self._metrics.source_refused.labels("tcp").inc()
            self._metrics.connections_rejected.labels("tcp", "source_not_allowed").inc()
            transport.abort()
            return
        self._origin = Origin(self._transport_name, host, port, subject)
        if not self._receivers.admit(self, host):
            self._refused = True
            transport.abort()
            return
        enable_keepalive(transport)

    def data_received(self, data: bytes) -> None:
        if self._before_made is not None:
            self._before_made.append(partial(self.data_received, data))
            return
        if self._refused:
            return
        if self._first_data:
            self._first_data = False
            if self._transport_name == "tcp" and data.startswith(TLS_RECORD_START):
                _tls_on_tcp.warning(
                    "TLS handshake on the plain TCP port from %s", self._origin.peer
                )
        frames = self._framer.feed(data)
        if frames and self._writer.submit(self._origin, frames, time.time_ns() // 1000):
            assert self._transport is not None
            self._writer.hold(self._transport)

    def eof_received(self) -> bool | None:
        if self._before_made is not None:
            self._before_made.append(self.eof_received)
            return None
        self._flush_partial()
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._before_made is not None:
            self._before_made.append(partial(self.connection_lost, exc))
            return
        self._flush_partial()
        if self._transport is not None:
            self._writer.release(self._transport)
        self._receivers.forget(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def abort(self) -> None:
        """Give up on this connection (drain timeout): store what was read, then close."""
        self._flush_partial()
        if self._transport is not None:
            self._transport.abort()

    def _flush_partial(self) -> None:
        frames = self._framer.close()
        if not frames:
            return
        if any(frame.error for frame in frames):
            self._metrics.incomplete_at_close.labels(self._transport_name).inc()
        self._writer.submit(self._origin, frames, time.time_ns() // 1000)

    @property
    def transport_name(self) -> str:
        """tcp or tls."""
        return self._transport_name

    @property
    def host(self) -> str | None:
        """The peer address."""
        return self._origin.peer_host


class TlsAcceptor(asyncio.Protocol):
    """Accepts a TCP connection and does the TLS handshake itself, so that every failed
    handshake (no certificate, untrusted certificate, plain text on the TLS port, too slow)
    is logged with the peer and reason and counted; asyncio alone would swallow them. The
    connection counts against the limits from accept (`Receivers.admit_handshake`)."""

    def __init__(self, receivers: Receivers, context: ssl.SSLContext) -> None:
        self._receivers = receivers
        self._context = context
        self._transport: asyncio.Transport | None = None
        self.peer: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = raw = cast(asyncio.Transport, transport)
        raw.pause_reading()
        self.peer = peername = raw.get_extra_info("peername")
        host = str(peername[0]) if peername else "unknown"
        if not self._receivers.admit_handshake(self, host):
            raw.abort()
            return
        self._receivers.track(asyncio.ensure_future(self._handshake(raw)))

    def abort(self) -> None:
        """Give up on the handshake (too many in progress): close the connection."""
        if self._transport is not None:
            self._transport.abort()

    async def _handshake(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        settings = self._receivers.settings
        if transport.is_closing():
            # Given up before this task began: asyncio's TLS protocol on a closed transport
            # would wait for its own timeout, holding its 256 KiB buffer until then.
            self._receivers.handshake_ended(self)
            return
        protocol = SyslogStreamProtocol(self._receivers, "tls")
        try:
            async with asyncio.timeout(settings.tls_handshake_timeout):
                tls_transport = await loop.start_tls(
                    transport,
                    protocol,
                    self._context,
                    server_side=True,
                    # Ours above gives up first, and says so.
                    ssl_handshake_timeout=settings.tls_handshake_timeout + 5,
                )
        except (TimeoutError, OSError, EOFError) as exc:
            self._failed(exc)
            transport.abort()
            return
        finally:
            self._receivers.handshake_ended(self)
        if tls_transport is None:  # the peer went away as the handshake ended, or given up
            return
        protocol.connection_made(tls_transport)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            reason, label = "no handshake within CDRECON_TLS_HANDSHAKE_TIMEOUT", "handshake_timeout"
        else:
            reason, label = getattr(exc, "reason", None) or type(exc).__name__, "handshake_failed"
        _handshake_failures.warning("TLS handshake with %s failed: %s (%s)", self.peer, reason, exc)
        self._receivers.metrics.connections_rejected.labels("tls", label).inc()
