"""History coverage: each import and pull says how far the MN history reaches, and a run
is refused where none reaches, and holds back the calls that ended after it."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.db.models import history_coverage, mn_participants, reconciliations
from app.history import coverage
from app.history.status import read_status
from app.reconcile.service import page_items
from app.times import iso
from tests.conftest import Service, cdrecon
from tests.history.fake_mn import FakeMN, make_conferences, make_participants
from tests.reconcile.generator import generate
from tests.reconcile.loading import loaded_engine, us

SCENARIO = generate(seed=13, days=2, calls_per_day=50)
WINDOW = ("--from", iso(us(SCENARIO.window[0])), "--until", iso(us(SCENARIO.window[1])))
NEWEST_END = max(us(datetime.fromisoformat(f"{r['end_time']}+00:00")) for r in SCENARIO.mn_records)
AFTER = sorted(pid for pid, status in SCENARIO.expected.items() if status == "after_history")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The scenario's syslog, and no MN history yet."""
    async with loaded_engine(database_url, SCENARIO, history=False) as engine:
        yield engine


async def cli(database_url: str, *args: str) -> tuple[int, str, str]:
    """`cdrecon ARGS` in another process (off the event loop): exit code, stdout, stderr."""
    done = await asyncio.to_thread(cdrecon, database_url, *args)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def coverage_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(select(history_coverage).order_by(history_coverage.c.id))
        return [dict(row._mapping) for row in result]


def export_file(tmp_path: Path, mtime: int | None = None) -> Path:
    """The scenario's MN history as an export file, written now (as a copy would be)."""
    path = tmp_path / "mn.json"
    path.write_text(json.dumps(SCENARIO.mn_records))
    if mtime is not None:
        os.utime(path, ns=(mtime * 1000, mtime * 1000))
    return path


async def test_a_run_with_no_history_is_refused_naming_what_to_import_unless_forced(
    engine: AsyncEngine, database_url: str
) -> None:
    code, out, err = await cli(database_url, "reconcile", *WINDOW)
    assert code != 0 and out == ""
    assert "no MN history has been imported or pulled" in err
    assert "cdrecon import-history" in err and "cdrecon pull-history" in err
    assert "Traceback" not in err
    assert await count(engine, reconciliations) == 0
    # Forced, the run goes ahead and says so.
    code, out, err = await cli(database_url, "reconcile", *WINDOW, "--force")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["coverage"]["forced"] is True
    assert "no MN history has been imported or pulled" in summary["coverage"]["warning"]
    assert summary["coverage"]["as_of"] is None and summary["coverage"]["oldest_record"] is None
    # The operator vouched for the (empty) history: every unmatched closed call counts lost.
    assert summary["counts"]["after_history"] == 0
    assert summary["counts"]["missing_in_mn"] > len(SCENARIO.lost)


async def test_history_that_ends_before_the_window_is_refused(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    path = export_file(tmp_path)
    code, _, err = await cli(database_url, "import-history", str(path))
    assert code == 0, err
    later = ("--from", iso(NEWEST_END), "--until", iso(NEWEST_END + 86_400_000_000))
    code, out, err = await cli(database_url, "reconcile", *later)
    assert code != 0 and out == ""
    assert f"complete only up to {iso(NEWEST_END)} ({path}, newest end_time)" in err
    assert f"Import an MN export made after {iso(NEWEST_END)}" in err
    assert await count(engine, reconciliations) == 0


async def test_a_copied_file_is_complete_up_to_its_newest_end_time(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    """The copy's modification time is now, long after the export: calls that ended between
    the two must not look lost."""
    path = export_file(tmp_path)
    assert path.stat().st_mtime_ns // 1000 > us(SCENARIO.as_of) > NEWEST_END
    code, out, err = await cli(database_url, "import-history", str(path))
    assert code == 0, err
    assert f"complete up to {iso(NEWEST_END)} (newest end_time)" in out
    code, out, err = await cli(database_url, "reconcile", *WINDOW)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["counts"]["missing_in_mn"] == len(SCENARIO.lost)
    assert summary["counts"]["after_history"] == len(AFTER) > 0
    coverage = summary["coverage"]
    assert coverage["as_of"] == {
        "time": iso(NEWEST_END),
        "source": str(path),
        "kind": "file",
        "basis": "newest end_time",
    }
    oldest = min(
        us(datetime.fromisoformat(f"{r['start_time']}+00:00"))
        for r in SCENARIO.mn_records
        if r["start_time"]
    )
    assert coverage["oldest_record"] == {"time": iso(oldest), "source": str(path)}
    assert coverage["forced"] is False and coverage["warning"] is None
    # Listed under their own status, and the run's export of lost records leaves them out.
    async with engine.connect() as conn:
        listed, _ = await page_items(conn, summary["id"], "after_history", None, 1000)
    assert sorted(item["cdr_id"] for item in listed) == AFTER
    lost = tmp_path / "lost.jsonl"
    export = ("export", "--run", str(summary["id"]), "--format", "jsonl")
    code, _, err = await cli(database_url, *export, "-o", str(lost))
    assert code == 0, err
    exported = {json.loads(line)["id"] for line in lost.read_text().splitlines()}
    assert exported == set(SCENARIO.lost)


async def test_a_file_written_before_its_newest_end_time_is_complete_up_to_its_mtime(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    written = NEWEST_END - 3_600_000_000
    path = export_file(tmp_path, mtime=written)
    code, out, err = await cli(database_url, "import-history", str(path))
    assert code == 0, err
    assert f"complete up to {iso(written)} (file mtime)" in out
    [row] = await coverage_rows(engine)
    assert (row["kind"], row["as_of_us"], row["basis"]) == ("file", written, "file mtime")
    assert row["records"] == len(SCENARIO.mn_records)


async def test_the_operator_says_when_an_export_was_made(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    path = export_file(tmp_path)
    future = iso(time.time_ns() // 1000 + 86_400_000_000)
    too_early = iso(NEWEST_END - 1_000_000)
    for as_of, reason in ((future, "is in the future"), (too_early, "before the newest end_time")):
        code, _, err = await cli(database_url, "import-history", "--as-of", str(as_of), str(path))
        assert code != 0 and reason in err and "Traceback" not in err
    # Refused whole: neither the records nor an "as of".
    assert await count(engine, mn_participants) == 0
    assert await coverage_rows(engine) == []
    code, out, err = await cli(
        database_url, "import-history", "--as-of", SCENARIO.as_of.isoformat(), str(path)
    )
    assert code == 0, err
    assert f"complete up to {iso(us(SCENARIO.as_of))} (operator)" in out
    [row] = await coverage_rows(engine)
    assert (row["as_of_us"], row["basis"]) == (us(SCENARIO.as_of), "operator")


async def test_a_pull_is_complete_up_to_when_it_started(database_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "mn.pass"
    secret.write_text("secret\n")
    participants = make_participants(40, datetime(2026, 11, 20, 8, 0))
    conferences = make_conferences(participants)
    engine = create_engine(database_url)
    try:
        with FakeMN(participants, conferences) as mn:
            pull = ("pull-history", "--url", mn.url, "--user", "admin")
            before = time.time_ns() // 1000
            code, out, err = await cli(database_url, *pull, "--password-file", str(secret))
            after = time.time_ns() // 1000
            assert code == 0, err
            [row] = await coverage_rows(engine)
            assert (row["kind"], row["source"], row["basis"]) == ("pull", mn.url, "pull start")
            assert before <= row["as_of_us"] <= after
            assert row["records"] == len(participants) + len(conferences)
            assert f"complete up to {iso(row['as_of_us'])} (pull start)" in out
            # Nothing new on the MN: the history still reaches further with each pull.
            code, _, err = await cli(database_url, *pull, "--password-file", str(secret))
            assert code == 0, err
            newest = (await coverage_rows(engine))[-1]
            assert newest["as_of_us"] > row["as_of_us"]
        # A pull that fails claims nothing.
        with FakeMN(participants, bodies={0: ("text/html", b"<html>login</html>")}) as broken:
            code, _, _ = await cli(
                database_url,
                "pull-history",
                "--url",
                broken.url,
                "--user",
                "admin",
                "--password-file",
                str(secret),
            )
            assert code != 0
        assert len(await coverage_rows(engine)) == 2
        # The console's view: the last load is the second pull, the last attempt failed.
        async with engine.connect() as conn:
            status = await read_status(conn)
        assert status.participants == len(participants)
        assert status.last_load is not None
        assert (status.last_load.kind, status.last_load.as_of_us) == ("pull", newest["as_of_us"])
        assert status.last_load.records == newest["records"]
        last = status.last_pull
        assert last is not None and last.url == broken.url and last.records is None
        assert last.error and "html" in last.error.lower()
        assert last.started_us <= last.finished_us
    finally:
        await engine.dispose()


def test_the_api_refuses_a_run_without_history_with_409(service: Service) -> None:
    service.start()
    window = {"from": SCENARIO.window[0].isoformat(), "until": SCENARIO.window[1].isoformat()}
    refused = service.post("/api/v1/reconciliations", json=window)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "history_not_covered"
    assert "POST /api/v1/history" in refused.json()["detail"]
    # An upload without `as_of` is complete up to its newest end_time.
    uploaded = service.post(
        "/api/v1/history", params={"filename": "mn.json"}, content=json.dumps(SCENARIO.mn_records)
    )
    assert uploaded.status_code == 200, uploaded.text
    assert (uploaded.json()["as_of"], uploaded.json()["as_of_basis"]) == (
        iso(NEWEST_END),
        "newest end_time",
    )
    ran = service.post("/api/v1/reconciliations", json=window)
    assert ran.status_code == 201 and ran.json()["coverage"]["forced"] is False
    # A window after everything the history reaches: refused, unless forced.
    later = datetime.fromtimestamp(NEWEST_END / 1e6, UTC) + timedelta(hours=1)
    beyond = {"from": later.isoformat(), "until": (later + timedelta(days=1)).isoformat()}
    assert service.post("/api/v1/reconciliations", json=beyond).status_code == 409
    forced = service.post("/api/v1/reconciliations", json={**beyond, "force": True})
    assert forced.status_code == 201, forced.text
    assert forced.json()["coverage"]["forced"] is True
    audit = service.get("/api/v1/audit").json()["items"]
    assert [e["parameters"]["forced"] for e in audit if e["action"] == "reconciliation.run"] == [
        True,
        False,
    ]


# -- which reads confirm a lost record ---------------------------------------------------

MINUTE = 60_000_000


@pytest.mark.parametrize(
    ("reads", "end", "confirmed"),
    [
        pytest.param(((None, None),), 50 * MINUTE, True, id="a-whole-export-or-first-pull"),
        pytest.param(((40 * MINUTE, None),), 50 * MINUTE, True, id="read-by-the-newest-pull"),
        pytest.param(((51 * MINUTE, None),), 50 * MINUTE, False, id="older-than-the-pull-read"),
        pytest.param(
            ((50 * MINUTE - 1_000_000, None),), 50 * MINUTE, False, id="within-the-tolerance"
        ),
        pytest.param(
            ((51 * MINUTE, None), (45 * MINUTE, 55 * MINUTE)), 50 * MINUTE, True, id="confirmed"
        ),
        pytest.param(
            ((51 * MINUTE, None), (45 * MINUTE, 50 * MINUTE + 2_000_000)),
            50 * MINUTE,
            False,
            id="confirming-read-ends-within-the-tolerance",
        ),
        pytest.param(((None, None),), None, False, id="no-end-known"),
        pytest.param((), 50 * MINUTE, False, id="no-read"),
    ],
)
def test_a_lost_record_is_confirmed_only_where_a_fresh_read_covered_its_end(
    reads: tuple[tuple[int | None, int | None], ...], end: int | None, confirmed: bool
) -> None:
    found = coverage.Coverage(None, None, 100 * MINUTE, "mn", "pull", "pull start", reads)
    assert found.confirms(end, tolerance_us=2_000_000) is confirmed


def test_confirming_windows_cover_each_end_with_its_margin_and_join_near_ones() -> None:
    hour = 60 * MINUTE
    ends = [10 * hour, 10 * hour + 30 * MINUTE, 20 * hour]
    windows = coverage.confirm_windows(reversed(ends), tolerance_us=2_000_000)
    margin = coverage.CONFIRM_MARGIN_US
    assert windows == [
        (10 * hour - margin, 10 * hour + 30 * MINUTE + margin + 1),
        (20 * hour - margin, 20 * hour + margin + 1),
    ]
    for end in ends:
        reads = tuple((low, high) for low, high in windows)
        assert coverage.Coverage(None, None, 0, None, None, None, reads).confirms(end, 2_000_000)
    # A tolerance wider than the margin widens the windows with it.
    wide = coverage.confirm_windows([hour], tolerance_us=margin)
    assert wide == [(hour - 2 * margin, hour + 2 * margin + 1)]
    assert coverage.confirm_windows([], tolerance_us=0) == []
