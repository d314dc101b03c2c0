"""`serve` prunes by itself, on its schedule, while it receives."""

from __future__ import annotations

import socket
import time

from tests.conftest import Service

CALL = (
    "2026-11-26T10:00:00.000+00:00 conf-a 2026-11-26 10:00:00,000 "
    'Level="INFO" Name="administrator.conference" Message="Participant has joined." '
    'Conference="Weekly sync" Participant="Alice" Participant-id="serve-prune-1" '
    'Protocol="SIP" Direction="in"\n'
)


def _audited_prunes(service: Service) -> int:
    audit = service.get("/api/v1/audit").json()["items"]
    return sum(entry["action"] == "retention.prune" for entry in audit)


def test_serve_prunes_support_lines_on_its_schedule_and_keeps_call_events(
    service: Service,
) -> None:
    # Support lines are kept for about a second here, the calls' evidence for 400 days.
    service.env.update(CDRECON_PRUNE_INTERVAL="0.5", CDRECON_RETAIN_MESSAGES_DAYS=str(1 / 86_400))
    service.start()
    support = "".join(
        f"2026-11-26T10:00:00.000+00:00 conf-a kernel: eth0 link check {n}\n" for n in range(50)
    )
    with socket.create_connection(("127.0.0.1", service.tcp_port)) as sock:
        sock.sendall((CALL + support).encode())
    assert service.wait_for("cdrecon_messages_stored_total", 51) == 51
    assert service.wait_for("cdrecon_rows_pruned_total", 50, table="messages") == 50
    stats = service.get("/api/v1/stats").json()
    assert (stats["messages"], stats["events"], stats["cdrs"]) == (1, 1, 1)
    # The pass's audit entry is written once the whole pass is done, after its rows count.
    deadline = time.monotonic() + 60
    while not (pruned := _audited_prunes(service)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pruned
