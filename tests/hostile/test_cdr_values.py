"""Call events whose values do not fit a CDR column, sent to a real `cdrecon serve` on SQLite
and PostgreSQL beside a normal conference: the values are left out of their leg, and every
other leg of the batch is derived as without them, live and by `cdrecon rebuild` (issue 12)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import cdrs
from tests.cdr.scenario import CALL_EVENTS, EXPECTED, JOIN, LEAVE, LINES, admin
from tests.cdr.stored import legs
from tests.conftest import Service
from tests.hostile.conftest import rebuild
from tests.hostile.test_header_limits import octet_counted, send_tcp


def line(pid: str, message: str, fields: str, day: str = "2026-11-26") -> bytes:
    body = f"{day} 10:50:00,000 {admin(message, pid, fields)}"
    return f"<134>1 2026-11-26T10:50:00Z conf-a pexip - - - {body}".encode()


LONG = {
    "p-protocol": 'Protocol="' + "x" * 40 + '"',
    "p-role": 'Protocol="SIP" Role="' + "r" * 40 + '"',
    "p-direction": 'Protocol="SIP" Direction="' + "d" * 20 + '"',
    "p-address": 'Protocol="SIP" Remote-address="' + "1" * 300 + '"',
    "p-node": 'Protocol="SIP" Media-node="' + "n" * 300 + '"',
    "p-service": 'Protocol="SIP" Service-type="' + "s" * 70 + '"',
    # A Unicode digit: str.isdigit() says yes, int() says no.
    "p-port": 'Protocol="SIP" Remote-port="\u00b2"',
}
HOSTILE = [line(pid, JOIN, fields) for pid, fields in LONG.items()] + [
    # A leg whose join and disconnect are 80 years apart: its duration fits no Integer.
    line("p-decades", JOIN, 'Protocol="SIP"', day="1950-01-01"),
    line("p-decades", LEAVE, 'Protocol="SIP"', day="2030-01-01"),
]
HOSTILE_LEGS = {
    "p-protocol": ("open", None, None, None),
    **{pid: ("open", None, None, "SIP") for pid in list(LONG)[1:]},
    "p-decades": ("closed", None, None, "SIP"),
}


async def bounded_values(engine: AsyncEngine) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        query = select(
            cdrs.c.role,
            cdrs.c.call_direction,
            cdrs.c.remote_address,
            cdrs.c.media_node,
            cdrs.c.service_type,
            cdrs.c.remote_port,
        ).where(cdrs.c.id.in_(list(LONG)))
        return [tuple(row) for row in await conn.execute(query)]


async def test_values_too_long_for_a_cdr_column_are_left_out_and_the_batch_derived(
    served: Service, database_url: str, engine: AsyncEngine
) -> None:
    # One connection, one batch: the hostile lines share it with the conference.
    send_tcp(served, octet_counted(HOSTILE + [line.rfc5424() for line in LINES]))
    total = len(HOSTILE) + len(LINES)
    events = CALL_EVENTS + len(HOSTILE)
    assert served.wait_for("cdrecon_messages_stored_total", total, timeout=30) == total
    assert served.wait_for("cdrecon_events_total", events, timeout=30) == events
    assert served.metric("cdrecon_derive_errors_total") == 0
    assert served.stop() == 0

    expected = {**EXPECTED, **HOSTILE_LEGS}
    assert await legs(engine) == expected
    assert set(await bounded_values(engine)) == {(None,) * 6}

    assert f"events {events}," in rebuild(database_url)
    assert await legs(engine) == expected
