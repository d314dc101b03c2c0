"""Pruning: a pass over every step in small transactions of its own (each commits before
the next begins, and the pass rests between them so the batch writer keeps the database),
then, on SQLite, the freed pages handed back to the file system a few megabytes at a time.
`cdrecon prune` runs one pass; `serve` runs one every CDRECON_PRUNE_INTERVAL seconds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.audit.service import record
from app.config import Settings
from app.db import partitions

from . import repository
from .policy import HORIZONS, Policy, Step, Tally, rest_after
from .repository import Cursor

log = logging.getLogger(__name__)

StepFunction = Callable[
    [AsyncConnection, int, Cursor | None, int, bool], Awaitable[tuple[Cursor | None, Tally]]
]

STEPS: dict[Step, StepFunction] = {
    Step.CDRS: repository.prune_cdrs,
    Step.EVENTS: repository.prune_events,
    Step.MESSAGES: repository.prune_messages,
    Step.CALL_MESSAGES: repository.prune_call_messages,
    Step.MN_PARTICIPANTS: repository.prune_mn_participants,
    Step.MN_CONFERENCES: repository.prune_mn_conferences,
    Step.RUNS: repository.prune_runs,
    Step.BATCHES: repository.prune_batches,
    Step.AUDIT: repository.prune_audit,
}
# The longest a pass waits for the batch writer's queue to empty before its next transaction.
YIELD_SECONDS = 1.0
# Pages handed back per transaction: 4 MiB of 4 KiB pages.
RETURN_PAGES = 1024


def policy_of(settings: Settings) -> Policy:
    """The retention policy the settings ask for."""
    return Policy(settings.retain_messages_days, settings.retain_billing_days)


@dataclass(slots=True)
class Resume:
    """What one pass leaves the next in the same process: the raw messages up to this id
    are decided (kept ones carry call events, pruned with their CDRs), so the next pass need
    not read them again."""

    messages: int | None = None


@dataclass(slots=True)
class Pass:
    """What one pass pruned (or would), and the space it handed back."""

    tally: Tally
    dry_run: bool
    seconds: float = 0.0
    pages_returned: int = 0
    # False when the SQLite file was made without incremental auto-vacuum: freed pages are
    # reused, but the file does not shrink while it runs.
    can_return_space: bool = True
    # PostgreSQL: messages in the default partition (no day partition was there for them).
    default_rows: int = 0


async def prune(
    engine: AsyncEngine,
    policy: Policy,
    *,
    now_us: int | None = None,
    dry_run: bool = False,
    rest: bool = True,
    on_rows: Callable[[str, int], None] | None = None,
    busy: Callable[[], bool] | None = None,
    resume: Resume | None = None,
) -> Pass:
    """One pass over every step: delete what the policy lets go (never an unexported lost
    record's evidence), or with `dry_run` only count it. Each transaction takes at most
    `policy.batch_rows` rows of its step; with `rest` the pass waits after each (see
    `rest_after`), and while `busy()` (the batch writer has messages waiting) up to
    `YIELD_SECONDS` more. `on_rows(table, n)` hears of each transaction's deletions as it
    commits. With `resume`, raw messages are walked from where the last pass settled them
    (else from the first), and where this one settled them is kept there."""
    started = time.monotonic()
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    total = Tally()
    for step, function in STEPS.items():
        cutoff = policy.cutoff(HORIZONS[step], now_us)
        if cutoff is None:
            continue
        cursor: Cursor | None = None
        if step is Step.MESSAGES and resume is not None and resume.messages is not None:
            cursor = (resume.messages, resume.messages, False)
        while True:
            began = time.monotonic()
            async with engine.begin() as conn:
                if not dry_run:
                    await repository.take_write_lock(conn)
                cursor, tally = await function(conn, cutoff, cursor, policy.batch_rows, dry_run)
                if dry_run:
                    await conn.rollback()
            total.merge(tally)
            if on_rows is not None and not dry_run:
                for table, count in tally.rows.items():
                    on_rows(table, count)
            if cursor and cursor[0] == repository.SETTLED:
                if resume is not None and not dry_run and cursor[1] is not None:
                    resume.messages = int(cursor[1])
                break
            if cursor is None:
                break
            if rest:
                await asyncio.sleep(rest_after(time.monotonic() - began))
                await _yield(busy)
    done = Pass(total, dry_run)
    async with engine.connect() as conn:
        if partitions.partitioned(conn):
            done.default_rows, _ = await partitions.default_rows(conn)
    if not dry_run:
        done.pages_returned, done.can_return_space = await return_space(
            engine, rest=rest, busy=busy
        )
    done.seconds = time.monotonic() - started
    return done


async def return_space(
    engine: AsyncEngine, *, rest: bool = True, busy: Callable[[], bool] | None = None
) -> tuple[int, bool]:
    """On SQLite, hand the free pages back to the file system (incremental vacuum) in
    transactions of `RETURN_PAGES`; the pages handed back, and whether the file can shrink
    at all (it was created with auto_vacuum=INCREMENTAL). PostgreSQL's own autovacuum
    makes deleted rows' space reusable; nothing to do here."""
    returned = 0
    while True:
        began = time.monotonic()
        async with engine.begin() as conn:
            free = await repository.free_pages(conn)
            if not free:
                return returned, free is not None or conn.dialect.name != "sqlite"
            step = min(free, RETURN_PAGES)
            await repository.return_pages(conn, step)
        returned += step
        if rest:
            await asyncio.sleep(rest_after(time.monotonic() - began))
            await _yield(busy)


async def _yield(busy: Callable[[], bool] | None) -> None:
    """Wait while the batch writer has messages waiting, up to YIELD_SECONDS: storing comes
    first, and under a burst pruning still moves, a transaction a second at least."""
    if busy is None:
        return
    waited = 0.0
    while busy() and waited < YIELD_SECONDS:
        await asyncio.sleep(0.01)
        waited += 0.01


async def prune_forever(
    engine: AsyncEngine,
    policy: Policy,
    interval: float,
    on_rows: Callable[[str, int], None] | None = None,
    busy: Callable[[], bool] | None = None,
) -> None:
    """A pass every `interval` seconds until cancelled; a failed pass is logged and the next
    one tried at its time."""
    resume = Resume()
    while True:
        await asyncio.sleep(interval)
        try:
            done = await prune(engine, policy, on_rows=on_rows, busy=busy, resume=resume)
        except Exception:
            log.exception("pruning failed; next pass in %.0fs", interval)
            continue
        if done.tally.total:
            async with engine.begin() as conn:
                await record(conn, "serve:retention", "retention.prune", None, summary(done))
        log.info(
            "pruned %d rows in %.1fs (%s); %d pages returned to the file system",
            done.tally.total,
            done.seconds,
            ", ".join(f"{table} {n}" for table, n in sorted(done.tally.rows.items())) or "none",
            done.pages_returned,
        )


async def make_partitions(engine: AsyncEngine, now_us: int | None = None) -> list[str]:
    """PostgreSQL: create today's message partitions and the next days' (app/db/partitions.py)
    where missing, and warn of messages in the default partition; the names made."""
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    async with engine.begin() as conn:
        if not partitions.partitioned(conn):
            return []
        made = await partitions.create(conn, partitions.ahead(now_us))
        stray, oldest = await partitions.default_rows(conn)
    if made:
        log.info("message partitions created: %s", ", ".join(made))
    if stray:
        log.warning(
            "%d messages are in the default partition (oldest received at %d µs): no day "
            "partition was there for them; retention never drops it",
            stray,
            oldest,
        )
    return made


async def partitions_forever(engine: AsyncEngine, interval: float) -> None:
    """`make_partitions` every `interval` seconds until cancelled (a failure is logged and
    tried again at the next)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await make_partitions(engine)
        except Exception:
            log.exception("making message partitions failed; next try in %.0fs", interval)


def summary(done: Pass) -> dict[str, object]:
    """A pass as the audit log and `cdrecon prune` show it."""
    return {
        "dry_run": done.dry_run,
        "rows": dict(sorted(done.tally.rows.items())),
        "partitions": dict(sorted(done.tally.partitions.items())),
        "default_partition_rows": done.default_rows,
        "pages_returned": done.pages_returned,
        "seconds": round(done.seconds, 3),
    }
