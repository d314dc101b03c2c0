"""`cdrecon pull-history` against a real HTTP server speaking the MN's Tastypie contract."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db.engine import create_engine
from app.history import service
from app.history.client import HistoryClient, MNConnection, MNError
from app.history.service import HistoryImport
from tests.conftest import CDRECON
from tests.history.fake_mn import (
    FakeMN,
    make_conferences,
    make_participants,
    mn_time,
    parse_mn_time,
)


def pull(db: Path, mn: FakeMN, password_file: Path) -> str:
    env = {**os.environ, "CDRECON_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    done = subprocess.run(
        [
            CDRECON,
            "pull-history",
            "--url",
            mn.url,
            "--user",
            "admin",
            "--password-file",
            str(password_file),
        ],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def stored(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db) as conn:
        participants = conn.execute("select count(*) from mn_participants").fetchone()[0]
        conferences = conn.execute("select count(*) from mn_conferences").fetchone()[0]
        checkpoint = conn.execute(
            "select end_us from pull_checkpoints where resource = 'participant'"
        ).fetchone()[0]
    return participants, conferences, checkpoint


def test_pull_pages_through_failures_and_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "cdrecon.db"
    secret = tmp_path / "mn.pass"
    secret.write_text("secret\n")
    participants = make_participants(2500)
    # The second request, the second page of participants, fails once with 503.
    with FakeMN(participants, make_conferences(participants), fail_requests={2}) as mn:
        out = pull(db, mn, secret)
        assert "2500 participant" in out
        failed, retried = mn.requests[1:3]
        assert (failed.status, retried.status) == (503, 200)
        assert retried.target == failed.target  # the same page asked for again
        assert failed.query["end_time__gte"] == participants[999]["end_time"]
        count, conferences, checkpoint = stored(db)
        assert (count, conferences) == (2500, len(make_conferences(participants)))
        last_end = max(parse_mn_time(str(p["end_time"])) for p in participants)
        assert checkpoint == round(last_end.replace(tzinfo=UTC).timestamp() * 1_000_000)

        # The MN writes more records; the next pull starts from the checkpoint (less a
        # safety overlap) instead of from the beginning.
        newer = make_participants(
            50,
            start=parse_mn_time(str(participants[-1]["start_time"])) + timedelta(hours=1),
            seed=9,
        )
        mn.records["participant"] = participants + newer
        before = len(mn.requests)
        pull(db, mn, secret)
        second = [r for r in mn.requests[before:] if "participant" in r.path]
        assert all("end_time__gte" in r.query for r in second)
        assert len(second) == 1  # only the last stretch is read again
        assert stored(db)[0] == 2550


# -- keyset paging, in process --------------------------------------------------------------


async def pull_in_process(database_url: str, mn: FakeMN, max_retries: int = 5) -> HistoryImport:
    """One pull with pages of 100 and no rate limit, straight through the service."""
    engine = create_engine(database_url)
    settings = MNConnection(
        mn.url,
        mn.username,
        mn.password,
        page_size=100,
        backoff=0.01,
        requests_per_second=1e3,
        max_retries=max_retries,
    )
    try:
        async with HistoryClient(settings) as client:
            return await service.pull(engine, client.page, mn.url, HistoryClient.window_filters)
    finally:
        await engine.dispose()


async def stored_ids(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("select id from mn_participants"))
            return [row[0] for row in rows]
    finally:
        await engine.dispose()


async def test_records_purged_during_a_pull_shift_nothing_past_a_page(database_url: str) -> None:
    participants = make_participants(350)
    purged: list[str] = []

    def purge_oldest(resource: str, query: dict[str, str]) -> None:
        # Right after the first page is served, the MN's retention purge deletes the 30
        # oldest records in the window: paged by offset, the next page would start 30
        # records too late.
        if resource == "participant" and not purged:
            records = mn.records["participant"]
            purged.extend(p["id"] for p in records[:30])
            del records[:30]

    with FakeMN(list(participants), after_page=purge_oldest) as mn:
        result = await pull_in_process(database_url, mn)
        queries = [r.query for r in mn.requests if r.path.endswith("/participant/")]
    ids = await stored_ids(database_url)
    assert len(purged) == 30
    # Every record: those purged had been served on the first page before they went.
    assert sorted(ids) == sorted(p["id"] for p in participants)
    assert result.participants == 350  # records read again at T are not counted twice
    # Each request after the first starts from the newest end_time seen, at offset 0.
    assert [q.get("offset", "0") for q in queries] == ["0"] * 4
    assert [q.get("end_time__gte") for q in queries] == [
        None,
        *(participants[i]["end_time"] for i in (99, 198, 297)),
    ]


async def test_a_run_of_equal_end_times_longer_than_a_page_is_paged_through(
    database_url: str,
) -> None:
    participants = make_participants(350)
    tie = participants[299]["end_time"]
    for participant in participants[50:300]:
        participant["end_time"] = tie
    with FakeMN(participants) as mn:
        result = await pull_in_process(database_url, mn)
        queries = [r.query for r in mn.requests if r.path.endswith("/participant/")]
    assert sorted(await stored_ids(database_url)) == sorted(p["id"] for p in participants)
    assert result.participants == 350
    # From the tie on, T cannot advance: its 250 records are paged by offset, then the
    # page that reaches past them advances T and ends the pull.
    assert [(q.get("end_time__gte"), q.get("offset", "0")) for q in queries] == [
        (None, "0"),
        (tie, "0"),
        (tie, "100"),
        (tie, "200"),
    ]


async def test_an_interrupted_pull_resumes_from_the_last_page_it_stored(
    database_url: str,
) -> None:
    participants = make_participants(350)
    # The third request fails and, with no retries allowed, ends the pull after two pages.
    with FakeMN(participants, fail_requests={3}) as mn:
        with pytest.raises(MNError, match="HTTP 503"):
            await pull_in_process(database_url, mn, max_retries=0)
        # Two pages of 100 that share one record: the second starts at the first's newest.
        assert len(await stored_ids(database_url)) == 199
        before = len(mn.requests)
        await pull_in_process(database_url, mn)
        resumed = mn.requests[before].query
    assert sorted(await stored_ids(database_url)) == sorted(p["id"] for p in participants)
    # The second pull starts from the checkpoint (the second page's newest end_time) less
    # the overlap, not from the beginning.
    checkpoint = parse_mn_time(str(participants[198]["end_time"]))
    assert resumed["end_time__gte"] == mn_time(checkpoint - timedelta(minutes=10))
