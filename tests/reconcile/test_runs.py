"""A run's states and transactions: it reads one snapshot and writes in short transactions,
so ingest commits while it works; until done it is shown and used nowhere; a failed or
interrupted run says so and keeps no items."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.engine import create_engine
from app.db.models import messages, reconciliation_items, reconciliations
from app.export.service import ExportRequest, create_export
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from app.reconcile import service
from app.reconcile.repository import ReconcileRepository
from app.reconcile.runs import RunState, this_process
from app.reconcile.service import INTERRUPTED
from app.retention.repository import unexported_lost
from parsers.framing import Frame
from tests.conftest import Service
from tests.reconcile.generator import generate
from tests.reconcile.loading import loaded_engine, us

SCENARIO = generate(seed=11, days=2, calls_per_day=80)
WINDOW = (us(SCENARIO.window[0]), us(SCENARIO.window[1]))
EXPECTED = Counter(SCENARIO.expected.values())
# Seconds a test waits for what it expects before it counts as failed.
CEILING = 60.0
HOUR_US = 3600 * 1_000_000


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with loaded_engine(database_url, SCENARIO) as engine:
        yield engine


@dataclass
class Hold:
    """Holds a run when it is about to read its `at`-th slice, until released."""

    at: int
    reached: asyncio.Event
    release: asyncio.Event


@asynccontextmanager
async def held_run(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, at: int = 3
) -> AsyncIterator[tuple[asyncio.Task[dict[str, Any]], Hold]]:
    """A run over the scenario's window in hour-long slices and 5 items a transaction, held
    before it reads slice `at` (the earlier slices' items stored) until released."""
    hold = Hold(at, asyncio.Event(), asyncio.Event())
    read = ReconcileRepository.syslog_rows
    slices = 0

    async def syslog_rows(
        self: ReconcileRepository, conn: AsyncConnection, from_us: int, until_us: int
    ) -> list[Any]:
        nonlocal slices
        slices += 1
        if slices == hold.at:
            hold.reached.set()
            await hold.release.wait()
        return await read(self, conn, from_us, until_us)

    monkeypatch.setattr(ReconcileRepository, "syslog_rows", syslog_rows)
    monkeypatch.setattr(service, "SLICE_US", HOUR_US)
    # A few items a transaction: the first slices' are stored by the time the run is held.
    monkeypatch.setattr(service, "ITEMS_PER_TRANSACTION", 5)
    run = asyncio.create_task(service.reconcile(engine, *WINDOW, created_by="test"))
    try:
        await _until(hold.reached.wait(), run)
        yield run, hold
    finally:
        hold.release.set()
        if not run.done():
            await asyncio.wait([run], timeout=CEILING)


async def _until(waited: Awaitable[Any], run: asyncio.Task[Any]) -> None:
    """Wait for `waited`, failing at once if the run ends first (with its error)."""
    task = asyncio.ensure_future(waited)
    done, _ = await asyncio.wait([task, run], timeout=CEILING, return_when="FIRST_COMPLETED")
    if run in done:
        task.cancel()
        run.result()
        pytest.fail("the run ended before it was held")
    assert task in done, "the run was never held"


async def only_run(conn: AsyncConnection) -> dict[str, Any]:
    [row] = (await conn.execute(select(reconciliations))).mappings().all()
    return dict(row)


async def items(engine: AsyncEngine, run_id: int) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).where(reconciliation_items.c.run_id == run_id)
        return int((await conn.execute(query)).scalar_one())


def expected_counts(summary: dict[str, Any]) -> dict[str, int]:
    return {status: EXPECTED.get(status, 0) for status in summary["counts"]}


async def test_the_batch_writer_commits_while_a_run_is_between_slices(
    engine: AsyncEngine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer's engine waits a millisecond for a lock: a run that held the write lock
    # between its slices (as it did, on SQLite) makes its commit fail at once.
    writer_engine = create_engine(database_url, request_wait=0.001)
    metrics = Metrics()
    writer = BatchWriter(writer_engine, metrics, batch_size=10, linger=0)
    try:
        async with held_run(engine, monkeypatch) as (run, _):
            async with engine.connect() as conn:
                before = (
                    await conn.execute(select(func.count()).select_from(messages))
                ).scalar_one()
            writer.start()
            frame = Frame(b"<134>1 2026-12-01T10:00:00Z conf-x pexip - - - while a run is held")
            writer.submit(Origin("tcp", "10.0.0.9", 1), [frame] * 10)
            drained = asyncio.ensure_future(writer.drained())

            def failed() -> bool:
                return bool(metrics.registry.get_sample_value("cdrecon_write_errors_total"))

            # The writer retries a failed commit for ever: its error count tells at once.
            while not drained.done() and not failed():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            assert not failed(), "the writer could not commit while the run was held"
            async with engine.connect() as conn:
                after = (
                    await conn.execute(select(func.count()).select_from(messages))
                ).scalar_one()
            assert after == before + 10
            assert not run.done()
        summary = await run
        assert summary["counts"] == expected_counts(summary)
    finally:
        await writer.stop()
        await writer_engine.dispose()


async def test_a_run_reads_one_snapshot_whatever_commits_meanwhile(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with held_run(engine, monkeypatch) as (run, hold):
        # Every CDR gone before the run reads the later slices: it must still see them.
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DELETE FROM cdrs")
        hold.release.set()
        summary = await run
    assert summary["counts"] == expected_counts(summary)
    [gap] = summary["gaps"]
    assert gap["count"] == len(SCENARIO.lost)
    async with engine.connect() as conn:
        stored, _ = await service.page_items(conn, summary["id"], None, None, 100_000)
    assert [item["seq"] for item in stored] == list(range(1, len(stored) + 1))
    assert {i["cdr_id"] or i["mn_id"]: i["status"] for i in stored} == SCENARIO.expected


async def test_a_running_run_is_shown_and_used_nowhere_until_done(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    earlier = await service.reconcile(engine, *WINDOW, created_by="test")
    async with held_run(engine, monkeypatch) as (run, hold):
        [run_id] = await _running(engine)
        async with engine.connect() as conn:
            row = await ReconcileRepository().get_run(conn, run_id)
            assert row is not None and row["summary"] == "{}" and row["finished_us"] is None
            assert await items(engine, run_id) > 0  # the earlier slices' items, committed
            assert [s["id"] for s in await service.newest_runs(conn, 10)] == [earlier["id"]]
            for read in (
                service.get_summary(conn, run_id),
                service.page_items(conn, run_id, None, None, 10),
            ):
                with pytest.raises(service.RunNotFinished, match="is still running"):
                    await read
        with pytest.raises(service.RunNotFinished):
            async with engine.begin() as conn:
                await create_export(conn, engine, ExportRequest(run_id=run_id), "test")
        hold.release.set()
        summary = await run
    async with engine.connect() as conn:
        row = await ReconcileRepository().get_run(conn, run_id)
        assert row is not None and row["status"] == RunState.DONE and row["finished_us"]
        assert await service.get_summary(conn, run_id) == summary
        newest = [s["id"] for s in await service.newest_runs(conn, 10)]
    assert newest == [run_id, earlier["id"]]


async def test_a_failing_run_is_marked_failed_with_its_reason_and_keeps_no_items(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with held_run(engine, monkeypatch) as (run, hold):
        run_id = (await _running(engine))[0]
        assert await items(engine, run_id) > 0

        async def broken(*_: Any) -> list[Any]:
            raise RuntimeError("the disk said no")

        monkeypatch.setattr(ReconcileRepository, "mn_rows", broken)
        hold.release.set()
        with pytest.raises(RuntimeError, match="the disk said no"):
            await run
    async with engine.connect() as conn:
        row = await only_run(conn)
        assert row["status"] == RunState.FAILED
        assert row["failure"] == "RuntimeError: the disk said no"
        assert await service.newest_runs(conn, 10) == []
        with pytest.raises(service.RunNotFinished, match="failed: RuntimeError: the disk said no"):
            await service.get_summary(conn, run_id)
    assert await items(engine, run_id) == 0


async def test_what_is_done_in_the_finishing_transaction_fails_the_run_with_it(
    engine: AsyncEngine,
) -> None:
    async def refuse(conn: AsyncConnection, summary: dict[str, Any]) -> None:
        raise RuntimeError("audit refused")

    with pytest.raises(RuntimeError, match="audit refused"):
        await service.reconcile(engine, *WINDOW, then=refuse)
    async with engine.connect() as conn:
        row = await only_run(conn)
    assert (row["status"], row["summary"]) == (RunState.FAILED, "{}")


async def test_a_cancelled_run_is_marked_failed(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with held_run(engine, monkeypatch) as (run, _):
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    async with engine.connect() as conn:
        row = await only_run(conn)
    assert row["status"] == RunState.FAILED
    assert "cancelled" in row["failure"]
    assert await items(engine, int(row["id"])) == 0


async def test_a_failed_runs_lost_records_hold_nothing_back_from_retention(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with held_run(engine, monkeypatch) as (run, hold):
        async with engine.connect() as conn:
            held = set((await conn.execute(unexported_lost())).scalars())
        hold.release.set()
        await run
    # A running run's lost records are kept (it may finish); so are a done run's.
    async with engine.begin() as conn:
        kept = set((await conn.execute(unexported_lost())).scalars())
        assert held <= kept and kept == set(SCENARIO.lost)
        await conn.execute(reconciliations.update().values(status=RunState.FAILED))
        assert set((await conn.execute(unexported_lost())).scalars()) == set()


async def _running(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        query = select(reconciliations.c.id).where(reconciliations.c.status == RunState.RUNNING)
        return [int(i) for i in (await conn.execute(query)).scalars()]


# A run in a process of its own, held before its third slice: "held <id>" once it is.
CHILD = """
import asyncio, sys
from app.db.engine import create_engine
from app.reconcile import service
from app.reconcile.repository import ReconcileRepository
from app.reconcile.service import INTERRUPTED

read, slices = ReconcileRepository.syslog_rows, 0

async def syslog_rows(self, conn, start, end):
    global slices
    slices += 1
    if slices == 3:
        async with conn.engine.connect() as other:  # `conn` reads a snapshot from before it
            found = await other.exec_driver_sql("SELECT max(id) FROM reconciliations")
            run_id = found.scalar()
        print("held", run_id, flush=True)
        await asyncio.Event().wait()
    return await read(self, conn, start, end)

ReconcileRepository.syslog_rows = syslog_rows
service.SLICE_US = 3600 * 1_000_000
service.ITEMS_PER_TRANSACTION = 5

async def main():
    engine = create_engine(sys.argv[1])
    await service.reconcile(engine, int(sys.argv[2]), int(sys.argv[3]), created_by="child")

asyncio.run(main())
"""


async def test_a_run_whose_process_was_killed_is_failed_by_the_next_one(
    engine: AsyncEngine, database_url: str
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        database_url,
        *map(str, WINDOW),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert child.stdout is not None
        line = (await asyncio.wait_for(child.stdout.readline(), CEILING)).decode()
        assert line.startswith("held "), line
        run_id = int(line.split()[1])
        # The child lives: its run is left alone, by a new run as much as by the sweep.
        assert await service.fail_interrupted(engine) == []
        summary = await service.reconcile(engine, *WINDOW)
        assert await _running(engine) == [run_id]
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), CEILING)
        # PostgreSQL ends the killed client's session (and its lock) as soon as it reads
        # the closed socket; a new run fails the orphan then.
        deadline = time.monotonic() + CEILING
        while await _running(engine) and time.monotonic() < deadline:
            later = await service.reconcile(engine, *WINDOW)
            assert later["counts"] == summary["counts"]
            await asyncio.sleep(0.1)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    async with engine.connect() as conn:
        row = await ReconcileRepository().get_run(conn, run_id)
    assert row is not None and row["status"] == RunState.FAILED
    assert row["failure"] == service.INTERRUPTED
    assert await items(engine, run_id) == 0


async def test_a_run_recorded_by_this_process_but_no_longer_live_is_failed(
    engine: AsyncEngine,
) -> None:
    """A task of this process that ended without marking its run (say, its connection
    broke) leaves a run the process itself must fail: its pid is alive, its run is not."""
    async with engine.begin() as conn:
        run_id = await ReconcileRepository().create_run(
            conn,
            {
                "created_us": 1,
                "from_us": WINDOW[0],
                "until_us": WINDOW[1],
                "tolerance_us": 0,
                "status": RunState.RUNNING,
                "process": this_process(),
                "summary": "{}",
            },
        )
        await ReconcileRepository().release_run(conn, run_id)
    assert await service.fail_interrupted(engine) == [run_id]


def _insert_run(
    db: sqlite3.Connection, status: str, process: str | None, failure: str | None
) -> int:
    cursor = db.execute(
        "INSERT INTO reconciliations (created_us, from_us, until_us, tolerance_us, status,"
        " process, failure, summary) VALUES (?, ?, ?, 0, ?, ?, ?, '{}')",
        (time.time_ns() // 1000, *WINDOW, status, process, failure),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def test_the_api_and_the_console_refuse_a_run_that_is_not_done(service: Service) -> None:
    service.start()
    window = {"from": "2026-03-02T00:00:00Z", "until": "2026-03-03T00:00:00Z", "force": True}
    done = service.post("/api/v1/reconciliations", json=window).json()["id"]
    with closing(sqlite3.connect(service.db_path)) as db, db:
        # One this (live) process is working on, and one that failed.
        running = _insert_run(db, RunState.RUNNING, this_process(), None)
        failed = _insert_run(db, RunState.FAILED, None, "RuntimeError: the disk said no")
    cookies = {"cdrecon_token": service.token()}
    for run_id, says in (
        (running, f"run {running} is still running"),
        (failed, f"run {failed} failed: RuntimeError: the disk said no"),
    ):
        for path in (
            f"/api/v1/reconciliations/{run_id}",
            f"/api/v1/reconciliations/{run_id}/items",
        ):
            answer = service.get(path)
            assert answer.status_code == 409, path
            assert answer.json()["error"] == "run_not_finished" and says in answer.json()["detail"]
        export = service.post("/api/v1/exports", json={"run_id": run_id})
        assert (export.status_code, export.json()["error"]) == (409, "run_not_finished")
        page = httpx.get(f"{service.url}/runs/{run_id}", cookies=cookies, timeout=30)
        assert page.status_code == 409 and says in page.text
    for path in ("/runs", "/"):  # /billing reads the same newest_runs
        page = httpx.get(f"{service.url}{path}", cookies=cookies, timeout=30)
        assert page.status_code == 200, path
        assert f'href="/runs/{done}"' in page.text, path
        assert (
            f'href="/runs/{running}"' not in page.text and f'href="/runs/{failed}"' not in page.text
        )
    assert service.get(f"/api/v1/reconciliations/{done}").status_code == 200


def test_serve_fails_the_runs_a_killed_process_left_running(service: Service) -> None:
    service.start()
    service.stop()
    with closing(sqlite3.connect(service.db_path)) as db, db:
        orphan = _insert_run(db, RunState.RUNNING, f"{socket.gethostname()} 999999999 1", None)
        live = _insert_run(db, RunState.RUNNING, this_process(), None)
    service.start()
    with closing(sqlite3.connect(service.db_path)) as db:
        found = dict(
            db.execute("SELECT id, status || ' ' || coalesce(failure, '') FROM reconciliations")
        )
    assert found == {orphan: f"failed {INTERRUPTED}", live: "running "}
    assert f"reconciliation run {orphan} was interrupted" in service.log
