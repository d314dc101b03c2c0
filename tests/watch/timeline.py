"""Calls of the last few hours as both sides see them (syslog lines and MN records), and a
real HTTP receiver for the alert webhook."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.reconcile.generator import JOIN, LEAVE, Call, body, conference_uri, mn_time


def recent_calls(count: int, first: datetime, spacing: timedelta) -> list[Call]:
    """`count` calls `spacing` apart from `first`, each three minutes long, in end order."""
    calls = []
    for index in range(count):
        start = first + index * spacing
        calls.append(
            Call(
                pid=f"00000000-0000-4000-8000-{index:012d}",
                node=("conf-lon-1", "conf-nyc-1")[index % 2],
                conference=f"room-{index % 3}",
                alias=f"user{index}@example.com",
                protocol="SIP",
                start=start,
                end=start + timedelta(minutes=3),
                call_id=f"call-{index}@10.0.0.1",
            )
        )
    return calls


def syslog_frames(calls: list[Call]) -> list[bytes]:
    """Each call's join and disconnect as RFC 5424 frames."""
    frames = []
    for call in calls:
        assert call.end is not None
        for at, line in (
            (call.start, body(call, JOIN, call.start)),
            (call.end, body(call, LEAVE, call.end, "Call disconnected")),
        ):
            frames.append(f"<134>1 {at.isoformat()} {call.node} pexip - - - {line}".encode())
    return frames


def mn_record(call: Call) -> dict[str, Any]:
    """The MN's participant record of a call."""
    assert call.end is not None
    return {
        "id": call.pid,
        "call_uuid": call.call_id,
        "conference": conference_uri(call.conference),
        "conference_name": call.conference,
        "display_name": call.alias,
        "remote_alias": call.alias,
        "local_alias": call.conference,
        "protocol": call.protocol,
        "call_direction": "in",
        "start_time": mn_time(call.start),
        "end_time": mn_time(call.end),
        "duration": int((call.end - call.start).total_seconds()),
        "disconnect_reason": "Call disconnected",
        "has_media": True,
        "signalling_node": call.node,
        "media_streams": [],
    }


def iso(moment: datetime) -> str:
    """As the API and the webhook write times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Delivery:
    """One POST the receiver got."""

    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


@dataclass
class Receiver:
    """A real HTTP server taking webhook POSTs; answers `failures` times `failure_status`
    first, then 204."""

    failures: int = 0
    failure_status: int = 503
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: int = 0

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                content = self.rfile.read(length)
                receiver.attempts += 1
                if receiver.failures > 0:
                    receiver.failures -= 1
                    self.send_response(receiver.failure_status)
                else:
                    receiver.deliveries.append(Delivery(dict(self.headers.items()), content))
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Delivery]:
        """The deliveries once there are `count` (fails after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.deliveries) >= count, f"{len(self.deliveries)} of {count} webhooks"
        return self.deliveries

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event, alert) of each delivery."""
        for delivery in self.deliveries:
            found = delivery.json()
            yield found["event"], found["alert"]
