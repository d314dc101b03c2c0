"""SIGTERM while the database takes no writes: `cdrecon serve` ends within the drain timeout
plus the writer's stop bound, spilling what it could not commit beside the database; the next
start stores the spill before anything else. A real serve on SQLite and PostgreSQL (issue 12)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.cdr.scenario import CALL_EVENTS, EXPECTED, LINES
from tests.conftest import Service
from tests.hostile.conftest import writes_blocked
from tests.hostile.test_header_limits import octet_counted, send_tcp, stored_legs

# What the test waits for at most: a serve that never ends fails it, a slow one does not.
CEILING = 120.0


def spill_file(service: Service, database_url: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        return Path(url.database + ".spill.jsonl")
    return service.workdir / "cdrecon.spill.jsonl"  # the working directory


async def test_sigterm_spills_what_the_database_cannot_take_and_the_next_start_stores_it(
    served: Service, database_url: str
) -> None:
    spilled = spill_file(served, database_url)
    async with writes_blocked(database_url):
        send_tcp(served, octet_counted([line.rfc5424() for line in LINES]))
        deadline = time.monotonic() + CEILING
        while served.metric("cdrecon_ingest_queue_messages") < len(LINES):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert served.stop(timeout=CEILING) == 0
        assert len(spilled.read_text().splitlines()) == len(LINES)

    served.start()
    assert served.wait_for("cdrecon_messages_stored_total", len(LINES), CEILING) == len(LINES)
    assert served.wait_for("cdrecon_events_total", CALL_EVENTS, CEILING) == CALL_EVENTS
    assert served.stop() == 0
    assert not spilled.exists()
    assert await stored_legs(database_url) == EXPECTED
