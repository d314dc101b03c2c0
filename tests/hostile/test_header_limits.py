"""One hostile frame must not cost anyone else's traffic: fields too long for their columns
and NUL bytes, sent to a real `cdrecon serve` on SQLite and PostgreSQL, followed by a
normal conference that must be stored and derived exactly as without them (issue 12)."""

from __future__ import annotations

import asyncio
import socket

from sqlalchemy import select

from app.db.engine import create_engine
from app.db.models import events, messages
from app.db.packing import unpack
from tests.cdr.scenario import CALL_EVENTS, EXPECTED, JOIN, LINES, Line, admin
from tests.cdr.stored import legs
from tests.conftest import Service
from tests.hostile.conftest import rebuild

# A PRI-less ISO line (Pexip's unified log shape): LF framing over TCP, not a bad count.
ISO_LINE = b"2026-03-02T10:00:00Z conf-a pexip: hello"
HOSTILE_DATAGRAMS = [
    b"<13>Mar  2 10:00:00 " + b"h" * 300 + b" app: hostname of 300",
    b"<13>Mar  2 10:00:00 conf-a " + b"t" * 100 + b": tag of 100",
    b'<14>1 2026-03-02T10:00:00Z conf-a app - - [x@1 v="a\x00b"] SD value with NUL',
    b"2026-03-02T10:00:00Z " + b"h" * 300 + b" ISO hostname of 300",
    # A call event whose Participant-id is too long for any leg.
    Line("conf-a", "10:50:00,000", admin(JOIN, "p" * 200, 'Protocol="SIP"')).rfc5424(),
]
# The hostile call event keeps its other keys, so it is one more (flagged) event.
HOSTILE_EVENTS = 1


def send_udp(service: Service, datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for datagram in datagrams:
            udp.sendto(datagram, ("127.0.0.1", service.udp_port))


def send_tcp(service: Service, stream: bytes) -> None:
    with socket.create_connection(("127.0.0.1", service.tcp_port)) as tcp:
        tcp.sendall(stream)


def octet_counted(frames: list[bytes]) -> bytes:
    return b"".join(b"%d %s" % (len(frame), frame) for frame in frames)


async def stored(database_url: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The stored messages' parsed fields (raw last), and the flagged events."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = select(
                messages.c.transport,
                messages.c.format,
                messages.c.hostname,
                messages.c.error,
                messages.c.raw,
                messages.c.packed,
            ).order_by(messages.c.id)
            rows = [
                (*row[:-2], unpack(bytes(row[-2]), row[-1])) for row in await conn.execute(query)
            ]
            query = select(events.c.participant_id, events.c.truncated).where(events.c.truncated)
            flagged = [tuple(row) for row in await conn.execute(query)]
        return rows, flagged
    finally:
        await engine.dispose()


async def stored_legs(database_url: str) -> dict[str, tuple[object, ...]]:
    engine = create_engine(database_url)
    try:
        return await legs(engine)
    finally:
        await engine.dispose()


def test_hostile_frames_leave_normal_traffic_stored_and_derived(
    served: Service, database_url: str
) -> None:
    send_udp(served, HOSTILE_DATAGRAMS)
    send_tcp(served, ISO_LINE + b"\n" + octet_counted([line.rfc5424() for line in LINES]))
    total = len(HOSTILE_DATAGRAMS) + 1 + len(LINES)
    assert served.wait_for("cdrecon_messages_stored_total", total, timeout=30) == total
    assert served.wait_for("cdrecon_events_total", CALL_EVENTS + HOSTILE_EVENTS, timeout=30) == (
        CALL_EVENTS + HOSTILE_EVENTS
    )
    assert served.metric("cdrecon_framing_errors_total") == 0
    assert served.metric("cdrecon_batch_errors_total") == 0
    assert served.stop() == 0  # SIGTERM finishes: nothing is left to retry

    rows, flagged = asyncio.run(stored(database_url))
    by_raw = {row[-1]: row[:-1] for row in rows}
    assert len(rows) == total
    # (The header fields besides the host are read from the frame: tests/parsers.)
    assert by_raw[HOSTILE_DATAGRAMS[0]] == ("udp", "rfc3164", None, None)
    assert by_raw[HOSTILE_DATAGRAMS[1]] == ("udp", "rfc3164", "conf-a", None)
    assert by_raw[HOSTILE_DATAGRAMS[2]] == ("udp", "rfc5424", "conf-a", None)
    iso_hostile = by_raw[HOSTILE_DATAGRAMS[3]]
    assert iso_hostile[1] == "raw"
    assert "HOSTNAME too long" in str(iso_hostile[3])
    assert by_raw[ISO_LINE] == ("tcp", "iso", "conf-a", None)
    assert flagged == [(None, True)]
    assert asyncio.run(stored_legs(database_url)) == EXPECTED

    # The same store rebuilds without tripping over them.
    assert f"events {CALL_EVENTS + HOSTILE_EVENTS}," in rebuild(database_url)
    assert asyncio.run(stored_legs(database_url)) == EXPECTED
