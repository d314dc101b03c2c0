"""`cdrecon serve` with the watch on a one-second schedule, against the fake MN through a
simulated restore: the alerts, the gauges, the signed webhook, acknowledging and exporting."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from app.watch.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.conftest import Service
from tests.history.fake_mn import FakeMN
from tests.watch.timeline import Receiver, iso, mn_record, recent_calls, syslog_frames

SECRET = b"a secret the receiver shares"


def eventually(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait until `check()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def post(service: Service, path: str, **kwargs: Any) -> httpx.Response:
    """POST as a client should: again after a 503 (the watch's run holds SQLite's one write
    lock for a moment every second here) once its Retry-After has passed."""
    deadline = time.monotonic() + 60
    while True:
        response = service.post(path, **kwargs)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))


def send(service: Service, frames: list[bytes]) -> None:
    stored = service.metric("cdrecon_messages_stored_total")
    with socket.create_connection(("127.0.0.1", service.tcp_port)) as sock:
        sock.sendall(b"".join(frame + b"\n" for frame in frames))
    assert service.wait_for("cdrecon_messages_stored_total", stored + len(frames)) == stored + len(
        frames
    )


def test_serve_alerts_on_a_restore_and_on_the_gap_it_leaves(
    service: Service, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    calls = recent_calls(20, now - timedelta(hours=3), timedelta(minutes=4))
    (tmp_path / "mn-password").write_text("secret\n")
    (tmp_path / "webhook-secret").write_bytes(SECRET + b"\n")
    with Receiver() as receiver, FakeMN([mn_record(c) for c in calls[:15]]) as mn:
        service.env.update(
            {
                "CDRECON_MN_URL": mn.url,
                "CDRECON_MN_USER": mn.username,
                "CDRECON_MN_PASSWORD_FILE": str(tmp_path / "mn-password"),
                "CDRECON_MN_PULL_INTERVAL": "1",
                "CDRECON_WATCH": "true",
                "CDRECON_WATCH_INTERVAL": "0",
                "CDRECON_WATCH_SETTLE": "600",
                "CDRECON_WATCH_WINDOW": "21600",
                "CDRECON_WATCH_WEBHOOK_URL": receiver.url,
                "CDRECON_WATCH_WEBHOOK_SECRET_FILE": str(tmp_path / "webhook-secret"),
            }
        )
        service.start(timeout=60)
        send(service, syslog_frames(calls[:15]))
        # The restore check asks the MN for a count once a pull has stored its records.
        eventually(
            lambda: any(r.query.get("limit") == "1" for r in list(mn.requests)),
            "a first pull and the watch after it",
        )
        # The MN is restored from a backup taken before calls 10-14 ended, and calls 15-19
        # end while it is down: it never writes them. Syslog has them all.
        del mn.records["participant"][10:15]
        send(service, syslog_frames(calls[15:]))
        eventually(
            lambda: (
                service.metric("cdrecon_gap_open") == 1
                and service.metric("cdrecon_mn_restore_open") == 1
            ),
            "a gap alert and a restore alert",
        )
        assert service.metric("cdrecon_missing_in_mn") == 5
        assert service.metric("cdrecon_mn_records_vanished") == 5
        assert service.metric("cdrecon_history_pull_age_seconds") < 60

        listed = service.get("/api/v1/alerts?state=open")
        assert listed.status_code == 200, listed.text
        alerts = {a["kind"]: a for a in listed.json()["items"]}
        gap, restore = alerts["gap"], alerts["restore"]
        assert (gap["from"], gap["until"], gap["count"]) == (
            iso(calls[15].end),
            iso(calls[19].end),
            5,
        )
        assert (restore["from"], restore["until"], restore["count"]) == (
            iso(calls[10].end),
            iso(calls[14].end),
            5,
        )
        first = service.get("/api/v1/alerts?limit=1").json()
        second = service.get(f"/api/v1/alerts?limit=1&cursor={first['next_cursor']}").json()
        assert [a["id"] for a in first["items"] + second["items"]] == [
            a["id"] for a in listed.json()["items"]
        ]
        assert second["next_cursor"] is None
        assert service.get("/api/v1/alerts/999999").json()["error"] == "not_found"
        assert service.get("/api/v1/alerts?cursor=nonsense").json()["error"] == "invalid_cursor"
        records = service.get(f"/api/v1/alerts/{restore['id']}/records").json()["items"]
        assert [r["id"] for r in records] == [c.pid for c in calls[10:15]]
        billing = service.token("billing", scope="billing")
        assert service.get("/api/v1/alerts", token=billing).status_code == 403

        # The restore is acknowledged by an admin; the lost calls are exported to billing.
        acked = post(service, f"/api/v1/alerts/{restore['id']}/ack")
        assert acked.status_code == 200, acked.text
        assert (acked.json()["state"], acked.json()["cleared_by"]) == ("cleared", "test-admin")
        assert service.metric("cdrecon_mn_restore_open") == 0
        exported = post(
            service,
            "/api/v1/exports",
            token=billing,
            json={"run_id": gap["run_id"], "status": "missing_in_mn"},
        )
        assert exported.status_code == 201, exported.text
        assert exported.json()["record_count"] == 5
        eventually(lambda: service.metric("cdrecon_gap_open") == 0, "the gap alert to clear")
        receiver.wait_for(3)
        assert "alert" in service.log and "restored from a backup?" in service.log

    events = sorted((event, alert["kind"]) for event, alert in receiver.events())
    assert events == [
        ("alert.cleared", "gap"),
        ("alert.opened", "gap"),
        ("alert.opened", "restore"),
    ]
    for delivery in receiver.deliveries:
        stamp = delivery.headers[TIMESTAMP_HEADER]
        assert verify(SECRET, stamp, delivery.body, delivery.headers[SIGNATURE_HEADER])
    audit = service.get("/api/v1/audit").json()["items"]
    assert any(
        e["action"] == "alert.acknowledge" and e["target"] == str(restore["id"]) for e in audit
    )
