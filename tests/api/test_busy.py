"""A request that cannot get the database's lock in time answers 503 `database_busy` with
Retry-After at once, changes nothing, and the same request works once the lock is free."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Service, writes_held

PARTICIPANT = (
    Path(__file__).parents[1]
    / "fixtures"
    / "history"
    / "history_participant_object.pexip-docs-example.json"
)


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Service]:
    service = Service(
        tmp_path,
        env={"CDRECON_DATABASE_URL": database_url, "CDRECON_REQUEST_DATABASE_WAIT": "0.5"},
    )
    service.start()
    yield service
    service.stop()


async def test_a_request_that_cannot_get_the_lock_answers_busy_and_changes_nothing(
    served: Service, database_url: str
) -> None:
    token = served.token()  # before the lock: creating it writes
    async with writes_held(database_url, "mn_participants"):
        busy = served.post("/api/v1/history", token=token, content=PARTICIPANT.read_bytes())
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"] == "database_busy"
        assert busy.headers["Retry-After"] == "1"
        # Reads go on meanwhile.
        assert served.get("/api/v1/audit", token=token).status_code == 200
    stored = served.post("/api/v1/history", token=token, content=PARTICIPANT.read_bytes())
    assert stored.status_code == 200, stored.text
    audit = served.get("/api/v1/audit", token=token).json()["items"]
    assert [entry["action"] for entry in audit].count("history.import") == 1
