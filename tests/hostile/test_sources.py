"""Who may send syslog and whose address the audit log believes: a real `cdrecon serve`
with CDRECON_SYSLOG_ALLOW and CDRECON_TRUSTED_PROXIES, talked to over real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CDRECON, Service

LINE = b"<13>Mar  2 10:00:00 conf-a app: hello"


def send_both(service: Service, count: int) -> bytes:
    """`count` datagrams and one TCP connection carrying `count` lines; what TCP read back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for _ in range(count):
            udp.sendto(LINE, ("127.0.0.1", service.udp_port))
    with socket.create_connection(("127.0.0.1", service.tcp_port), timeout=10) as tcp:
        try:
            tcp.sendall(LINE + b"\n" * count)
            return tcp.recv(1)  # b"" once the server closed the connection
        except ConnectionResetError:
            return b""


def test_sources_outside_the_allow_list_are_refused_and_counted(service: Service) -> None:
    service.env["CDRECON_SYSLOG_ALLOW"] = "192.0.2.0/24, 2001:db8::/32"
    service.start()
    assert send_both(service, 5) == b""
    assert service.wait_for("cdrecon_syslog_source_refused_total", 5, transport="udp") == 5
    assert service.metric("cdrecon_syslog_source_refused_total", transport="tcp") == 1
    assert (
        service.metric(
            "cdrecon_connections_rejected_total", transport="tcp", reason="source_not_allowed"
        )
        == 1
    )
    assert service.metric("cdrecon_messages_received_total") == 0
    # Logged once per address, not once per datagram.
    assert service.log.count("syslog from 127.0.0.1 refused") == 1


def test_sources_inside_the_allow_list_are_stored(service: Service) -> None:
    service.env["CDRECON_SYSLOG_ALLOW"] = "192.0.2.7/32,127.0.0.0/8"
    service.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(LINE, ("127.0.0.1", service.udp_port))
    with socket.create_connection(("127.0.0.1", service.tcp_port)) as tcp:
        tcp.sendall(LINE + b"\n")
    assert service.wait_for("cdrecon_messages_stored_total", 2, timeout=30) == 2
    assert service.metric("cdrecon_syslog_source_refused_total") == 0


@pytest.mark.parametrize("setting", ["CDRECON_SYSLOG_ALLOW", "CDRECON_TRUSTED_PROXIES"])
def test_a_bad_network_stops_the_start_with_one_line(tmp_path: Path, setting: str) -> None:
    env = {
        **os.environ,
        "CDRECON_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cdrecon.db'}",
        setting: "10.0.0.0/8,10.0.0.1/8",
    }
    done = subprocess.run(
        [CDRECON, "serve"], env=env, capture_output=True, timeout=60, cwd=tmp_path
    )
    stderr = done.stderr.decode()
    assert done.returncode == 3, stderr
    assert "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if setting in line]
    assert "10.0.0.1/8 has host bits set" in line


def audited_client(service: Service, headers: dict[str, str]) -> str | None:
    """Run a reconciliation with `headers`; the client address its audit entry records."""
    window = {"from": "2026-03-02T00:00:00Z", "until": "2026-03-03T00:00:00Z", "force": True}
    assert service.post("/api/v1/reconciliations", json=window, headers=headers).status_code == 201
    (entry,) = [
        item
        for item in service.get("/api/v1/audit").json()["items"]
        if item["action"] == "reconciliation.run"
    ]
    client: str | None = entry["client"]
    return client


def test_forwarded_for_from_an_untrusted_client_is_ignored(service: Service) -> None:
    service.start()
    assert audited_client(service, {"X-Forwarded-For": "203.0.113.9"}) == "127.0.0.1"


def test_forwarded_for_from_a_trusted_proxy_names_the_client(service: Service) -> None:
    service.env["CDRECON_TRUSTED_PROXIES"] = "127.0.0.1"
    service.start()
    assert audited_client(service, {"X-Forwarded-For": "203.0.113.9"}) == "203.0.113.9"
