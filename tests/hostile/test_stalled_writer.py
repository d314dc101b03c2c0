"""A database that answers reads but takes no writes: /healthz says so, with the reason,
after a short grace, and the gauge of seconds since the last commit rises; both recover once
the batch commits. A real serve on SQLite and PostgreSQL (issue 12)."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.ingest.writer import HEALTH_GRACE
from tests.cdr.scenario import LINES
from tests.conftest import Service
from tests.hostile.conftest import writes_blocked
from tests.hostile.test_header_limits import octet_counted, send_tcp

# What a test waits for at most before it counts as failed: it never waits on time itself.
CEILING = 120.0


def eventually(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + CEILING
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


async def test_healthz_reports_a_writer_that_cannot_commit_and_recovers(
    served: Service, database_url: str
) -> None:
    assert served.get("/healthz", token="").status_code == 200
    async with writes_blocked(database_url):
        send_tcp(served, octet_counted([LINES[0].rfc5424()]))
        assert eventually(lambda: served.get("/healthz", token="").status_code == 503)
        health = served.get("/healthz", token="").json()
        assert health["status"] == "unavailable"
        assert "with 1 messages queued" in health["writer"]
        assert served.metric("cdrecon_seconds_since_commit") >= HEALTH_GRACE
        assert served.metric("cdrecon_messages_stored_total") == 0
    assert eventually(lambda: served.get("/healthz", token="").status_code == 200)
    assert served.metric("cdrecon_messages_stored_total") == 1
    assert served.metric("cdrecon_seconds_since_commit") < HEALTH_GRACE
    assert served.stop() == 0
