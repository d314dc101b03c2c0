"""Generates a restore scenario: Pexip syslog lines, the MN's surviving history, and the
status every record must get. Deterministic for a seed."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

JOIN, LEAVE, ATTEMPT = (
    "Participant has joined.",
    "Participant has disconnected.",
    "Participant attempting to join conference.",
)


@dataclass
class Call:
    """One leg as both sides would see it."""

    pid: str
    node: str
    conference: str
    alias: str
    protocol: str
    start: datetime
    end: datetime | None  # None: still open
    call_id: str | None
    # normal, backplane, failed, open, mn_only, mismatched, call_id, heuristic, after_history
    kind: str = "normal"
    mn_id: str | None = None  # the MN's id when it differs from the Participant-id
    mn_shift: timedelta = timedelta(0)  # MN clock skew under the tolerance


@dataclass
class Scenario:
    """Everything a reconciliation test needs."""

    calls: list[Call]
    window: tuple[datetime, datetime]
    backup: datetime
    restore: datetime
    retention_from: datetime
    as_of: datetime  # when the MN's history was taken: calls ending later are not in it
    lines: list[tuple[str, datetime, str]] = field(default_factory=list)  # node, time, body
    mn_records: list[dict[str, object]] = field(default_factory=list)
    expected: dict[str, str] = field(default_factory=dict)  # syslog id or MN id -> status
    lost: list[str] = field(default_factory=list)


def mn_time(moment: datetime) -> str:
    """The MN's time format: UTC, microseconds, no zone."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def conference_uri(name: str) -> str:
    """The URI an MN participant record names its conference by."""
    return f"/api/admin/history/v1/conference/{uuid.uuid5(uuid.NAMESPACE_URL, name)}/"


def body(call: Call, message: str, at: datetime, detail: str | None = None) -> str:
    stamp = at.strftime("%Y-%m-%d %H:%M:%S,") + f"{at.microsecond // 1000:03d}"
    fields = (
        f'{stamp} Level="INFO" Name="administrator.conference" Message="{message}" '
        f'Conference="{call.conference}" Participant="{call.alias}" Protocol="{call.protocol}" '
        f'Direction="in" Participant-id="{call.pid}"'
    )
    if call.call_id:
        fields += f' Call-id="{call.call_id}"'
    if detail:
        fields += f' Detail="{detail}"'
    return fields


def generate(seed: int = 1, days: int = 3, calls_per_day: int = 120) -> Scenario:
    """Several nodes over several days with one restore gap and every kind of record."""
    rng = random.Random(seed)
    ids = uuid.UUID(int=rng.getrandbits(128))

    def new_id() -> str:
        nonlocal ids
        ids = uuid.UUID(int=rng.getrandbits(128), version=4)
        return str(ids)

    first = datetime(2026, 11, 20, tzinfo=UTC)
    window = (first, first + timedelta(days=days))
    span = window[1] - window[0]
    backup = first + span * 0.55
    restore = backup + timedelta(hours=9)
    retention_from = first + timedelta(hours=6)  # the MN's oldest surviving record
    nodes = ["conf-lon-1", "conf-lon-2", "conf-nyc-1"]
    calls: list[Call] = []
    total = days * calls_per_day
    for index in range(total):
        start = first + timedelta(seconds=rng.uniform(60, span.total_seconds() - 4 * 3600))
        start = start.replace(microsecond=rng.randrange(1000) * 1000)
        length = timedelta(seconds=rng.uniform(20, 2 * 3600), milliseconds=rng.randrange(1000))
        protocol = rng.choice(["SIP", "H323", "WebRTC", "TEAMS", "SIP"])
        call = Call(
            pid=new_id(),
            node=rng.choice(nodes),
            conference=f"room-{rng.randrange(12):02d}",
            alias=f"user{index}@example.com",
            protocol=protocol,
            start=start,
            end=start + length,
            call_id=f"{new_id()}@10.1.{rng.randrange(256)}.{rng.randrange(256)}",
            mn_shift=timedelta(milliseconds=rng.randrange(-900, 900)),
        )
        roll = rng.random()
        if roll < 0.03:
            call.kind = "mismatched"
        elif roll < 0.05:
            call.kind = "mn_only"
        elif roll < 0.07:
            call.kind = "backplane"
            call.protocol = "BACKPLANE"
        elif roll < 0.09:
            call.kind = "failed"
            call.end = None
        elif roll < 0.11:
            call.kind = "call_id"
            call.mn_id = new_id()
        elif roll < 0.13:
            call.kind = "heuristic"
            call.mn_id = new_id()
            call.call_id = None
        calls.append(call)
        if protocol == "WebRTC" and call.kind == "normal":
            # The WebRTC double leg: an API leg beside the media leg, both billed by the MN.
            twin = Call(
                pid=new_id(),
                node=call.node,
                conference=call.conference,
                alias=call.alias,
                protocol="API",
                start=call.start,
                end=call.end,
                call_id=call.call_id,
                mn_shift=call.mn_shift,
            )
            calls.append(twin)
    # A few calls still going at the end of the window.
    for index in range(4):
        start = window[1] - timedelta(minutes=30 + index)
        calls.append(
            Call(
                new_id(),
                nodes[index % 3],
                "room-open",
                f"late{index}@example.com",
                "SIP",
                start,
                None,
                f"{new_id()}@10.9.9.9",
                kind="open",
            )
        )
    # A few calls that ended after the MN's history was taken.
    as_of = window[1] - timedelta(minutes=90)
    for index in range(3):
        start = as_of - timedelta(minutes=10 + index)
        calls.append(
            Call(
                new_id(),
                nodes[index % 3],
                "room-late",
                f"after{index}@example.com",
                "SIP",
                start,
                as_of + timedelta(minutes=5 + index),
                f"{new_id()}@10.9.9.8",
                kind="after_history",
            )
        )
    scenario = Scenario(calls, window, backup, restore, retention_from, as_of)
    _render(scenario)
    return scenario


def _render(s: Scenario) -> None:
    for call in s.calls:
        # --- syslog side
        if call.kind != "mn_only":
            if call.kind == "failed":
                s.lines.append((call.node, call.start, body(call, ATTEMPT, call.start)))
            else:
                s.lines.append((call.node, call.start, body(call, JOIN, call.start)))
                if call.end is not None:
                    s.lines.append(
                        (call.node, call.end, body(call, LEAVE, call.end, "Call disconnected"))
                    )
        # --- MN side: it writes a record when a call ends; backplanes live elsewhere.
        if call.kind in ("open", "backplane", "after_history"):
            s.expected[call.pid] = {"open": "open", "backplane": "excluded"}.get(
                call.kind, "after_history"
            )
            continue
        end = call.end if call.end is not None else call.start
        lost = s.backup <= end < s.restore
        too_old = (call.start if call.kind != "failed" else end) < s.retention_from
        mn_id = call.mn_id or call.pid
        if not lost and not too_old:
            start = None if call.kind == "failed" else call.start + call.mn_shift
            finish = end + call.mn_shift
            duration = 0 if start is None else int((call.end - call.start).total_seconds())  # type: ignore[operator]
            if call.kind == "mismatched":
                duration += 45
                finish += timedelta(seconds=45)
            s.mn_records.append(
                {
                    "id": mn_id,
                    "call_uuid": call.call_id,
                    "conference": conference_uri(call.conference),
                    "conference_name": call.conference,
                    "display_name": call.alias,
                    "remote_alias": call.alias,
                    "local_alias": call.conference,
                    "protocol": call.protocol,
                    "call_direction": "in",
                    "start_time": None if start is None else mn_time(start),
                    "end_time": mn_time(finish),
                    "duration": duration,
                    "disconnect_reason": "Call disconnected",
                    "has_media": call.protocol != "API",
                    "signalling_node": call.node,
                    "media_streams": [],
                }
            )
        if call.kind == "failed":
            status = "excluded"
        elif call.kind == "mn_only":
            status = "missing_in_syslog" if not (lost or too_old) else "absent"
        elif too_old:
            status = "outside_retention"
        elif lost:
            status = "missing_in_mn"
            s.lost.append(call.pid)
        elif call.kind == "mismatched":
            status = "mismatched"
        else:
            status = "matched"
        if status != "absent":
            key = mn_id if call.kind == "mn_only" else call.pid
            s.expected[key] = status
