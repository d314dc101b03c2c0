"""Deriving deferred while the database is behind: the raw messages first, the same CDRs
once the writer catches up, whoever catches up and whenever."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import subprocess
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr import deriving, pending
from app.db.engine import create_engine
from app.db.models import events, messages, pending_derivations
from app.export.service import ExportFormat, ExportRequest, create_export, stream_export
from app.ingest.origin import Origin
from app.ingest.stats import get_stats
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from app.reconcile.service import reconcile
from parsers.framing import Frame
from tests.cdr.scenario import CALL_EVENTS, EXPECTED, LINES
from tests.cdr.stored import count, deferrable, legs
from tests.conftest import CDRECON

ORIGIN = Origin("tcp", "10.0.1.11", 5000)
# The queue always holds more than -1 messages: every batch is deferred.
ALWAYS = -1
# Seconds a test waits for what it expects before it counts as failed.
FLOWING_CEILING = 120.0


async def write(
    engine: AsyncEngine,
    frames: list[bytes],
    *,
    defer_backlog: int,
    finish_deriving: bool = True,
    metrics: Metrics | None = None,
) -> None:
    writer = BatchWriter(
        engine, metrics or Metrics(), batch_size=4, linger=0, defer_backlog=defer_backlog
    )
    writer.start()
    for start in range(0, len(frames), 4):
        writer.submit(ORIGIN, [Frame(f) for f in frames[start : start + 4]])
        await writer.wait_for_room()
    await writer.stop(finish_deriving=finish_deriving)


# The scenario's day, as the commands take a window.
DAY = ("--from", "2026-11-26T00:00:00Z", "--until", "2026-11-27T00:00:00Z")
# The same day in microseconds, as the services take it.
DAY_US = (1_795_651_200_000_000, 1_795_737_600_000_000)
# The legs a window exports, and reconciliation finds lost on the MN (it holds nothing here).
CLOSED = {leg for leg, (state, *_) in EXPECTED.items() if state == "closed"}


async def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `cdrecon ARGS` on the database as an operator would, in another process; in a
    thread, so the event loop stays free."""
    return await asyncio.to_thread(
        subprocess.run,
        [CDRECON, *args],
        env={**os.environ, "CDRECON_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def shuffled(seed: int) -> list[bytes]:
    frames = [line.rfc5424() for line in LINES]
    random.Random(seed).shuffle(frames)
    return frames


@pytest.mark.parametrize("seed", [0, 1])
async def test_deferred_batches_give_the_same_cdrs_once_caught_up(
    engine: AsyncEngine, seed: int
) -> None:
    metrics = Metrics()
    await write(engine, shuffled(seed), defer_backlog=ALWAYS, metrics=metrics)
    assert await legs(engine) == EXPECTED
    assert await count(engine, events) == CALL_EVENTS
    assert await count(engine, pending_derivations) == 0
    figure = metrics.registry.get_sample_value
    assert figure("cdrecon_events_total") == CALL_EVENTS
    assert figure("cdrecon_derive_pending_messages") == 0


async def test_a_writer_that_stops_leaves_its_deferred_messages_to_the_next(
    engine: AsyncEngine,
) -> None:
    metrics = Metrics()
    await write(engine, shuffled(2), defer_backlog=ALWAYS, finish_deriving=False, metrics=metrics)
    # Stored, durable, listed; nothing derived yet, and the stats and the gauge say so.
    assert await count(engine, messages) == len(LINES)
    assert await count(engine, events) == 0
    waiting = deferrable(engine, shuffled(2))
    assert metrics.registry.get_sample_value("cdrecon_derive_pending_messages") == waiting
    async with engine.connect() as conn:
        stats = await get_stats(conn, queued=0)
    assert (stats.messages, stats.events, stats.derive_pending) == (len(LINES), 0, waiting)
    # The next writer on this database catches up, with nothing new to store.
    await write(engine, [], defer_backlog=10000)
    assert await legs(engine) == EXPECTED
    assert await count(engine, pending_derivations) == 0


async def test_inline_and_deferred_halves_meet_in_the_same_legs(engine: AsyncEngine) -> None:
    """Legs whose events were derived partly at once and partly later, by another party
    (reconciliation derives what is pending before it reads CDRs)."""
    frames = shuffled(3)
    half = len(frames) // 2
    await write(engine, frames[:half], defer_backlog=10000)
    await write(engine, frames[half:], defer_backlog=ALWAYS, finish_deriving=False)
    async with engine.connect() as conn:
        assert await pending.count(conn) == deferrable(engine, frames[half:])
    derived = await deriving.derive_pending(engine)
    assert derived.events > 0
    assert await legs(engine) == EXPECTED
    assert await count(engine, events) == CALL_EVENTS
    async with engine.connect() as conn:
        assert await pending.count(conn) == 0


async def test_rebuild_leaves_nothing_pending(engine: AsyncEngine) -> None:
    await write(engine, shuffled(4), defer_backlog=ALWAYS, finish_deriving=False)
    await deriving.rebuild(engine, chunk=5)
    assert await count(engine, pending_derivations) == 0
    assert await legs(engine) == EXPECTED


async def test_the_reconcile_command_derives_what_is_pending_first(
    engine: AsyncEngine, database_url: str
) -> None:
    await write(engine, shuffled(5), defer_backlog=ALWAYS, finish_deriving=False)
    # Forced: no MN history at all, so every closed leg counts as lost.
    done = await cli(database_url, "reconcile", *DAY, "--force")
    assert done.returncode == 0, done.stderr
    assert await count(engine, pending_derivations) == 0
    assert await legs(engine) == EXPECTED
    # Every closed leg is in the run, lost on the MN (it holds nothing here).
    summary = json.loads(done.stdout)
    assert summary["coverage"]["forced"] is True
    assert summary["counts"]["missing_in_mn"] == len(CLOSED)


async def test_two_catch_ups_at_once_share_the_work(database_url: str) -> None:
    """A receiver catching up while an operator reconciles: neither fails, nothing is
    derived twice into a wrong leg, nothing is left."""
    first, second = create_engine(database_url), create_engine(database_url)
    try:
        await write(first, shuffled(6), defer_backlog=ALWAYS, finish_deriving=False)
        results = await asyncio.gather(
            deriving.derive_pending(first), deriving.derive_pending(second)
        )
        assert sum(r.events for r in results) == CALL_EVENTS
        assert await legs(first) == EXPECTED
        assert await count(first, pending_derivations) == 0
    finally:
        await first.dispose()
        await second.dispose()


@given(st.lists(st.integers(min_value=1, max_value=10_000), unique=True))
def test_runs_cover_exactly_the_listed_ids(ids: list[int]) -> None:
    ids.sort()
    found = pending.runs(ids)
    assert [i for first, last in found for i in range(first, last + 1)] == ids
    # Runs are maximal: two in a row never touch.
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(found))


async def test_an_export_of_a_window_derives_what_is_pending_first(
    engine: AsyncEngine, database_url: str
) -> None:
    await write(engine, shuffled(7), defer_backlog=ALWAYS, finish_deriving=False)
    done = await cli(database_url, "export", *DAY, "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    exported = {json.loads(line)["id"] for line in done.stdout.splitlines()}
    assert exported == CLOSED


async def test_a_reconciliation_derives_what_is_pending_by_itself(engine: AsyncEngine) -> None:
    """Whoever calls the service, API or CLI or another, gets complete CDRs."""
    await write(engine, shuffled(10), defer_backlog=ALWAYS, finish_deriving=False)
    summary = await reconcile(engine, *DAY_US, force=True)  # no MN history at all
    assert summary["counts"]["missing_in_mn"] == len(CLOSED)
    assert await count(engine, pending_derivations) == 0
    assert await legs(engine) == EXPECTED


async def test_an_export_of_a_window_derives_what_is_pending_by_itself(
    engine: AsyncEngine,
) -> None:
    await write(engine, shuffled(11), defer_backlog=ALWAYS, finish_deriving=False)
    request = ExportRequest(from_us=DAY_US[0], until_us=DAY_US[1])
    async with engine.begin() as conn:
        manifest, _ = await create_export(conn, engine, request, "tester")
    chunks = [chunk async for chunk in stream_export(engine, manifest["id"], ExportFormat.JSONL)]
    exported = {json.loads(line)["id"] for line in b"".join(chunks).splitlines()}
    assert exported == CLOSED
    assert manifest["record_count"] == len(CLOSED)
    assert await count(engine, pending_derivations) == 0


async def test_deferred_work_is_derived_under_traffic_that_never_pauses(
    engine: AsyncEngine,
) -> None:
    """Steady traffic never leaves the senders quiet for long; what was deferred must still
    be derived while it flows, not only once it stops."""
    metrics = Metrics()
    writer = BatchWriter(engine, metrics, batch_size=50, linger=0, defer_backlog=0)
    writer.start()
    writer.submit(ORIGIN, [Frame(f) for f in shuffled(8)])
    derived_while_flowing = False
    # A frame every 5 ms until the deferred events are derived: the ceiling only ends a
    # test that has failed, however slow the machine.
    deadline = time.monotonic() + FLOWING_CEILING
    n = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(0.005)
        writer.submit(ORIGIN, [Frame(b"<13>1 2026-11-26T10:00:00Z h app - - - steady %d" % n)])
        n += 1
        if metrics.registry.get_sample_value("cdrecon_events_total") == CALL_EVENTS:
            derived_while_flowing = True
            break
    await writer.stop()
    assert derived_while_flowing
    assert await legs(engine) == EXPECTED


async def test_a_catch_up_in_slices_leaves_the_rest_of_a_run_listed(engine: AsyncEngine) -> None:
    await write(engine, shuffled(9), defer_backlog=ALWAYS, finish_deriving=False)
    async with engine.connect() as conn:
        left = await pending.count(conn)
    assert left == deferrable(engine, shuffled(9))
    while True:
        async with engine.begin() as conn:
            taken, derived = await deriving.catch_up(conn, limit=3)
            if taken is None:
                break
            assert derived is not None
            assert 1 <= taken <= 3
            left -= taken
            assert await pending.count(conn) == left
    assert left == 0
    assert await legs(engine) == EXPECTED
