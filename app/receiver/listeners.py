"""Starts the configured syslog listeners, enforces connection limits, drains them on stop."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Callable
from typing import Any

from app.config import ListenAddress, Settings, cannot_listen
from app.ingest.writer import BatchWriter
from app.metrics import Metrics

from .datagram import SyslogDatagramProtocol, kernel_drops_reader, set_receive_buffer
from .logging_limit import LimitedLog
from .sources import SourceFilter
from .stream import SyslogStreamProtocol, TlsAcceptor
from .tls import server_context

log = logging.getLogger(__name__)
_refusals = LimitedLog(log)


class Receivers:
    """The running syslog listeners and their open connections."""

    def __init__(self, settings: Settings, writer: BatchWriter, metrics: Metrics) -> None:
        self.settings = settings
        self.writer = writer
        self.metrics = metrics
        self.sources = SourceFilter(settings.syslog_allow_networks)
        self._servers: list[asyncio.Server] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._connections: set[SyslogStreamProtocol] = set()
        self._per_host: Counter[str] = Counter()
        self._transport_of: dict[SyslogStreamProtocol, str] = {}
        # TLS connections whose handshake is in progress, oldest first, with their peer
        # address: they count against the connection limits from accept.
        self._handshakes: dict[TlsAcceptor, str] = {}
        # Where each listener actually bound (port 0 in the settings picks a free one).
        self.bound: dict[str, tuple[str, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a reference to a background task (TLS handshake) until it finishes."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        """Open every configured listener; a `StartupError` names the one that cannot open."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        # The certificate first: a bad one stops the start before any port opens.
        context = None
        if settings.tls_address is not None:
            assert settings.tls_cert is not None
            context = server_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        if settings.tcp_address is not None:
            await self._start_stream("tcp", settings.tcp_address, None)
        if settings.tls_address is not None and context is not None:
            await self._start_stream("tls", settings.tls_address, context)
        if settings.udp_address is not None:
            address = settings.udp_address
            sock = self._bind_udp(address)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: SyslogDatagramProtocol(
                    self.writer, settings.max_frame_size, self.sources, self.metrics
                ),
                sock=sock,
            )
            self._udp = transport
            sockname = sock.getsockname()
            self.bound["udp"] = (str(sockname[0]), int(sockname[1]))
            log.info("syslog UDP listening on %s:%d", *self.bound["udp"])

    def _bind_udp(self, address: ListenAddress) -> socket.socket:
        """The UDP socket, its receive buffer sized before the first datagram arrives."""
        try:
            family, kind, proto, _, sockaddr = socket.getaddrinfo(
                address.host, address.port, type=socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise cannot_listen("syslog UDP", "CDRECON_SYSLOG_UDP", address, exc) from exc
        try:
            granted = set_receive_buffer(sock, self.settings.udp_receive_buffer)
            sock.bind(sockaddr)
        except OSError as exc:
            sock.close()
            raise cannot_listen("syslog UDP", "CDRECON_SYSLOG_UDP", address, exc) from exc
        self.metrics.udp_receive_buffer.set(granted)
        self.metrics.count_udp_kernel_drops(kernel_drops_reader(sock))
        return sock

    async def _start_stream(
        self, name: str, address: ListenAddress, context: ssl.SSLContext | None
    ) -> None:
        loop = asyncio.get_running_loop()
        factory: Callable[[], asyncio.Protocol]
        if context is None:
            factory = lambda: SyslogStreamProtocol(self, name)  # noqa: E731
        else:
            factory = lambda: TlsAcceptor(self, context)  # noqa: E731
        try:
            server = await loop.create_server(
                factory, address.host, address.port, backlog=1024, reuse_address=True
            )
        except OSError as exc:
            what, setting = f"syslog {name.upper()}", f"CDRECON_SYSLOG_{name.upper()}"
            raise cannot_listen(what, setting, address, exc) from exc
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        self.bound[name] = (str(sockname[0]), int(sockname[1]))
        log.info("syslog %s listening on %s:%d", name.upper(), *self.bound[name])

    def admit(self, connection: SyslogStreamProtocol, host: str) -> bool:
        """Count a new connection in, unless it is over a limit (then it is refused)."""
        name = connection.transport_name
        if self._refused(name, host):
            return False
        self._connections.add(connection)
        self._per_host[host] += 1
        self._transport_of[connection] = name
        self.metrics.connections.labels(name).inc()
        self.metrics.connections_open.labels(name).inc()
        return True

    def admit_handshake(self, acceptor: TlsAcceptor, host: str) -> bool:
        """Count a TLS connection in as it is accepted, before its handshake, unless it is
        over a connection limit. At `CDRECON_TLS_MAX_HANDSHAKES` handshakes in progress the
        oldest is given up: a peer holding idle handshakes cannot keep good senders out, and
        what handshakes cost in memory stays bounded."""
        if self._refused("tls", host):
            return False
        if len(self._handshakes) >= self.settings.tls_max_handshakes:
            oldest = next(iter(self._handshakes))
            self.handshake_ended(oldest)
            _refusals.warning("TLS handshake with %s given up: max_handshakes", oldest.peer)
            self.metrics.connections_rejected.labels("tls", "max_handshakes").inc()
            oldest.abort()
        self._handshakes[acceptor] = host
        self._per_host[host] += 1
        self.metrics.tls_handshakes.set(len(self._handshakes))
        return True

    def handshake_ended(self, acceptor: TlsAcceptor) -> None:
        """Count a handshake out (it succeeded, failed or was given up); a connection that
        follows is counted in by `admit`."""
        host = self._handshakes.pop(acceptor, None)
        if host is None:
            return
        self._uncount_host(host)
        self.metrics.tls_handshakes.set(len(self._handshakes))

    def _refused(self, name: str, host: str) -> bool:
        """Whether a new connection from `host` is over a limit (then logged and counted)."""
        if len(self._connections) + len(self._handshakes) >= self.settings.max_connections:
            reason = "max_connections"
        elif self._per_host[host] >= self.settings.max_connections_per_host:
            reason = "max_connections_per_host"
        else:
            return False
        _refusals.warning("%s connection from %s refused: %s", name.upper(), host, reason)
        self.metrics.connections_rejected.labels(name, reason).inc()
        return True

    def _uncount_host(self, host: str) -> None:
        self._per_host[host] -= 1
        if self._per_host[host] <= 0:
            del self._per_host[host]

    def forget(self, connection: SyslogStreamProtocol) -> None:
        """Count a closed connection out."""
        name = self._transport_of.pop(connection, None)
        if name is None:
            return
        self._connections.discard(connection)
        self._uncount_host(connection.host or "")
        self.metrics.connections_open.labels(name).dec()

    @property
    def open_connections(self) -> int:
        """Connections currently open."""
        return len(self._connections)

    async def stop(self, drain_timeout: float) -> None:
        """Stop accepting, read open connections until they close or the timeout, then close."""
        for server in self._servers:
            server.close()
        if self._tasks:
            # Handshakes in progress become connections to drain, or fail.
            await asyncio.wait(list(self._tasks), timeout=max(drain_timeout, 1.0))
        if self._connections and drain_timeout > 0:
            log.info(
                "draining %d syslog connections (up to %.0fs)",
                len(self._connections),
                drain_timeout,
            )
            waiters: list[Any] = [c.closed for c in self._connections]
            _, pending = await asyncio.wait(waiters, timeout=drain_timeout)
            if pending:
                log.warning("%d connections still open after the drain timeout", len(pending))
        for connection in list(self._connections):
            connection.abort()
        for server in self._servers:
            await server.wait_closed()
        if self._udp is not None:
            self._udp.close()
        self._servers.clear()
