"""Deriving in a process of its own (app/cdr/worker.py, app/cdr/derivation.py): the same CDRs,
whatever the arrival order and however the process's derivations and the writer's stores
interleave, and nothing lost when the process is killed with derivations handed on."""

from __future__ import annotations

import asyncio
import os
import pickle
import random
import signal
import time
from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.cdr import pending
from app.cdr.derivation import Derivation, Stale, View, store
from app.cdr.deriving import catch_up, derive_runs
from app.cdr.worker import COPY_WAIT, FEED_MESSAGES, DeriveWorker, _Word
from app.db.models import events
from app.db.packing import PLAIN
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from parsers.framing import Frame
from tests.cdr.scenario import CALL_EVENTS, EXPECTED, LINES
from tests.cdr.stored import count, deferrable, legs
from tests.cdr.test_deriving import pexip_line

# A bound on waiting for the deriving process, not a speed: it fails only a stuck test, and
# under pytest-timeout's 120 s, so that the assertion says what was stuck.
PATIENCE = 90.0


async def listed(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return await pending.count(conn)


async def until_derived(engine: AsyncEngine) -> None:
    deadline = time.monotonic() + PATIENCE
    while await listed(engine):
        assert time.monotonic() < deadline, "the deriving process did not derive the list"
        await asyncio.sleep(0.05)


def worker_for(engine: AsyncEngine) -> DeriveWorker:
    return DeriveWorker(engine.url.render_as_string(hide_password=False), "NORMAL", "WARNING")


async def store_in_threes(
    engine: AsyncEngine, writer: BatchWriter, origin: Origin, frames: list[bytes]
) -> None:
    """Run `writer` over `frames` from `origin`, three at a time, each stored before the
    next, until its deriving process has derived all that is listed; then stop it."""
    writer.start()
    try:
        for start in range(0, len(frames), 3):
            writer.submit(origin, [Frame(f) for f in frames[start : start + 3]])
            await writer.drained()
        await until_derived(engine)
    finally:
        await writer.stop(finish_deriving=False)


@pytest.mark.parametrize("seed", [0, 1])
async def test_the_deriving_process_gives_the_same_cdrs_whatever_the_order(
    engine: AsyncEngine, seed: int
) -> None:
    frames = [line.rfc5424() for line in LINES]
    random.Random(seed).shuffle(frames)
    writer = BatchWriter(
        engine, Metrics(), batch_size=seed + 2, linger=0, derive_elsewhere=worker_for(engine)
    )
    await store_in_threes(engine, writer, Origin("tcp", "10.0.1.11", 5000), frames)
    assert await legs(engine) == EXPECTED
    assert await count(engine, events) == CALL_EVENTS


class Watched(DeriveWorker):
    """The deriving process, with the sequence numbers of the derivations it handed back."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine.url.render_as_string(hide_password=False), "NORMAL", "WARNING")
        self.handed: list[tuple[int, int]] = []  # (process id, sequence)

    async def start(self, handed: Callable[[Derivation], None]) -> None:
        def watch(derivation: Derivation) -> None:
            self.handed.append((derivation.producer, derivation.sequence))
            handed(derivation)

        await super().start(watch)


async def test_a_process_killed_mid_run_is_replaced_and_everything_is_derived(
    engine: AsyncEngine,
) -> None:
    # A run a leg, more than the process builds ahead of the writer (two derivations of at
    # most 100 runs), so that its replacement has runs left to derive.
    legs_count = 300
    frames = []
    for index in range(legs_count):
        frames.append(pexip_line("a", "10:00:00", "Participant has joined.", f"leg-{index}"))
        frames.append(pexip_line("a", "10:05:00", "Participant has disconnected.", f"leg-{index}"))
    # Stored raw and listed, nothing derived: a writer that always defers, stopped at once
    # (a stop that need not finish leaves the list to the next deriver).
    writer = BatchWriter(engine, Metrics(), batch_size=2, linger=0, defer_backlog=-1)
    writer.start()
    for start in range(0, len(frames), 2):
        writer.submit(Origin("tcp", "a", 1), [Frame(f) for f in frames[start : start + 2]])
    await writer.stop(finish_deriving=False)
    assert await listed(engine) == 2 * legs_count

    worker = Watched(engine)
    writer = BatchWriter(engine, Metrics(), linger=0, derive_elsewhere=worker)
    async with engine.connect() as blocker:
        # Hold what storing a derivation needs, so that the process's derivations wait in
        # the writer (one of them in its open transaction) when the process is killed.
        await blocker.begin()
        if engine.dialect.name == "sqlite":
            await blocker.exec_driver_sql("DELETE FROM pending_derivations WHERE first_id < 0")
        else:
            await blocker.exec_driver_sql("LOCK TABLE pending_derivations IN EXCLUSIVE MODE")
        writer.start()
        try:
            deadline = time.monotonic() + PATIENCE
            while len(worker.handed) < 2:
                assert time.monotonic() < deadline, "the process handed nothing back"
                await asyncio.sleep(0.01)
            killed = worker.pid
            assert killed is not None and {pid for pid, _ in worker.handed} == {killed}
            os.kill(killed, signal.SIGKILL)
            await blocker.rollback()
            await until_derived(engine)
            # On a loaded machine the killed process may have handed back every derivation
            # before it died, and the list is then empty before its replacement starts.
            while worker.pid in (None, killed):
                assert time.monotonic() < deadline, "the killed process was not replaced"
                await asyncio.sleep(0.05)
            replacement = worker.pid
        finally:
            await writer.stop(finish_deriving=False)

    assert replacement not in (None, killed)
    assert {pid for pid, _ in worker.handed} == {killed, replacement}
    states = await legs(engine)
    assert len(states) == legs_count
    assert {(state, duration) for state, duration, *_ in states.values()} == {("closed", 300)}
    assert await count(engine, events) == 2 * legs_count


async def until_waiting_for_a_lock(conn: AsyncConnection, pid: int) -> None:
    """Until the PostgreSQL session of process `pid` waits for a lock (in its run)."""
    deadline = time.monotonic() + PATIENCE
    # `conn` is in a transaction, in which PostgreSQL keeps the first pg_stat_activity it
    # read: clear it each time, or a process that connects after the first look is never
    # seen (a loaded machine: the test then waited until it timed out).
    query = (
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE NOT l.granted AND a.datname = current_database()"
    )
    while True:
        await conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        if (await conn.exec_driver_sql(query)).scalar_one():
            return
        assert time.monotonic() < deadline, f"process {pid} never waited for the lock"
        await asyncio.sleep(0.05)


async def test_a_stop_that_finishes_derives_what_the_process_left(engine: AsyncEngine) -> None:
    worker = worker_for(engine)
    writer = BatchWriter(engine, Metrics(), batch_size=2, linger=0, derive_elsewhere=worker)
    writer.start()
    try:
        deadline = time.monotonic() + PATIENCE
        while worker.pid is None:
            assert time.monotonic() < deadline, "the deriving process did not start"
            await asyncio.sleep(0.01)
        os.kill(worker.pid, signal.SIGKILL)  # gone before anything is listed
        frames = [Frame(line.rfc5424()) for line in LINES]
        writer.submit(Origin("tcp", "10.0.1.11", 5000), frames)
    finally:
        await writer.stop()  # finish_deriving: what is listed is derived here
    assert await listed(engine) == 0
    assert await legs(engine) == EXPECTED


async def list_in_quarters(engine: AsyncEngine, frames: list[bytes]) -> None:
    """Store `frames` in four writers' turns, alternately listed and derived as stored:
    listed runs with derived messages between them."""
    quarter = len(frames) // 4 + 1
    for index, start in enumerate(range(0, len(frames), quarter)):
        writer = BatchWriter(
            engine, Metrics(), linger=0, defer_backlog=-1 if index % 2 == 0 else None
        )
        writer.start()
        writer.submit(Origin("tcp", "h", 1), [Frame(f) for f in frames[start : start + quarter]])
        await writer.stop(finish_deriving=False)


async def test_runs_taken_together_skip_the_messages_between_them(engine: AsyncEngine) -> None:
    """Deferred and inline batches interleave (listed runs with ids between them that are
    derived already): a derivation takes the runs at once and derives each message once."""
    await list_in_quarters(engine, [line.rfc5424() for line in LINES])
    view = View(1)
    async with engine.connect() as conn:
        runs, stored = await pending.peek(conn, 5000)
        assert len(runs) >= 2 and len(stored) == sum(last - first + 1 for first, last in runs)
        derivation = await view.build(conn, runs, stored)
    async with engine.begin() as conn:
        await store(conn, derivation)
    assert await listed(engine) == 0
    assert await legs(engine) == EXPECTED
    assert await count(engine, events) == CALL_EVENTS


async def test_a_derivation_the_database_moved_past_is_refused_whole(
    engine: AsyncEngine,
) -> None:
    """Another deriver stored some of the same legs' events between the process's reading
    and the writer's storing: the derivation is stale, nothing of it is written, and the
    runs are derived from the database instead."""
    frames = [line.rfc5424() for line in LINES]
    await list_in_quarters(engine, frames)
    async with engine.connect() as conn:
        runs, stored = await pending.peek(conn, 5000)
        derivation = await View(1).build(conn, runs, stored)
    async with engine.begin() as conn:
        assert await derive_runs(conn, runs[:1]) is not None  # another deriver, first
    async with engine.begin() as conn:
        with pytest.raises(Stale):
            async with conn.begin_nested():
                await store(conn, derivation)
        assert await derive_runs(conn, runs[1:]) is not None
    assert await listed(engine) == 0
    assert await legs(engine) == EXPECTED
    assert await count(engine, events) == CALL_EVENTS


@pytest.mark.parametrize("seed", range(4))
async def test_any_interleaving_of_deriving_and_storing_gives_the_same_cdrs(
    engine: AsyncEngine, seed: int
) -> None:
    """The process builds derivations ahead of the writer's stores, by a random amount, and
    another deriver now and then derives a listed run first (some derivations go stale):
    the CDRs are those of deriving everything in one go."""
    rng = random.Random(seed)
    frames = [line.rfc5424() for line in LINES]
    rng.shuffle(frames)
    # Listed in runs of 1-4 messages, a batch each, all queued at once: the writer never
    # waits for more, so it never catches up on them itself.
    writer = BatchWriter(engine, Metrics(), batch_size=1, linger=0, defer_backlog=-1)
    start = 0
    while start < len(frames):
        size = rng.randint(1, 4)
        writer.submit(Origin("tcp", "h", 1), [Frame(f) for f in frames[start : start + size]])
        start += size
    writer.start()
    await writer.stop(finish_deriving=False)
    assert await listed(engine) == deferrable(engine, frames)

    view = View(1)
    ahead = rng.randint(1, 3)
    handed: deque[Derivation] = deque()
    stale = derivation_count = 0
    while True:
        if view.ready() and view.outstanding < ahead and (not handed or rng.random() < 0.5):
            async with engine.connect() as conn:
                runs, stored = await pending.peek(conn, rng.randint(1, 8), view.handed_runs())
                if runs:
                    handed.append(await view.build(conn, runs, stored))
                    continue
        if not handed:
            if not await listed(engine):
                break
            continue
        if rng.random() < 0.15 or derivation_count == 0:
            async with engine.begin() as conn:
                await catch_up(conn)  # another deriver, first: the oldest run, at least once
        derivation_count += 1
        derivation = handed.popleft()
        async with engine.begin() as conn:
            try:
                async with conn.begin_nested():
                    await store(conn, derivation)
                stored_whole = True
            except Stale:
                await derive_runs(conn, derivation.runs)
                stale += 1
                stored_whole = False
        view.heard(derivation.sequence, stored_whole)
    assert stale >= 1
    assert await legs(engine) == EXPECTED
    assert await count(engine, events) == CALL_EVENTS


class Copied(DeriveWorker):
    """The deriving process, with the copies of listed runs the writer handed it."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine.url.render_as_string(hide_password=False), "NORMAL", "WARNING")
        self.copies: list[pending.Fed] = []

    def feed(self, fed: pending.Fed) -> None:
        self.copies.append(fed)
        super().feed(fed)


async def test_the_copies_handed_to_the_process_are_what_it_would_read_back(
    engine: AsyncEngine,
) -> None:
    """The writer hands the process each listed batch as it stored it, so that the process
    need not read it back: the copy is exactly what reading it gives, for every shape of
    frame (a header without HOSTNAME names the peer, an unparsable frame is stored raw)."""
    frames = [line.rfc5424() for line in LINES]
    frames += [b"<13>Nov 26 10:00:00 tag: no hostname here", b"no syslog header", b"\x00\xff"]
    worker = Copied(engine)
    writer = BatchWriter(engine, Metrics(), batch_size=3, linger=0, derive_elsewhere=worker)
    await store_in_threes(engine, writer, Origin("udp", "10.0.1.11", 514), frames)
    assert await legs(engine) == EXPECTED
    if engine.dialect.name != "sqlite":
        # PostgreSQL lists only what may carry a call event (app/db/partitions.py): a
        # batch is not one run there, and the process reads what is listed.
        assert worker.copies == []
        return
    assert sum(len(copy.raws) for copy in worker.copies) == len(frames)
    async with engine.connect() as conn:
        for copy in worker.copies:
            assert copy.messages() == await pending.messages_of(conn, [(copy.first, copy.last)])


async def test_runs_with_and_without_copies_read_as_all_read_back(engine: AsyncEngine) -> None:
    """Some runs have their copy, one a copy of another length (not used), the others none:
    the messages are those read back, in order, each once."""
    await list_in_quarters(engine, [line.rfc5424() for line in LINES])
    async with engine.connect() as conn:
        runs, everything = await pending.peek(conn, 5000)
        assert len(runs) >= 2
        copies: dict[int, pending.Fed] = {}
        for index, run in enumerate(runs):
            read = await pending.messages_of(conn, [run])
            nodes = [node for _, node, _, _ in read]
            raws = [raw for _, _, raw, _ in read]
            offsets = [offset for *_, offset in read]
            if index % 2 == 0:
                copies[run[0]] = pending.Fed(run[0], nodes, offsets, raws, [PLAIN] * len(raws))
            else:  # one message short of its run: not the run's copy
                copies[run[0]] = pending.Fed(
                    run[0],
                    nodes[:-1],
                    offsets[:-1],
                    [b"x"] * (len(raws) - 1),
                    [PLAIN] * (len(raws) - 1),
                )
        assert await pending.messages_of(conn, runs, copies) == everything
        assert (await pending.peek(conn, 5000, fed=copies))[1] == everything


def heard_from(word: _Word) -> list[tuple[int, bool]]:
    return list(word.heard)


@given(st.lists(st.integers(min_value=1, max_value=400), max_size=30), st.randoms())
def test_the_services_word_reads_the_same_however_the_pipe_cuts_it(
    sizes: list[int], rng: random.Random
) -> None:
    """Lines and copies, cut anywhere by the pipe: every word heard and every copy kept."""
    stream = b""
    expected_heard: list[tuple[int, bool]] = []
    expected_fed: dict[int, int] = {}
    first = 1
    for index, size in enumerate(sizes):
        if index % 3 == 0:
            stream += b"\n"
        elif index % 3 == 1:
            stream += b"S %d\n" % index if size % 2 else b"R %d\n" % index
            expected_heard.append((index, bool(size % 2)))
        else:
            copy = pending.Fed(
                first, ["h"] * size, [0] * size, [b"r%d" % i for i in range(size)], [PLAIN] * size
            )
            data = pickle.dumps(copy)
            stream += b"F %d\n" % len(data) + data
            expected_fed[first] = size
            first += size
    word = _Word()
    position = 0
    while position < len(stream):
        step = rng.randint(1, 700)
        word.data_received(stream[position : position + step])
        position += step
    assert heard_from(word) == expected_heard
    assert {first: len(copy.raws) for first, copy in word.fed.items()} == expected_fed


def test_the_process_keeps_only_the_newest_copies_and_forgets_the_used() -> None:
    word = _Word()
    size = FEED_MESSAGES // 4
    for first in range(1, 6 * size, size):
        data = pickle.dumps(
            pending.Fed(first, [None] * size, [0] * size, [b""] * size, [PLAIN] * size)
        )
        word.data_received(b"F %d\n" % len(data) + data)
    assert sorted(word.fed) == [1 + size * n for n in range(2, 6)]
    word.used(1 + 3 * size)
    assert sorted(word.fed) == [1 + 4 * size, 1 + 5 * size]


def test_the_process_waits_a_moment_for_a_copy_on_its_way_and_no_longer() -> None:
    """The writer sends a batch's copy just after the commit that lists it, which the
    process may see first: while copies arrive it waits up to COPY_WAIT for the oldest
    run's, then reads the run back; a run whose copy is there, or any run while no copies
    come, is never waited for."""
    word = _Word()
    assert not word.awaits_copy([(1, 10)])  # no copies come: read it back
    data = pickle.dumps(pending.Fed(1, [None] * 10, [0] * 10, [b""] * 10, [PLAIN] * 10))
    word.data_received(b"F %d\n" % len(data) + data)
    assert not word.awaits_copy([(1, 10)])  # its copy is here
    assert word.awaits_copy([(11, 20)])  # copies come, not yet this one
    time.sleep(COPY_WAIT)
    assert not word.awaits_copy([(11, 20)])  # waited long enough: read it back
    assert word.awaits_copy([(21, 30)])  # the next run's wait starts afresh


def test_the_process_does_not_wait_for_a_copy_it_let_go() -> None:
    """Behind by more than FEED_MESSAGES (a backfill, a long burst), the oldest runs' copies
    were let go for the newest: those runs are read back at once, not after COPY_WAIT each,
    and a run whose copy has not come yet is still waited for."""
    word = _Word()
    size = FEED_MESSAGES // 4
    for first in range(1, 6 * size, size):
        data = pickle.dumps(
            pending.Fed(first, [None] * size, [0] * size, [b""] * size, [PLAIN] * size)
        )
        word.data_received(b"F %d\n" % len(data) + data)
    assert 1 not in word.fed
    assert not word.awaits_copy([(1, size)])
    assert not word.awaits_copy([(1 + size, 2 * size)])
    assert word.awaits_copy([(1 + 6 * size, 7 * size)])
    word.used(2 * size)
    assert not word.awaits_copy([(1 + 2 * size, 3 * size)])  # its copy is kept
