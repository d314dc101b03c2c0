"""Realistic Pexip Infinity syslog frames for the benchmarks, the same lines for the same seed."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

FIRST_NAMES = (
    "Alice",
    "Bob",
    "Carol",
    "Dave",
    "Erin",
    "Frank",
    "Grace",
    "Heidi",
    "Ivan",
    "Judy",
    "Mallory",
    "Niaj",
    "Olivia",
    "Peggy",
    "Rupert",
    "Sybil",
    "Trent",
    "Victor",
    "Walter",
    "Yasmin",
    "Zoe",
    "Ahmed",
    "Bjorn",
    "Chiara",
    "Dmitri",
    "Elif",
    "Fatima",
    "Goran",
    "Hiro",
    "Ingrid",
)
LAST_NAMES = (
    "Example",
    "Smith",
    "Jones",
    "Nakamura",
    "Olsen",
    "Garcia",
    "Muller",
    "Rossi",
    "Kowalski",
    "Nguyen",
    "Haddad",
    "Berg",
    "Dubois",
    "Fischer",
    "Silva",
    "Novak",
    "Larsen",
    "Patel",
    "Okafor",
    "Lindqvist",
)
DOMAINS = ("example.com", "example.org", "corp.example.net", "partner.example.co.uk")
CONFERENCES = (
    "Weekly sync",
    "Board meeting",
    "Sales EMEA",
    "Helpdesk VMR",
    "All hands",
    "meet.alice",
    "Project Falcon standup",
    "Customer escalation bridge",
    "Training room 3",
    "Oslo office huddle",
)
PROTOCOLS = ("SIP", "H323", "WebRTC", "MSSIP", "RTMP")
VENDORS = (
    "Cisco TelePresence",
    "Cisco Webex Room Kit",
    "Polycom RealPresence Group 500",
    "Lifesize Icon 600",
    "Pexip Infinity Connect",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
    "Microsoft Teams Room",
)
LOCATIONS = ("London", "Oslo", "New York", "Singapore", "Frankfurt")
NODES = tuple(f"10.0.1.{n}" for n in range(11, 19))
HOSTS = tuple(f"conf-node-{n:02d}" for n in range(1, 9))
DISCONNECT_DETAILS = (
    "Call disconnected",
    "Remote disconnect",
    "Timer expired awaiting token refresh",
    "Media process disconnected",
)


@dataclass(frozen=True, slots=True)
class Call:
    """One participant's call: the ids that stay the same across its log lines."""

    conference: str
    participant: str
    protocol: str
    call_id: str
    participant_id: str
    conversation_id: str
    remote_address: str
    remote_port: int
    signaling_node: str
    media_node: str
    location: str
    vendor: str
    host: str


def _random_call(rng: random.Random) -> Call:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    user = f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"
    protocol = rng.choice(PROTOCOLS)
    scheme = "h323" if protocol == "H323" else "sip"
    remote = f"10.{rng.randrange(2, 250)}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"
    node = rng.randrange(len(NODES))
    return Call(
        conference=rng.choice(CONFERENCES),
        participant=f"{first} {last} <{scheme}:{user}>",
        protocol=protocol,
        call_id=f"{uuid.UUID(int=rng.getrandbits(128)).hex}@{remote}",
        participant_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        conversation_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        remote_address=remote,
        remote_port=rng.choice((5060, 5061, 1720, 443, rng.randrange(40000, 60000))),
        signaling_node=NODES[node],
        media_node=NODES[(node + rng.randrange(0, 3)) % len(NODES)],
        location=rng.choice(LOCATIONS),
        vendor=rng.choice(VENDORS),
        host=HOSTS[node],
    )


def _event_fields(
    call: Call, step: int, rng: random.Random
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The fields of one of the three lines a call logs: attempting, joined, disconnected.

    Returns the fields every line has and, in order, the ones added while the line is short.
    """
    messages = (
        "Participant attempting to join conference.",
        "Participant has joined.",
        "Participant has disconnected.",
    )
    core = [
        ("Level", "INFO"),
        ("Name", "administrator.conference"),
        ("Message", messages[step]),
        ("Conference", call.conference),
        ("Participant", call.participant),
        ("Protocol", call.protocol),
        ("Call-id", call.call_id),
        ("Participant-id", call.participant_id),
    ]
    if step == 2:
        core.append(("Detail", rng.choice(DISCONNECT_DETAILS)))
    optional = [
        ("Direction", rng.choice(("in", "out")) if step == 0 else "in"),
        ("Remote-address", call.remote_address),
        ("Signaling-node", call.signaling_node),
        ("Media-node", call.media_node),
        ("Location", call.location),
        ("Conversation-id", call.conversation_id),
        ("Remote-port", str(call.remote_port)),
        ("Service-type", "conference"),
        ("Vendor", call.vendor),
        ("Duration", str(rng.randrange(5, 7200))),
        ("Role", "chair"),
        ("Encryption", "On"),
        ("Bandwidth", "2048"),
        ("Service-tag", "vmr-standard"),
        ("Call-tag", "bench"),
        ("Presentation-allowed", "True"),
    ]
    return core, optional


def _rfc5424_frame(
    host: str,
    when: datetime,
    fields: tuple[list[tuple[str, str]], list[tuple[str, str]]],
    size: int,
) -> bytes:
    """One octet-counted RFC 5424 frame (RFC 6587): `LEN SP <134>1 TS HOST pexip - - - BODY LF`.

    Optional fields are added while the frame stays within `size` bytes. The trailing LF is
    inside the counted octets, so that the frame file can be read line by line (loggen
    --read-file); receivers strip it as trailing whitespace.
    """
    stamp = when.strftime("%Y-%m-%d %H:%M:%S,") + f"{when.microsecond // 1000:03d}"
    iso = when.isoformat(timespec="milliseconds")
    head = f"<134>1 {iso} {host} pexip - - - {stamp}"
    core, optional = fields
    body = " ".join(f'{key}="{value}"' for key, value in core)
    for key, value in optional:
        extra = f' {key}="{value}"'
        # 5 bytes: the length prefix ("NNN ") and the trailing LF.
        if len(head) + 1 + len(body) + len(extra) + 5 > size:
            continue
        body += extra
    msg = f"{head} {body}\n".encode()
    return str(len(msg)).encode() + b" " + msg


SUPPORT_LINES = (
    ("support.media", "Stable call quality changed"),
    ("support.media", "New mode activated"),
    ("support.sip", "Sending SIP response"),
    ("support.ice", "ICE candidate pair selected"),
    ("support.participant", "Media stream created"),
    ("support.rest", "REST request handled"),
)


def _support_fields(
    call: Call, rng: random.Random
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A support-log line about `call` (no Participant-id: not a call event, as in the
    support log, whose lines cdrecon stores but derives nothing from)."""
    name, message = rng.choice(SUPPORT_LINES)
    core = [
        ("Level", "INFO"),
        ("Name", name),
        ("Message", message),
        ("Conference", call.conference),
        ("Call-id", call.call_id),
    ]
    optional = [
        ("Stream-id", str(rng.randrange(1, 8))),
        ("Was", rng.choice(("GOOD", "OK", "BAD"))),
        ("Now", rng.choice(("GOOD", "OK", "BAD"))),
        ("Remote-address", call.remote_address),
        ("Media-node", call.media_node),
        ("Detail", "rx_bitrate=1843 tx_bitrate=2011 rx_loss=0.00 tx_loss=0.01 jitter=3"),
        ("Transport", rng.choice(("UDP", "TCP", "TLS"))),
        ("Codec", rng.choice(("H264", "VP8", "OPUS", "G722"))),
        ("Resolution", rng.choice(("1280x720", "1920x1080", "640x360"))),
    ]
    return core, optional


def pexip_frames(size: int = 500, seed: int = 5424, event_every: int = 1) -> Iterator[bytes]:
    """Endless distinct, framed Pexip log lines of roughly `size` bytes each.

    Calls go through attempting / joined / disconnected, interleaved as on a busy node. With
    `event_every` K > 1, only one line in K is such a call event (administrator log) and the
    others are support-log lines about the calls in progress: the realistic mix of a node
    that forwards its support log. The same seed gives the same lines.
    """
    rng = random.Random(seed)
    clock = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    live: list[tuple[Call, int]] = []
    line = 0
    while True:
        if len(live) < 40 or rng.random() < 0.3:
            live.append((_random_call(rng), 0))
        index = rng.randrange(len(live))
        call, step = live[index]
        clock += timedelta(microseconds=rng.randrange(1000, 250_000) // max(event_every, 1))
        line += 1
        if event_every > 1 and line % event_every:
            yield _rfc5424_frame(call.host, clock, _support_fields(call, rng), size)
            continue
        yield _rfc5424_frame(call.host, clock, _event_fields(call, step, rng), size)
        if step == 2:
            live.pop(index)
        else:
            live[index] = (call, step + 1)


def write_frames(paths: list[Path], per_file: int, frames: Iterator[bytes]) -> tuple[int, int]:
    """Write `per_file` frames from `frames` into each file; return (frames, bytes) written."""
    count = size = 0
    for path in paths:
        with path.open("wb") as out:
            for frame in itertools.islice(frames, per_file):
                out.write(frame)
                count += 1
                size += len(frame)
    return count, size
