"""The watch after each pull, against the real fake MN over HTTP and a real database: gap
alerts fire once, grow and clear; a restore is seen at the next pull; the webhook is signed."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.export.service import ExportRequest, create_export
from app.history.client import MNConnection
from app.history.pulling import pull_once
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from app.watch.restore import ClientProbe, vanished
from app.watch.service import (
    NotARestore,
    Notice,
    WatchConfig,
    acknowledge,
    confirm_restore,
    page_records,
    prune_superseded,
)
from app.watch.watcher import Watcher, confirming
from app.watch.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, Webhook, body, verify
from parsers.framing import Frame
from tests.conftest import free_port
from tests.history.fake_mn import FakeMN
from tests.reconcile.generator import Call
from tests.watch.timeline import Receiver, iso, mn_record, recent_calls, syslog_frames

SECRET = b"shared webhook secret"
SETTLE = timedelta(minutes=10)
WINDOW = timedelta(hours=6)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def calls_ending_an_hour_ago(count: int) -> list[Call]:
    """Calls 4 minutes apart, the last ending about an hour ago: all settled."""
    now = datetime.now(UTC).replace(microsecond=0)
    return recent_calls(count, now - timedelta(minutes=4 * count + 60), timedelta(minutes=4))


async def ingest(engine: AsyncEngine, calls: list[Call]) -> None:
    """The calls' syslog through the batch writer, as the receiver stores it."""
    writer = BatchWriter(engine, Metrics(), batch_size=500, linger=0)
    writer.start()
    writer.submit(Origin("tcp", "10.0.0.1", 1), [Frame(f) for f in syslog_frames(calls)])
    await writer.stop()


def watcher(
    engine: AsyncEngine,
    mn: FakeMN,
    metrics: Metrics,
    webhook: Webhook | None = None,
    *,
    confirm: bool = True,
) -> Watcher:
    """The watch as `serve` builds it (`confirm=False`: one that cannot confirm its runs)."""
    config = WatchConfig(
        settle_us=SETTLE // timedelta(microseconds=1), window_us=WINDOW // timedelta(microseconds=1)
    )
    connection = MNConnection(mn.url, mn.username, mn.password, requests_per_second=1e3)
    return Watcher(
        engine,
        config,
        mn.url,
        ClientProbe(connection),
        metrics,
        webhook=webhook,
        confirm=confirming(connection, engine) if confirm else None,
    )


async def cycle(engine: AsyncEngine, mn: FakeMN, watch: Watcher) -> list[Notice]:
    """One scheduled pull and the watch after it, as `serve` runs them."""
    _, as_of = await pull_once(engine, mn.url, mn.username, mn.password)
    return await watch.after_pull(as_of.us)


async def run_ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT id FROM reconciliations ORDER BY id"))
        items = await conn.execute(text("SELECT count(*) FROM reconciliation_items"))
        ids = [int(i) for (i,) in found]
        assert ids or items.scalar_one() == 0
        return ids


def gauge(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None
    return value


async def test_a_gap_alert_fires_once_with_its_window_grows_and_clears_when_exported(
    engine: AsyncEngine,
) -> None:
    calls = calls_ending_an_hour_ago(30)
    metrics = Metrics()
    # The MN went down after call 14 ended: it never wrote calls 15 on, which syslog has.
    with Receiver() as receiver, FakeMN([mn_record(c) for c in calls[:15]]) as mn:
        watch = watcher(engine, mn, metrics, Webhook(receiver.url, SECRET, backoff=0.01))
        await ingest(engine, calls[:20])
        [opened] = await cycle(engine, mn, watch)
        alert = opened.alert
        assert (opened.event, alert["kind"], alert["state"], alert["count"]) == (
            "opened",
            "gap",
            "open",
            5,
        )
        assert (alert["from"], alert["until"]) == (iso(calls[15].end), iso(calls[19].end))
        assert alert["last_kept_before"] == iso(calls[14].end)
        assert alert["first_kept_after"] is None  # the MN has written nothing since
        assert alert["nodes"] == ["conf-lon-1", "conf-nyc-1"]
        assert gauge(metrics, "cdrecon_gap_open") == 1
        assert gauge(metrics, "cdrecon_missing_in_mn") == 5
        assert gauge(metrics, "cdrecon_mn_restore_open") == 0

        # The next pull sees the same gap: it fired once, also for a watch started afresh
        # (a restart: the alerts are in the database).
        assert await cycle(engine, mn, watch) == []
        watch = watcher(engine, mn, metrics, Webhook(receiver.url, SECRET, backoff=0.01))
        assert await cycle(engine, mn, watch) == []

        # Still down: the calls ending meanwhile are missing too, and the same alert grows.
        await ingest(engine, calls[20:25])
        [grown] = await cycle(engine, mn, watch)
        assert (grown.event, grown.added, grown.alert["id"]) == ("grown", 5, alert["id"])
        assert grown.alert["count"] == 10
        assert (grown.alert["from"], grown.alert["until"]) == (
            iso(calls[15].end),
            iso(calls[24].end),
        )
        assert gauge(metrics, "cdrecon_missing_in_mn") == 10

        # The MN is back and writes the calls that end now: the gap stays as it was.
        mn.records["participant"].extend(mn_record(c) for c in calls[25:])
        await ingest(engine, calls[25:])
        assert await cycle(engine, mn, watch) == []

        # Every run holds lost records still to export: none is superseded yet.
        assert await prune_superseded(engine, time.time_ns() // 1000) == 0

        # Billing gets the lost records from the newest run that grew the alert: it clears.
        async with engine.begin() as conn:
            manifest, _ = await create_export(
                conn, engine, ExportRequest(run_id=grown.alert["run_id"]), "billing"
            )
        assert manifest["record_count"] == 10
        [cleared] = await cycle(engine, mn, watch)
        assert (cleared.event, cleared.alert["state"], cleared.alert["cleared_by"]) == (
            "cleared",
            "cleared",
            "exported",
        )
        assert gauge(metrics, "cdrecon_gap_open") == 0
        assert gauge(metrics, "cdrecon_missing_in_mn") == 0
        assert await cycle(engine, mn, watch) == []
        receiver.wait_for(3)
        # Exported, with the alert cleared: later runs supersede every earlier watch run.
        runs = await run_ids(engine)
        assert await prune_superseded(engine, time.time_ns() // 1000) == len(runs) > 5
        assert await run_ids(engine) == []

    assert [(event, a["id"], a["count"]) for event, a in receiver.events()] == [
        ("alert.opened", alert["id"], 5),
        ("alert.grown", alert["id"], 10),
        ("alert.cleared", alert["id"], 10),
    ]
    for delivery in receiver.deliveries:
        stamp = delivery.headers[TIMESTAMP_HEADER]
        assert verify(SECRET, stamp, delivery.body, delivery.headers[SIGNATURE_HEADER])
        assert not verify(
            b"another secret", stamp, delivery.body, delivery.headers[SIGNATURE_HEADER]
        )
        assert not verify(SECRET, stamp, delivery.body + b" ", delivery.headers[SIGNATURE_HEADER])


async def test_a_gap_the_mn_fills_late_clears_as_found(engine: AsyncEngine) -> None:
    calls = calls_ending_an_hour_ago(12)
    metrics = Metrics()
    # Nobody listens where the webhook posts: each change is stored and counted undelivered.
    nowhere = Webhook(f"http://127.0.0.1:{free_port()}/hook", SECRET, attempts=2, backoff=0.01)
    with FakeMN([mn_record(c) for c in calls[:8]]) as mn:
        watch = watcher(engine, mn, metrics, nowhere)
        await ingest(engine, calls)
        [opened] = await cycle(engine, mn, watch)
        assert (opened.event, opened.alert["count"]) == ("opened", 4)
        # The MN writes the four records after all (within the pull's overlap, so the next
        # pull reads them): they are not lost, and exporting them would bill them twice.
        mn.records["participant"].extend(mn_record(c) for c in calls[8:])
        [cleared] = await cycle(engine, mn, watch)
    assert (cleared.event, cleared.alert["id"], cleared.alert["cleared_by"]) == (
        "cleared",
        opened.alert["id"],
        "found on the MN",
    )
    assert gauge(metrics, "cdrecon_alert_webhook_failures_total") == 2


async def test_records_the_mn_held_and_then_lost_are_a_restore_alert_at_the_next_pull(
    engine: AsyncEngine,
) -> None:
    calls = calls_ending_an_hour_ago(20)
    metrics = Metrics()
    with FakeMN([mn_record(c) for c in calls]) as mn:
        watch = watcher(engine, mn, metrics)
        await ingest(engine, calls)
        assert await cycle(engine, mn, watch) == []
        # The MN's retention purge deletes its oldest records: not a restore.
        del mn.records["participant"][:3]
        assert await cycle(engine, mn, watch) == []
        # Restored from a backup: the MN loses five records it had written (and we pulled).
        del mn.records["participant"][7:12]  # calls 10-14
        before = datetime.now(UTC)
        [restore] = await cycle(engine, mn, watch)
        alert = restore.alert
        assert (restore.event, alert["kind"], alert["count"], alert["source"]) == (
            "opened",
            "restore",
            5,
            mn.url,
        )
        assert (alert["from"], alert["until"]) == (iso(calls[10].end), iso(calls[14].end))
        assert before <= datetime.fromisoformat(alert["first_seen"]) <= datetime.now(UTC)
        async with engine.connect() as conn:
            records, _ = await page_records(conn, alert["id"], None, 100)
        assert [r["id"] for r in records] == [c.pid for c in calls[10:15]]
        assert gauge(metrics, "cdrecon_mn_restore_open") == 1
        assert gauge(metrics, "cdrecon_mn_records_vanished") == 5
        first_seen = gauge(metrics, "cdrecon_mn_restore_first_seen_timestamp_seconds")
        assert first_seen == datetime.fromisoformat(alert["first_seen"]).timestamp()
        # Our copies still match syslog: no gap alert; and the known loss costs the MN one
        # count request at the next pull, not a listing.
        asked = len(mn.requests)
        assert await cycle(engine, mn, watch) == []
        probes = [r.query for r in mn.requests[asked:] if "end_time__lt" in r.query]
        assert [q.get("limit") for q in probes] == ["1"]

        async with engine.begin() as conn:
            acknowledged, changed = await acknowledge(conn, alert["id"], "ops", 1)
        assert changed and (acknowledged["state"], acknowledged["cleared_by"]) == ("cleared", "ops")


async def test_a_confirmed_restore_makes_its_records_lost_for_the_next_run_and_exportable(
    engine: AsyncEngine,
) -> None:
    calls = calls_ending_an_hour_ago(20)
    with FakeMN([mn_record(c) for c in calls]) as mn:
        watch = watcher(engine, mn, Metrics())
        await ingest(engine, calls)
        assert await cycle(engine, mn, watch) == []
        del mn.records["participant"][10:15]
        [restore] = await cycle(engine, mn, watch)
        async with engine.begin() as conn:
            _, removed = await confirm_restore(conn, restore.alert["id"])
        assert removed == 5
        async with engine.begin() as conn:
            assert (await confirm_restore(conn, restore.alert["id"]))[1] == 0
        async with engine.connect() as conn:
            kept = await conn.execute(
                text("SELECT record FROM watch_alert_records WHERE alert_id = :a"),
                {"a": restore.alert["id"]},
            )
            assert sorted(json.loads(r)["id"] for (r,) in kept) == [c.pid for c in calls[10:15]]

        # The next run counts them lost: a gap alert over the same records, exportable.
        [gap] = await cycle(engine, mn, watch)
        assert (gap.event, gap.alert["kind"], gap.alert["count"]) == ("opened", "gap", 5)
        assert (gap.alert["from"], gap.alert["until"]) == (iso(calls[10].end), iso(calls[14].end))
        async with engine.begin() as conn:
            with pytest.raises(NotARestore):
                await confirm_restore(conn, gap.alert["id"])
        async with engine.begin() as conn:
            await create_export(conn, engine, ExportRequest(run_id=gap.alert["run_id"]), "billing")
        cleared = await cycle(engine, mn, watch)
    assert sorted((n.alert["kind"], n.alert["cleared_by"]) for n in cleared) == [
        ("gap", "exported"),
        ("restore", "exported"),
    ]


async def test_a_large_window_is_halved_where_the_mn_holds_fewer_and_listed_only_there(
    engine: AsyncEngine,
) -> None:
    calls = calls_ending_an_hour_ago(40)
    with FakeMN([mn_record(c) for c in calls]) as mn:
        _, as_of = await pull_once(engine, mn.url, mn.username, mn.password)
        del mn.records["participant"][31:33]
        connection = MNConnection(mn.url, mn.username, mn.password, requests_per_second=1e3)
        asked = len(mn.requests)
        low = as_of.us - WINDOW // timedelta(microseconds=1)
        lost = await vanished(engine, ClientProbe(connection), mn.url, low, as_of.us, 4)
        listed = [r for r in mn.requests[asked:] if r.query.get("limit") != "1"]
    assert sorted(lost) == [calls[31].pid, calls[32].pid]
    # Only stretches of at most four pulled records were listed, never the whole window.
    assert listed and all(len(r.query) > 1 for r in listed)
    assert sum(1 for r in listed if r.query.get("offset", "0") == "0") <= 2


async def test_the_webhook_retries_what_may_pass_and_gives_up_on_a_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    content = body("opened", {"id": 1})
    with Receiver(failures=2) as receiver:
        assert await Webhook(receiver.url, SECRET, backoff=0.01).deliver(content)
        assert receiver.attempts == 3 and len(receiver.deliveries) == 1
    with Receiver(failures=1, failure_status=400) as receiver:
        assert not await Webhook(receiver.url, SECRET, backoff=0.01).deliver(content)
        assert receiver.attempts == 1
    with Receiver(failures=9) as receiver:
        secret_url = receiver.url + "?token=t0k3n"
        assert not await Webhook(secret_url, SECRET, attempts=3, backoff=0.01).deliver(content)
        assert receiver.attempts == 3
    # The log names the receiver, never a token in its path or query.
    assert "giving up" in caplog.text and "t0k3n" not in caplog.text and "/hook" not in caplog.text
