"""Several receivers on one PostgreSQL database (app/cdr/pending.py `Claims`): their deriving
processes take different listed runs, everything ends derived once, and the runs a killed
process had taken are derived by another."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr import pending
from app.cdr.derivation import Derivation
from app.cdr.worker import DeriveWorker
from app.db.models import event_messages, events
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from parsers.framing import Frame
from tests.cdr.stored import count, legs
from tests.cdr.test_deriving import pexip_line
from tests.cdr.test_worker import PATIENCE, listed, until_derived, worker_for

pytestmark = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)

# A run a leg: more than two derivations of one process hold (at most 100 runs each), so
# that a second process finds runs the first has not taken.
LEGS = 300


async def list_legs(engine: AsyncEngine) -> None:
    """Store a joined and a disconnected line for each of `LEGS` legs, raw and listed, a run
    a leg, nothing derived."""
    writer = BatchWriter(engine, Metrics(), batch_size=2, linger=0, defer_backlog=-1)
    writer.start()
    for index in range(LEGS):
        frames = [
            pexip_line("a", "10:00:00", "Participant has joined.", f"leg-{index}"),
            pexip_line("a", "10:05:00", "Participant has disconnected.", f"leg-{index}"),
        ]
        writer.submit(Origin("tcp", "a", 1), [Frame(f) for f in frames])
    await writer.stop(finish_deriving=False)
    assert await listed(engine) == 2 * LEGS


async def all_derived_once(engine: AsyncEngine) -> None:
    states = await legs(engine)
    assert len(states) == LEGS
    assert {(state, duration) for state, duration, *_ in states.values()} == {("closed", 300)}
    assert await count(engine, events) == 2 * LEGS
    async with engine.connect() as conn:
        firsts = select(func.count(func.distinct(events.c.message_id)))
        assert (await conn.execute(firsts)).scalar_one() == 2 * LEGS
    # A message derived twice would be linked to its event as a repeat.
    assert await count(engine, event_messages) == 0
    assert await listed(engine) == 0


class Recorded(DeriveWorker):
    """A receiver's deriving process, with every derivation it handed back."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine.url.render_as_string(hide_password=False), "NORMAL", "WARNING")
        self.handed: list[Derivation] = []

    async def start(self, handed: Callable[[Derivation], None]) -> None:
        def record(derivation: Derivation) -> None:
            self.handed.append(derivation)
            handed(derivation)

        await super().start(record)


def firsts(derivations: list[Derivation]) -> set[int]:
    return {first for derivation in derivations for first, _ in derivation.runs}


async def until_handed(handed: list[Derivation], wanted: int) -> None:
    deadline = time.monotonic() + PATIENCE
    while len(handed) < wanted:
        assert time.monotonic() < deadline, "the deriving process handed nothing back"
        await asyncio.sleep(0.01)


async def test_two_processes_take_different_runs_and_let_go_of_what_is_no_longer_handed_on(
    engine: AsyncEngine,
) -> None:
    await list_legs(engine)
    # Two receivers' processes; the runs' own (this process's) has none.
    first, second = pending.Claims(engine, 1), pending.Claims(engine, 2)
    try:
        async with engine.connect() as conn:
            runs_a = await first.oldest(conn, 20)
            runs_b = await second.oldest(conn, 20)
            stored_a = await pending.messages_of(conn, runs_a)
            # The oldest ten runs, then the next ten, with their messages.
            assert len(runs_a) == len(runs_b) == 10 and runs_a[-1] < runs_b[0]
            assert [m[0] for m in stored_a] == [i for f, la in runs_a for i in range(f, la + 1)]
            # Handed on (skipped): kept. Not handed on: let go, and taken again by whoever
            # looks next, as the oldest free.
            more_a = await first.oldest(conn, 20, {f for f, _ in runs_a})
            assert more_a[0] > runs_b[-1]
            assert await second.oldest(conn, 20) == runs_b
            assert await first.oldest(conn, 20, {f for f, _ in more_a}) == runs_a
            # A process that ends lets go of everything: another takes the oldest.
            await first.close()
            third = pending.Claims(engine, 3)
            try:
                assert await third.oldest(conn, 20) == runs_a
                assert await third.oldest(conn, 20, {f for f, _ in runs_a}) == more_a
            finally:
                await third.close()
    finally:
        await first.close()
        await second.close()


async def test_two_receivers_derive_different_runs_and_everything_once(
    engine: AsyncEngine,
) -> None:
    await list_legs(engine)
    first, second = Recorded(engine), Recorded(engine)
    writers = []
    try:
        async with engine.connect() as blocker:
            # Hold what storing needs, so that each process keeps what it took (at most two
            # derivations ahead of its writer) while the other takes runs.
            await blocker.begin()
            await blocker.exec_driver_sql("LOCK TABLE pending_derivations IN EXCLUSIVE MODE")
            for worker in (first, second):
                writer = BatchWriter(engine, Metrics(), linger=0, derive_elsewhere=worker)
                writers.append(writer)
                writer.start()
                await until_handed(worker.handed, 2 if worker is first else 1)
        await until_derived(engine)
    finally:
        for writer in writers:
            await writer.stop(finish_deriving=False)
    await all_derived_once(engine)
    # Both derived runs, never the same run twice (both writers are this process, one
    # lister: the runs' locks alone keep them apart).
    assert firsts(first.handed) and firsts(second.handed)
    assert not firsts(first.handed) & firsts(second.handed)


async def test_the_runs_a_killed_process_had_taken_are_derived_by_another(
    engine: AsyncEngine,
) -> None:
    await list_legs(engine)
    # A receiver whose writer stores nothing: its process takes two derivations' runs, the
    # oldest, and keeps them until it is killed.
    killed_handed: list[Derivation] = []
    doomed = worker_for(engine)
    await doomed.start(killed_handed.append)
    try:
        await until_handed(killed_handed, 2)
        async with engine.connect() as conn:
            # Another process of the same receiver (the runs' lister is this process).
            claims = pending.Claims(engine, pending.lister())
            try:
                runs = await claims.oldest(conn, 10 * LEGS)
            finally:
                await claims.close()
        assert runs and not {first for first, _ in runs} & firsts(killed_handed)
        pid = doomed.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    finally:
        await doomed.stop()  # no replacement

    other = Recorded(engine)
    writer = BatchWriter(engine, Metrics(), linger=0, derive_elsewhere=other)
    writer.start()
    try:
        await until_derived(engine)
    finally:
        await writer.stop(finish_deriving=False)
    await all_derived_once(engine)
    assert firsts(killed_handed) <= firsts(other.handed)


async def test_a_process_takes_its_own_receivers_runs_first_and_a_dead_ones_after(
    engine: AsyncEngine,
) -> None:
    """Legs come with their node to one receiver: a process that takes another's runs would
    assemble their legs beside that one's and one of the two would be stale."""
    await list_legs(engine)
    async with engine.begin() as conn:
        # Listed by two receivers in turn, a run each.
        await conn.exec_driver_sql("UPDATE pending_derivations SET lister = 1 + (first_id / 2) % 2")
        listers = dict(
            (await conn.exec_driver_sql("SELECT first_id, lister FROM pending_derivations")).all()
        )
    first, second = pending.Claims(engine, 1), pending.Claims(engine, 2)
    try:
        async with engine.connect() as conn:
            taken_b = await second.oldest(conn, 2)  # alive now
            runs_a = await first.oldest(conn, 10 * LEGS)
            own = sorted(f for f, lister in listers.items() if lister == 1)
            assert runs_a and [f for f, _ in runs_a] == own[: len(runs_a)]
            assert {listers[f] for f, _ in taken_b} == {2}
            await second.close()  # its receiver is gone: its runs are anyone's
            rest = await first.oldest(conn, 10 * LEGS, {f for f, _ in runs_a})
            stored = await pending.messages_of(conn, rest)
            theirs = [run for run in rest if listers[run[0]] == 2]
            # Its own first, then the dead one's, the oldest first; all in id order, with
            # every message of each.
            assert theirs and theirs[0] == taken_b[0] and rest == sorted(rest)
            assert len(theirs) < len(rest) and len(rest) < LEGS
            assert [m[0] for m in stored] == [i for f, la in rest for i in range(f, la + 1)]
    finally:
        await first.close()
        await second.close()
