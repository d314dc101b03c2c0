"""TLS connections count from accept: idle handshakes are bounded in number and time, and
counted, while a good sender still gets through. A real `cdrecon serve` and real sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import trustme

from tests.conftest import Service
from tests.receiver.tls import send_tls, tls_client, tls_service


def good_frames(count: int) -> bytes:
    return b"".join(
        b"%d %s" % (len(m), m)
        for m in (
            b"<134>1 2026-11-26T10:00:00.000Z conf-node-01 pexip - - - good %d" % i
            for i in range(count)
        )
    )


@pytest.fixture
def idle() -> Iterator[ExitStack]:
    """Sockets the test opens; closed after it."""
    with ExitStack() as stack:
        yield stack


def open_idle(service: Service, stack: ExitStack, count: int) -> list[socket.socket]:
    """`count` TCP connections to the TLS port that never start a handshake."""
    return [
        stack.enter_context(socket.create_connection(("127.0.0.1", service.tls_port)))
        for _ in range(count)
    ]


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed `sock` (waits for it up to 30 s)."""
    sock.settimeout(30)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_idle_handshakes_past_the_cap_are_given_up_and_a_good_sender_gets_through(
    service: Service, ca: trustme.CA, tmp_path: Path, idle: ExitStack
) -> None:
    cap, count = 8, 50
    service.env.update(CDRECON_TLS_MAX_HANDSHAKES=str(cap), CDRECON_TLS_HANDSHAKE_TIMEOUT="600")
    tls_service(service, ca, tmp_path)
    sockets = open_idle(service, idle, count)
    given_up = service.wait_for(
        "cdrecon_connections_rejected_total", count - cap, transport="tls", reason="max_handshakes"
    )
    assert given_up == count - cap
    assert service.metric("cdrecon_tls_handshakes_in_progress") == cap
    assert closed_by_server(sockets[0])  # the oldest go first
    # Each is counted; the log tells of the first few only (app/receiver/logging_limit.py).
    assert 0 < service.log.count("given up: max_handshakes") <= 10
    # A sender that handshakes at once is not kept out by the idle ones.
    send_tls(service, tls_client(ca, tmp_path, "conf-node-01.example.com"), good_frames(100))
    assert service.wait_for("cdrecon_messages_stored_total", 100, transport="tls") == 100
    # It took the place of the oldest idle one, and is a connection now.
    assert service.metric("cdrecon_tls_handshakes_in_progress") == cap - 1
    assert service.metric("cdrecon_connections_rejected_total", reason="max_handshakes") == (
        count - cap + 1
    )


def test_handshakes_count_against_the_per_host_limit_from_accept(
    service: Service, ca: trustme.CA, tmp_path: Path, idle: ExitStack
) -> None:
    service.env.update(CDRECON_MAX_CONNECTIONS_PER_HOST="5", CDRECON_TLS_HANDSHAKE_TIMEOUT="600")
    tls_service(service, ca, tmp_path)
    sockets = open_idle(service, idle, 10)
    refused = service.wait_for(
        "cdrecon_connections_rejected_total", 5, transport="tls", reason="max_connections_per_host"
    )
    assert refused == 5
    assert service.metric("cdrecon_tls_handshakes_in_progress") == 5
    assert closed_by_server(sockets[-1])
    # The idle ones leave, and their places are free again.
    for sock in sockets:
        sock.close()
    assert service.wait_for("cdrecon_connections_rejected_total", 5, reason="handshake_failed") == 5
    assert service.metric("cdrecon_tls_handshakes_in_progress") == 0
    send_tls(service, tls_client(ca, tmp_path, "conf-node-01.example.com"), good_frames(10))
    assert service.wait_for("cdrecon_messages_stored_total", 10, transport="tls") == 10


def test_handshakes_that_never_come_are_timed_out_or_given_up_each_counted_once(
    service: Service, ca: trustme.CA, tmp_path: Path, idle: ExitStack
) -> None:
    count = 20
    service.env.update(CDRECON_TLS_HANDSHAKE_TIMEOUT="0.5", CDRECON_TLS_MAX_HANDSHAKES="4")
    tls_service(service, ca, tmp_path)
    sockets = open_idle(service, idle, count)
    assert all(closed_by_server(sock) for sock in sockets)
    timed_out = service.metric("cdrecon_connections_rejected_total", reason="handshake_timeout")
    given_up = service.metric("cdrecon_connections_rejected_total", reason="max_handshakes")
    assert timed_out >= 1  # the last ones, at least, had no newer ones to give way to
    assert timed_out + given_up == count
    assert service.metric("cdrecon_tls_handshakes_in_progress") == 0
    assert "CDRECON_TLS_HANDSHAKE_TIMEOUT" in service.log
