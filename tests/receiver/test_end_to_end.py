"""End to end: real `cdrecon serve`, real senders (util-linux logger, Python TLS client)."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import trustme

from app.db.packing import unpack
from tests.conftest import Service
from tests.receiver.tls import send_tls, tls_client, tls_service


def rows(service: Service, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(service.db_path) as db:
        return db.execute(sql).fetchall()


def send_logger(logger: str, service: Service, *args: str) -> None:
    subprocess.run([logger, "-n", "127.0.0.1", *args], check=True, timeout=30, capture_output=True)


def test_logger_over_tcp_octet_counted_rfc5424_is_stored_parsed(
    service: Service, logger_path: str
) -> None:
    service.start()
    send_logger(
        logger_path,
        service,
        "--tcp",
        "--octet-count",
        "--rfc5424",
        "-P",
        str(service.tcp_port),
        "-t",
        "pexip",
        "--msgid",
        "ADMIN",
        "hello over tcp",
    )
    assert service.wait_for("cdrecon_messages_stored_total", 1, transport="tcp") == 1
    [(fmt, transport, raw, packed, offset, error)] = rows(
        service, "select format, transport, raw, packed, msg_offset, error from messages"
    )
    assert (fmt, transport, error) == ("rfc5424", "tcp", None)
    frame = unpack(raw, packed)
    assert frame[offset:] == b"hello over tcp"
    assert b" pexip - ADMIN " in frame[:offset]
    stats = service.get("/api/v1/stats").json()
    assert stats["messages"] == 1
    assert stats["parse_failures"] == 0


def test_logger_rfc3164_over_tcp_and_udp_are_stored(service: Service, logger_path: str) -> None:
    service.start()
    send_logger(
        logger_path,
        service,
        "--tcp",
        "--rfc3164",
        "-P",
        str(service.tcp_port),
        "-t",
        "bsdapp",
        "old style",
    )
    send_logger(
        logger_path,
        service,
        "--udp",
        "--rfc5424",
        "-P",
        str(service.udp_port),
        "-t",
        "udpapp",
        "over udp",
    )
    assert service.wait_for("cdrecon_messages_stored_total", 2) == 2
    stored = rows(service, "select transport, format, raw, packed from messages order by transport")
    assert [(transport, fmt) for transport, fmt, _, _ in stored] == [
        ("tcp", "rfc3164"),
        ("udp", "rfc5424"),
    ]
    frames = [unpack(raw, packed) for _, _, raw, packed in stored]
    assert b" bsdapp" in frames[0] and b" udpapp " in frames[1]


def test_many_messages_from_a_file_arrive_once_each(
    service: Service, logger_path: str, tmp_path: Path
) -> None:
    service.start()
    lines = [f"message number {i:05d}" for i in range(2000)]
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n")
    send_logger(
        logger_path,
        service,
        "--tcp",
        "--octet-count",
        "--rfc5424",
        "-P",
        str(service.tcp_port),
        "-f",
        str(tmp_path / "lines.txt"),
    )
    assert service.wait_for("cdrecon_messages_stored_total", 2000) == 2000
    stored = rows(service, "select raw, packed, msg_offset from messages order by id")
    assert [unpack(raw, packed)[offset:].decode() for raw, packed, offset in stored] == lines


def test_nodes_endpoint_counts_per_sending_host(service: Service) -> None:
    service.start()
    with socket.create_connection(("127.0.0.1", service.tcp_port)) as sock:
        sock.sendall(
            b"<134>1 2026-11-26T10:00:00.000Z conf-a pexip - - - one\n"
            b"<134>1 2026-11-26T10:00:01.000Z conf-a pexip - - - two\n"
            b"<134>1 2026-11-26T10:00:02.000Z conf-b pexip - - - three\n"
            b"\x00\xff not syslog at all\n"
        )
    assert service.wait_for("cdrecon_messages_stored_total", 4) == 4
    nodes = {n["host"]: n for n in service.get("/api/v1/nodes").json()}
    assert nodes["conf-a"]["messages"] == 2
    assert nodes["conf-b"]["messages"] == 1
    assert nodes["127.0.0.1"]["parse_failures"] == 1
    assert service.get("/api/v1/stats").json()["parse_failures"] == 1
    assert service.metric("cdrecon_parse_failures_total", transport="tcp") == 1


def test_bad_input_is_kept_raw_and_the_service_keeps_running(service: Service) -> None:
    service.env["CDRECON_MAX_FRAME_SIZE"] = "1024"
    service.start()
    garbage = [
        b"99999999999999999999 octets?\n",  # absurd octet count
        b"17x not a count\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",  # TLS hello on the plain port
        b"GET / HTTP/1.1\r\n",
        b"<14>1 " + b"A" * 5000 + b"\n",  # oversize
        b"\xc0\xaf\xed\xa0\x80 invalid utf-8\n",
    ]
    with socket.create_connection(("127.0.0.1", service.tcp_port)) as sock:
        sock.sendall(b"".join(garbage))
        sock.sendall(b"<14>1 2026-11-26T10:00:00Z h app - - - still alive\n")
    # A half-open connection that never sends a full frame must not block anything either.
    idle = socket.create_connection(("127.0.0.1", service.tcp_port))
    idle.sendall(b"200 <14>1 partial")
    assert service.wait_for("cdrecon_messages_stored_total", 7) == 7
    assert service.metric("cdrecon_messages_oversize_total", transport="tcp") == 1
    stored = rows(service, "select format, truncated, raw, packed, error from messages order by id")
    assert stored[-1][0] == "rfc5424"
    assert stored[4][1] == 1 and len(unpack(stored[4][2], stored[4][3])) == 1024
    assert all(row[4] for row in stored[:4])  # each kept with its reason
    assert service.get("/healthz").status_code == 200
    idle.close()
    # The partial frame of the closed connection is stored too, flagged.
    assert service.wait_for("cdrecon_messages_stored_total", 8) == 8
    assert "incomplete" in str(rows(service, "select error from messages order by id")[-1][0])


def test_tls_with_client_certificate_stores_subject(
    service: Service, ca: trustme.CA, tmp_path: Path
) -> None:
    tls_service(service, ca, tmp_path)
    context = tls_client(ca, tmp_path, "conf-node-01.example.com")
    frames = b"".join(
        b"%d %s" % (len(m), m)
        for m in (
            b"<134>1 2026-11-26T10:00:00.000Z conf-node-01 pexip - - - over tls %d" % i
            for i in range(100)
        )
    )
    send_tls(service, context, frames)
    assert service.wait_for("cdrecon_messages_stored_total", 100, transport="tls") == 100
    [(transport, subject)] = rows(service, "select distinct transport, tls_subject from messages")
    assert transport == "tls"
    assert "CN=conf-node-01.example.com" in str(subject)


def test_tls_sender_closing_without_close_notify_loses_nothing(
    service: Service, ca: trustme.CA, tmp_path: Path
) -> None:
    tls_service(service, ca, tmp_path)
    context = tls_client(ca, tmp_path, "conf-node-02.example.com")
    total = 20_000
    messages = (
        b"<134>1 2026-11-26T10:00:00.000Z conf-node-02 pexip - - - " + b"x" * 400 + b" %06d" % i
        for i in range(total)
    )
    payload = b"".join(b"%d %s" % (len(m), m) for m in messages)
    for _ in range(3):
        raw = socket.create_connection(("127.0.0.1", service.tls_port))
        sock = context.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(payload)
        sock.close()  # no close_notify, like loggen and many syslog senders
    stored = service.wait_for("cdrecon_messages_stored_total", 3 * total, transport="tls")
    assert stored == 3 * total


def test_tls_client_without_certificate_is_refused(
    service: Service, ca: trustme.CA, tmp_path: Path
) -> None:
    tls_service(service, ca, tmp_path)
    context = tls_client(ca, tmp_path, None)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        send_tls(service, context, b"<14>1 - - - - - - sneaky\n")
        # TLS 1.3 reports the server's refusal only on the next read.
        time.sleep(0.2)
        send_tls(service, context, b"<14>1 - - - - - - sneaky\n")
    assert (
        service.wait_for(
            "cdrecon_connections_rejected_total", 1, transport="tls", reason="handshake_failed"
        )
        >= 1
    )
    assert rows(service, "select count(*) from messages") == [(0,)]


def test_tls_client_not_on_the_allow_list_is_refused(
    service: Service, ca: trustme.CA, tmp_path: Path
) -> None:
    tls_service(service, ca, tmp_path, allowed="conf-node-01.example.com")
    intruder = tls_client(ca, tmp_path, "intruder.example.com")
    node = tls_client(ca, tmp_path, "conf-node-01.example.com")
    with contextlib.suppress(OSError):  # the refusal may reach the client as a reset
        send_tls(service, intruder, b"<14>1 - - - - - - x\n")
    send_tls(service, node, b"<14>1 - - - - - - y\n")
    assert service.wait_for("cdrecon_messages_stored_total", 1, transport="tls") == 1
    assert (
        service.metric(
            "cdrecon_connections_rejected_total", transport="tls", reason="peer_not_allowed"
        )
        == 1
    )
    [(raw, packed)] = rows(service, "select raw, packed from messages")
    assert unpack(raw, packed).endswith(b"y")
