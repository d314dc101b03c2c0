"""A record the MN writes late, for a call older than an incremental pull reads back, is
never alerted or exported as lost on that pull's word; a record the MN really lost still
is. The real fake MN over HTTP, the real batch writer, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.tokens import Principal, Scope
from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.errors import InvalidInputError
from app.export.service import (
    ExportFormat,
    ExportRequest,
    HistoryUnconfirmed,
    create_export,
    stream_export,
)
from app.history.pulling import pull_once
from app.history.service import PULL_OVERLAP
from app.metrics import Metrics
from app.reconcile.service import newest_runs, reconcile
from app.times import to_us
from app.web.billing import load_billing_page
from app.web.render import render
from tests.conftest import Service
from tests.history.fake_mn import FakeMN
from tests.reconcile.generator import Call
from tests.watch.test_watch import calls_ending_an_hour_ago, cycle, ingest, watcher
from tests.watch.timeline import iso, mn_record

LATE, LOST = 3, 5  # the MN writes call 3's record late; call 5's it never writes


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def stored_mn_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return {str(i) for (i,) in await conn.execute(text("SELECT id FROM mn_participants"))}


async def exported_ids(engine: AsyncEngine, run_id: int) -> list[str]:
    """The ids in a new batch of run `run_id`'s lost records, as billing downloads it."""
    async with engine.begin() as conn:
        manifest, _ = await create_export(conn, engine, ExportRequest(run_id=run_id), "billing")
    body = b"".join([c async for c in stream_export(engine, manifest["id"], ExportFormat.JSONL)])
    return [json.loads(line)["id"] for line in body.decode().splitlines()]


async def refused(engine: AsyncEngine, run_id: int) -> str:
    """The export of run `run_id`'s lost records, refused: its message."""
    with pytest.raises(HistoryUnconfirmed) as caught:
        async with engine.begin() as conn:
            await create_export(conn, engine, ExportRequest(run_id=run_id), "billing")
    assert caught.value.status == 409
    with pytest.raises(InvalidInputError, match="incremental pull"):
        ExportRequest(run_id=run_id, status="unconfirmed").check()
    return str(caught.value)


def late_scenario(calls: list[Call]) -> FakeMN:
    """The MN before the node came back: every record but the late and the lost one."""
    return FakeMN([mn_record(c) for i, c in enumerate(calls) if i not in (LATE, LOST)])


async def node_comes_back(engine: AsyncEngine, mn: FakeMN, calls: list[Call]) -> None:
    """The node that was cut off reconnects: its syslog arrives, and the MN writes the record
    of one of its calls, which ended long before the pull's checkpoint less the overlap."""
    late_end, checkpoint = calls[LATE].end, calls[-1].end
    assert late_end is not None and checkpoint is not None
    assert late_end < checkpoint - PULL_OVERLAP
    await ingest(engine, [calls[LATE], calls[LOST]])
    mn.records["participant"].append(mn_record(calls[LATE]))


async def test_the_watch_alerts_only_the_lost_record_not_the_one_the_mn_wrote_late(
    engine: AsyncEngine,
) -> None:
    calls = calls_ending_an_hour_ago(20)
    metrics = Metrics()
    with late_scenario(calls) as mn:
        await ingest(engine, [c for i, c in enumerate(calls) if i not in (LATE, LOST)])
        assert await cycle(engine, mn, watcher(engine, mn, metrics)) == []  # a full pull
        await node_comes_back(engine, mn, calls)

        # A watch that cannot confirm: the incremental pull did not read the late record,
        # and nothing is alerted or exportable on its word.
        blind = watcher(engine, mn, metrics, confirm=False)
        assert await cycle(engine, mn, blind) == []
        assert calls[LATE].pid not in await stored_mn_ids(engine)
        async with engine.connect() as conn:
            [summary] = await newest_runs(conn, 1)
        assert (summary["counts"]["unconfirmed"], summary["counts"]["missing_in_mn"]) == (2, 0)
        run_id = summary["id"]
        assert "cdrecon pull-history --since" in await refused(engine, run_id)

        # The watch as serve runs it reads the lost records' window again: the late record
        # matches, the lost one alone is alerted and exported.
        [opened] = await cycle(engine, mn, watcher(engine, mn, metrics))
        confirming = [r for r in mn.requests if "end_time__lt" in r.query]
        assert confirming and all("participant" in r.path for r in confirming)
    assert calls[LATE].pid in await stored_mn_ids(engine)
    assert (opened.event, opened.alert["count"]) == ("opened", 1)
    assert opened.alert["from"] == opened.alert["until"]
    assert await exported_ids(engine, opened.alert["run_id"]) == [calls[LOST].pid]


async def test_a_run_after_an_incremental_pull_is_unconfirmed_until_a_pull_reads_its_window(
    engine: AsyncEngine,
) -> None:
    calls = calls_ending_an_hour_ago(20)
    first, last = calls[0].start - timedelta(minutes=5), calls[-1].start + timedelta(minutes=5)
    window = (to_us(first) or 0, to_us(last) or 0)
    with late_scenario(calls) as mn:
        await ingest(engine, [c for i, c in enumerate(calls) if i not in (LATE, LOST)])
        await pull_once(engine, mn.url, mn.username, mn.password)
        await node_comes_back(engine, mn, calls)
        await pull_once(engine, mn.url, mn.username, mn.password)  # from the checkpoint

        summary = await reconcile(engine, *window)
        assert summary["counts"]["unconfirmed"] == 2
        assert summary["counts"]["missing_in_mn"] == 0
        assert summary["gaps"] == []
        await refused(engine, summary["id"])

        # What the refusal says to do: pull the run's window again, and run again.
        await pull_once(engine, mn.url, mn.username, mn.password, since=first)
        again = await reconcile(engine, *window)
    assert again["counts"]["unconfirmed"] == 0
    assert again["counts"]["missing_in_mn"] == 1
    assert again["counts"]["matched"] == 19
    assert await exported_ids(engine, again["id"]) == [calls[LOST].pid]


async def test_a_record_lost_before_a_full_pull_is_confirmed_by_it(engine: AsyncEngine) -> None:
    calls = calls_ending_an_hour_ago(20)
    first, last = calls[0].start - timedelta(minutes=5), calls[-1].start + timedelta(minutes=5)
    with late_scenario(calls) as mn:
        await ingest(engine, calls)
        await pull_once(engine, mn.url, mn.username, mn.password)
        summary = await reconcile(engine, to_us(first) or 0, to_us(last) or 0)
    assert summary["counts"]["unconfirmed"] == 0
    assert summary["counts"]["missing_in_mn"] == 2
    assert sorted(await exported_ids(engine, summary["id"])) == sorted(
        [calls[LATE].pid, calls[LOST].pid]
    )


async def test_a_confirming_pull_that_fails_leaves_the_records_unconfirmed_and_unalerted(
    engine: AsyncEngine,
) -> None:
    calls = calls_ending_an_hour_ago(20)
    metrics = Metrics()
    with late_scenario(calls) as mn:
        await ingest(engine, [c for i, c in enumerate(calls) if i not in (LATE, LOST)])
        assert await cycle(engine, mn, watcher(engine, mn, metrics)) == []
        await node_comes_back(engine, mn, calls)
        # The MN answers the pull, then refuses everything (the confirming pull with it).
        watch = watcher(engine, mn, metrics)
        await pull_once(engine, mn.url, mn.username, mn.password)
        refused_from = len(mn.requests)
        mn.fail_requests = set(range(refused_from + 1, 100_000))
        mn.fail_status = 403
        assert await watch.after_pull(time.time_ns() // 1000) == []
        # The confirming pull asked (pages of 1000; the restore check asks for one record).
        confirming = [r for r in mn.requests[refused_from:] if r.query.get("limit") == "1000"]
        assert confirming and all("end_time__lt" in r.query for r in confirming)
        assert {r.status for r in confirming} == {403}
    async with engine.connect() as conn:
        [summary] = await newest_runs(conn, 1)
    assert (summary["counts"]["unconfirmed"], summary["counts"]["missing_in_mn"]) == (2, 0)
    await refused(engine, summary["id"])


async def test_the_api_shows_unconfirmed_records_and_refuses_their_run_until_a_pull_confirms(
    service: Service,
) -> None:
    calls = calls_ending_an_hour_ago(20)
    first, last = calls[0].start - timedelta(minutes=5), calls[-1].start + timedelta(minutes=5)
    window = {"from": iso(first), "until": iso(last)}
    url = f"sqlite+aiosqlite:///{service.db_path}"
    await asyncio.to_thread(upgrade, url)
    secret = service.workdir / "mn.pass"
    with late_scenario(calls) as mn:
        secret.write_text(mn.password)
        pull = ("pull-history", "--url", mn.url, "--user", mn.username, "--password-file")
        engine = create_engine(url)
        try:
            await ingest(engine, [c for i, c in enumerate(calls) if i not in (LATE, LOST)])
            await pull_once(engine, mn.url, mn.username, mn.password)
            await node_comes_back(engine, mn, calls)
        finally:
            await engine.dispose()
        service.start()
        service.cli(*pull, str(secret))  # incremental, from the checkpoint

        run = service.post("/api/v1/reconciliations", json=window).json()
        assert (run["counts"]["unconfirmed"], run["counts"]["missing_in_mn"]) == (2, 0)
        items = service.get(f"/api/v1/reconciliations/{run['id']}/items?status=unconfirmed")
        assert sorted(i["cdr_id"] for i in items.json()["items"]) == [
            calls[LATE].pid,
            calls[LOST].pid,
        ]
        billing = service.token("billing", "billing")
        refusal = service.post("/api/v1/exports", token=billing, json={"run_id": run["id"]})
        assert refusal.status_code == 409
        assert refusal.json()["error"] == "history_unconfirmed"
        assert "pull-history --since" in refusal.json()["detail"]
        assert service.get("/api/v1/exports", token=billing).json()["items"] == []

        # What the refusal says: pull the run's window again, and reconcile again.
        service.cli(*pull, str(secret), "--since", window["from"])
    again = service.post("/api/v1/reconciliations", json=window).json()
    assert (again["counts"]["unconfirmed"], again["counts"]["missing_in_mn"]) == (0, 1)
    made = service.post("/api/v1/exports", token=billing, json={"run_id": again["id"]})
    assert made.status_code == 201, made.text
    assert made.json()["record_count"] == 1
    download = service.get(f"/api/v1/exports/{made.json()['id']}/download?format=jsonl", billing)
    assert [json.loads(line)["id"] for line in download.text.splitlines()] == [calls[LOST].pid]


async def test_billing_sees_a_run_with_unconfirmed_records_as_not_billable_yet(
    engine: AsyncEngine,
) -> None:
    calls = calls_ending_an_hour_ago(20)
    first, last = calls[0].start - timedelta(minutes=5), calls[-1].start + timedelta(minutes=5)
    recent = len(calls) - 2  # ended after the incremental pull's start: that pull confirms it
    with FakeMN([mn_record(c) for i, c in enumerate(calls) if i not in (LATE, LOST, recent)]) as mn:
        await ingest(engine, [c for i, c in enumerate(calls) if i not in (LATE, LOST)])
        await pull_once(engine, mn.url, mn.username, mn.password)
        await node_comes_back(engine, mn, calls)
        await pull_once(engine, mn.url, mn.username, mn.password)
        summary = await reconcile(engine, to_us(first) or 0, to_us(last) or 0)
    assert (summary["counts"]["unconfirmed"], summary["counts"]["missing_in_mn"]) == (2, 1)
    await refused(engine, summary["id"])
    async with engine.connect() as conn:
        view = await load_billing_page(conn, Principal("billing", Scope.BILLING))
    [run] = view.runs
    assert (run.run_id, run.remaining, run.unconfirmed) == (summary["id"], 1, 2)
    html = bytes(render("billing.html", principal=view.principal, view=view).body).decode()
    assert f'id="unconfirmed-{summary["id"]}"' in html and "Not billable yet" in html
    assert f'id="bill-run-{summary["id"]}"' not in html
