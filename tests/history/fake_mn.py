"""A stand-in Management Node: a real HTTP(S) server speaking the history API's Tastypie contract.

It runs `http.server` on 127.0.0.1 (an ephemeral port) in a background thread, so clients under
test talk to it over real sockets, with real HTTP/1.1 keep-alive, timeouts and TLS. What it
implements, as the MN does: HTTP Basic auth, `limit`/`offset` paging with `max_limit`, the
envelope `{"meta": {...}, "objects": [...]}` whose `meta.next` is a relative path carrying every
query parameter of the request, the time filters `start_time`/`end_time` `__gte`/`__lt`, and
`order_by`. Anything else in the query is refused with 400, as Tastypie refuses a field it does
not allow filtering on, so a client that sends a stray parameter finds out here.
"""

from __future__ import annotations

import base64
import json
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

import trustme

API_ROOT = "/api/admin/history/v1/"
MN_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S")
TIME_FILTERS = frozenset(
    f"{field}__{op}" for field in ("start_time", "end_time") for op in ("gte", "lt")
)
ORDER_FIELDS = frozenset({"start_time", "end_time", "id"})
DEFAULT_LIMIT = 20


class SeenRequest(NamedTuple):
    """One request as the fake MN received it."""

    path: str
    query: dict[str, str]
    target: str
    """The raw request target, path and query exactly as sent."""
    at: float
    """time.monotonic() when the request had been read."""
    status: int
    next_link: str | None
    """The `meta.next` the reply carried (None on the last page or when it was no envelope)."""


def mn_time(moment: datetime) -> str:
    """A time as the MN writes it: UTC, microseconds, no zone."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


def parse_mn_time(text: str) -> datetime:
    """Read a time in the MN's own format only (it refuses zones, so does this)."""
    for layout in MN_TIME_FORMATS:
        try:
            return datetime.strptime(text, layout)
        except ValueError:
            continue
    raise ValueError(f"not an MN time: {text!r}")


def make_participants(
    n: int,
    start: datetime = datetime(2020, 12, 21, 8, 0, 0),
    *,
    step: timedelta = timedelta(seconds=37),
    per_conference: int = 3,
    failed_every: int = 0,
    seed: int = 1,
) -> list[dict[str, Any]]:
    """`n` participant records shaped like the MN's, starting `step` apart from `start`.

    End times rise with the index, so `end_time` order is list order. Every `failed_every`-th
    record (when set) is a failed call: null start_time and zero duration, as the MN stores one.
    Ids are derived from `seed`, so the same arguments give the same records.
    """
    rng = random.Random(seed)
    records = []
    for index in range(n):
        pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        conference_id = str(uuid.UUID(int=seed << 64 | index // per_conference, version=4))
        slot = start + index * step
        # Both times jitter by less than `step` within their slot, so start order and end
        # order are both list order, while the microseconds look like real ones.
        started = slot + timedelta(microseconds=rng.randrange(1_000_000))
        ended = slot + timedelta(minutes=10) + rng.random() * step / 2
        duration = (ended - started).total_seconds()
        failed = failed_every > 0 and index % failed_every == failed_every - 1
        resource_uri = f"{API_ROOT}participant/{pid}/"
        records.append(
            {
                "av_id": "",
                "bandwidth": 448,
                "call_direction": "in",
                "call_quality": "1_good",
                "call_tag": "",
                "call_uuid": pid,
                "conference": f"{API_ROOT}conference/{conference_id}/",
                "conference_name": f"Meeting {index // per_conference}",
                "conversation_id": pid,
                "disconnect_reason": "Call disconnected",
                "display_name": f"Participant {index}",
                "duration": 0 if failed else int(duration),
                "encryption": "On",
                "end_time": mn_time(ended),
                "has_media": not failed,
                "id": pid,
                "is_streaming": False,
                "license_count": 0 if failed else 1,
                "license_type": "nolicense" if failed else "port",
                "local_alias": f"meet.{index // per_conference}@example.com",
                "media_node": "10.1.2.3",
                "media_streams": [],
                "parent_id": "",
                "presentation_id": "",
                "protocol": ("WebRTC", "SIP", "H323", "MSSIP")[index % 4],
                "proxy_node": "None",
                "remote_address": f"198.51.100.{index % 250 + 1}",
                "remote_alias": f"sip:user{index}@example.com",
                "remote_port": 5060 + index % 100,
                "resource_uri": resource_uri,
                "role": "chair" if index % per_conference == 0 else "guest",
                "rx_bandwidth": 1722,
                "service_tag": "",
                "service_type": "conference",
                "signalling_node": "10.1.2.4",
                "start_time": None if failed else mn_time(started),
                "system_location": "Prod",
                "tx_bandwidth": 448,
                "vendor": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
            }
        )
    return records


def make_conferences(participants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conference records the given participants belong to, in first-seen order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for participant in participants:
        grouped.setdefault(participant["conference"], []).append(participant)
    conferences = []
    for uri, members in grouped.items():
        starts = [p["start_time"] for p in members if p["start_time"] is not None]
        start_time = min(starts) if starts else members[0]["end_time"]
        end_time = max(p["end_time"] for p in members)
        duration = (parse_mn_time(end_time) - parse_mn_time(start_time)).total_seconds()
        conferences.append(
            {
                "direct_media_available": False,
                "duration": int(duration),
                "end_time": end_time,
                "id": uri.rstrip("/").rsplit("/", 1)[-1],
                "instant_message_count": 0,
                "name": members[0]["conference_name"],
                "participant_count": len(members),
                "participants": [p["resource_uri"] for p in members],
                "resource_uri": uri,
                "service_type": "conference",
                "start_time": start_time,
                "tag": "",
            }
        )
    return conferences


class _BadRequest(Exception):
    """A query Tastypie would refuse with 400."""


class FakeMN:
    """The MN history API on a free loopback port. Use `with FakeMN(...) as mn:`.

    Knobs, keyed by page offset (the same for both resources), except the last two:

    - `fail_once`: offsets answered with `fail_status` (503) the first time they are asked for,
      with `Retry-After: retry_after` when that is set;
    - `slow`: offset -> seconds to sleep before answering, the first time only;
    - `bodies`: offset -> (content type, body) served with 200 instead of the envelope, always;
    - `next_extra`: parameters added to every `meta.next` link (a client that builds its own
      links instead of following the MN's will not send them);
    - `max_limit`: the cap on `limit` (`limit=0` means the cap, as in Tastypie);
    - `tls`: serve HTTPS with a certificate for 127.0.0.1/localhost issued by this CA;
    - `fail_requests`: request numbers (counting from 1 the authorised requests for a history
      resource, both resources together) answered with `fail_status`, for clients that do not
      page by offset;
    - `after_page`: called with (resource, query) once a page's envelope is built and before it
      is sent, so a test can change `records` between two requests as the MN's own writes and
      retention purge do.

    `requests` lists every request seen, in arrival order, answered or not.
    """

    def __init__(
        self,
        participants: list[dict[str, Any]],
        conferences: list[dict[str, Any]] | None = None,
        username: str = "admin",
        password: str = "secret",
        *,
        fail_once: set[int] | None = None,
        fail_status: int = 503,
        retry_after: str | None = None,
        slow: Mapping[int, float] | None = None,
        bodies: Mapping[int, tuple[str, bytes]] | None = None,
        next_extra: Mapping[str, str] | None = None,
        max_limit: int = 1000,
        tls: trustme.CA | None = None,
        fail_requests: set[int] | None = None,
        after_page: Callable[[str, dict[str, str]], None] | None = None,
    ) -> None:
        self.records = {"participant": participants, "conference": conferences or []}
        self.username = username
        self.password = password
        self.fail_once = set(fail_once or ())
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.slow = dict(slow or {})
        self.bodies = dict(bodies or {})
        self.next_extra = dict(next_extra or {})
        self.max_limit = max_limit
        self.fail_requests = set(fail_requests or ())
        self.after_page = after_page
        self._arrived = 0
        self.requests: list[SeenRequest] = []
        self._lock = threading.Lock()
        self._failed: set[int] = set()
        self._slowed: set[int] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.mn = self
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.issue_cert("127.0.0.1", "localhost").configure_cert(context)
            self._server.ssl_context = context
        host, port = self._server.server_address[:2]
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop answering and free the port (again is harmless): the MN has gone away."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def offsets(self, resource: str = "participant") -> list[int]:
        """The `offset` of each request for `resource`, in arrival order (0 when absent)."""
        return [
            _offset(seen.query) for seen in self.requests if seen.path == f"{API_ROOT}{resource}/"
        ]

    # -- called from the handler threads --------------------------------------------------

    def fail_now(self, offset: int) -> bool:
        """True the first time a `fail_once` offset is asked for, and for `fail_requests`."""
        with self._lock:
            self._arrived += 1
            if self._arrived in self.fail_requests:
                return True
        return offset in self.fail_once and self._first_time(self._failed, offset)

    def slow_now(self, offset: int) -> float:
        """Seconds to stall before answering `offset`: its `slow` delay the first time, else 0."""
        delay = self.slow.get(offset, 0.0)
        return delay if delay and self._first_time(self._slowed, offset) else 0.0

    def _first_time(self, done: set[int], offset: int) -> bool:
        with self._lock:
            if offset in done:
                return False
            done.add(offset)
            return True

    def record(self, seen: SeenRequest) -> None:
        with self._lock:
            self.requests.append(seen)

    def authorised(self, header: str | None) -> bool:
        if header is None or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        return decoded == f"{self.username}:{self.password}"

    def page(self, resource: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
        """The Tastypie envelope for one list request (raises _BadRequest like Tastypie)."""
        params = dict(pairs)
        limit = _int_param(params, "limit", DEFAULT_LIMIT)
        limit = self.max_limit if limit == 0 else min(limit, self.max_limit)
        offset = _int_param(params, "offset", 0)
        if params.get("format", "json") != "json":
            raise _BadRequest(f"unsupported format {params['format']!r}")
        selected = list(self.records[resource])
        orders: list[str] = []
        for name, value in pairs:
            if name in ("limit", "offset", "format") or name in self.next_extra:
                continue
            if name == "order_by":
                if value.lstrip("-") not in ORDER_FIELDS:
                    raise _BadRequest(f"No matching '{value}' field for ordering on.")
                orders.append(value)
            elif name in TIME_FILTERS:
                field, op = name.rsplit("__", 1)
                try:
                    bound = parse_mn_time(value)
                except ValueError as exc:
                    raise _BadRequest(str(exc)) from None
                selected = [r for r in selected if _matches(r.get(field), op, bound)]
            else:
                raise _BadRequest(f"The '{name}' field does not allow filtering.")
        # Apply the last key first: stable sorts then give multi-key order, as order_by does.
        for order in reversed(orders):
            selected.sort(key=_order_key(order.lstrip("-")), reverse=order.startswith("-"))
        total = len(selected)
        path = f"{API_ROOT}{resource}/"
        more = offset + limit < total
        return {
            "meta": {
                "limit": limit,
                "next": self._link(path, pairs, limit, offset + limit) if more else None,
                "offset": offset,
                "previous": (
                    self._link(path, pairs, limit, max(0, offset - limit)) if offset > 0 else None
                ),
                "total_count": total,
            },
            "objects": selected[offset : offset + limit],
        }

    def _link(self, path: str, pairs: list[tuple[str, str]], limit: int, offset: int) -> str:
        # Tastypie copies the request's parameters and sets limit and offset, keeping the
        # position of those already present.
        params: dict[str, str | list[str]] = {}
        for name, value in pairs:
            previous = params.get(name)
            if previous is None:
                params[name] = value
            else:
                params[name] = [*([previous] if isinstance(previous, str) else previous), value]
        params.update({"limit": str(limit), "offset": str(offset), **self.next_extra})
        return f"{path}?{urlencode(params, doseq=True)}"


def _offset(query: Mapping[str, str]) -> int:
    """The page offset a knob is keyed by (0 when absent or not a number)."""
    text = query.get("offset", "0")
    return int(text) if text.isdigit() else 0


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise _BadRequest(f"Invalid {name} '{text}' provided. Please provide a positive integer.")
    return int(text)


def _matches(value: Any, op: str, bound: datetime) -> bool:
    if value is None:  # SQL: a comparison with NULL is never true
        return False
    moment = parse_mn_time(value)
    return moment >= bound if op == "gte" else moment < bound


def _order_key(field: str) -> Any:
    # Nulls sort first, then by value; `id` breaks ties so the order is total and repeatable.
    def key(record: dict[str, Any]) -> tuple[bool, str, str]:
        value = record.get(field)
        return (value is not None, value or "", record["id"])

    return key


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mn: FakeMN
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        # Handshake in the connection's own thread, not in the accept loop.
        with self.ssl_context.wrap_socket(request, server_side=True) as tls_socket:
            super().finish_request(tls_socket, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that give up (timeouts, refused certificates) are part of the tests.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (40 ms a response on Linux).
    disable_nagle_algorithm = True
    server: _Server
    # Idle keep-alive connections end after this, so no thread waits forever.
    timeout = 5

    def do_GET(self) -> None:
        mn = self.server.mn
        parts = urlsplit(self.path)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = dict(pairs)
        at = time.monotonic()
        status, headers, body, next_link = self._answer(mn, parts.path, pairs)
        mn.record(SeenRequest(parts.path, query, self.path, at, status, next_link))
        delay = mn.slow_now(_offset(query))
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def _answer(
        self, mn: FakeMN, path: str, pairs: list[tuple[str, str]]
    ) -> tuple[int, dict[str, str], bytes, str | None]:
        if not mn.authorised(self.headers.get("Authorization")):
            return 401, {"WWW-Authenticate": 'Basic realm="api"'}, b"", None
        resource = path.removeprefix(API_ROOT).rstrip("/")
        if not path.startswith(API_ROOT) or path != f"{API_ROOT}{resource}/":
            return 404, {"Content-Type": "text/html"}, b"<h1>Not Found</h1>", None
        if resource not in mn.records:
            return 404, {"Content-Type": "text/html"}, b"<h1>Not Found</h1>", None
        offset = _offset(dict(pairs))
        if mn.fail_now(offset):
            headers = {"Content-Type": "text/html"}
            if mn.retry_after is not None:
                headers["Retry-After"] = mn.retry_after
            return mn.fail_status, headers, b"<h1>Service Unavailable</h1>", None
        if offset in mn.bodies:
            content_type, body = mn.bodies[offset]
            return 200, {"Content-Type": content_type}, body, None
        try:
            envelope = mn.page(resource, pairs)
        except _BadRequest as exc:
            return 400, {"Content-Type": "application/json"}, _json({"error": str(exc)}), None
        if mn.after_page is not None:
            mn.after_page(resource, dict(pairs))
        json_type = {"Content-Type": "application/json"}
        return 200, json_type, _json(envelope), envelope["meta"]["next"]

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()
