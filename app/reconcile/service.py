"""Reconciliation runs: load a window from both stores, classify, persist, summarise."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.cdr.deriving import derive_pending
from app.db.models import cdrs, mn_participants
from app.db.snapshot import read_snapshot
from app.errors import ConflictError, InvalidInputError, NotFoundError
from app.history import coverage as history_coverage
from app.paging import cut_page, decode_cursor
from app.times import FIRST_US, LAST_US, iso, to_us

from .items import ItemRow, agreed_row, confirmed, item_row
from .matching import Gap, classify, gaps_in
from .repository import ReconcileRepository
from .rows import ID, leg_view, split_agreeing
from .runs import RunState, has_ended, this_process
from .tally import Tally


class RunNotFound(NotFoundError):
    """No reconciliation run with that id."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"no reconciliation run {run_id}")


class RunNotFinished(ConflictError):
    """The run is still running, or failed: it has no summary or items to show or use."""

    code = "run_not_finished"

    def __init__(self, run_id: int, state: str, created_us: int, failure: str | None) -> None:
        self.state = state
        if state == RunState.RUNNING:
            text = f"reconciliation run {run_id} is still running (started {iso(created_us)})"
        else:
            text = f"reconciliation run {run_id} failed: {failure or 'no reason recorded'}"
        super().__init__(text)


def _gap(gap: Gap) -> dict[str, Any]:
    return {
        "from": iso(gap.from_us),
        "until": iso(gap.until_us),
        "count": gap.count,
        "nodes": sorted(gap.nodes),
        "last_kept_before": iso(gap.before_us),
        "first_kept_after": iso(gap.after_us),
    }


def _bounds(bounds: tuple[int, int] | None) -> dict[str, str | None]:
    first, last = bounds if bounds is not None else (None, None)
    return {"first": iso(first), "last": iso(last)}


# A window is reconciled a slice at a time, so that memory follows the busiest slice, not
# the whole window.
SLICE_US = 6 * 3600 * 1_000_000
# Items a write transaction stores at most: tens of milliseconds of SQLite's one writer (no
# longer than one of the batch writer's commits), which the batch writer gets between them.
# Fewer, larger ones wait behind the batch writer's commits less often: SQLite's waiting is
# polling, and under heavy ingest each wait may be long (bench/README.md, "Contention").
ITEMS_PER_TRANSACTION = 5000

# Runs in progress in this process: on SQLite, a run that this process recorded as its own
# and that is not here was left running by a task that is gone (`fail_interrupted`).
_LIVE: set[int] = set()

# What a run does, in its finishing transaction, with its summary: audit it, alert on it.
Then = Callable[[AsyncConnection, dict[str, Any]], Awaitable[None]]

log = logging.getLogger(__name__)


async def reconcile(
    engine: AsyncEngine,
    from_us: int,
    until_us: int,
    tolerance_us: int = 2_000_000,
    created_by: str | None = None,
    force: bool = False,
    as_of_cap_us: int | None = None,
    then: Then | None = None,
) -> dict[str, Any]:
    """Run a reconciliation over [from, until), store it, and return its summary.

    Derives what a busy writer deferred first. The run reads both stores from one snapshot
    (`read_snapshot`) and stores its row, its items and at last its summary in short write
    transactions of their own, so that the batch writer commits between them; until the
    last one the run is `running`, which every reader treats as not there. `then(conn,
    summary)` runs in that last transaction (the run is done only if it succeeds). A run
    that fails is marked `failed` with the reason and its items discarded; the error is
    raised as it came.

    Refused (HistoryNotCovered), with no run stored, when no MN history covers the window,
    unless `force`: then the operator vouches for the history, and no call is held back as
    `after_history`. `as_of_cap_us` trusts the history no further than that instant (the
    watch's settle time: the MN may write a record a little after the call ended). A lost
    record whose end no read as fresh as the newest "as of" covered is `unconfirmed`, not
    `missing_in_mn` (`coverage.Coverage.confirms`); forced, the operator vouches for them.
    """
    if until_us <= from_us:
        raise InvalidInputError("the window is empty: `until` must be after `from`")
    if from_us < FIRST_US or until_us > LAST_US:
        raise InvalidInputError("the window must lie within the years 1 to 9999 (UTC)")
    # A CDR not derived yet would count its leg as missing in syslog.
    await derive_pending(engine)
    await fail_interrupted(engine)
    repository = ReconcileRepository()
    async with read_snapshot(engine) as snapshot, engine.connect() as writer:
        coverage = await history_coverage.read(snapshot)  # the snapshot is taken here
        uncovered = coverage.uncovered(from_us, until_us)
        if uncovered is not None and not force:
            raise history_coverage.HistoryNotCovered(uncovered)
        history_as_of = None if uncovered is not None else coverage.as_of_us
        confirms: Callable[[int | None], bool] | None = None
        if uncovered is None:
            confirms = partial(coverage.confirms, tolerance_us=tolerance_us)
        if history_as_of is not None and as_of_cap_us is not None:
            history_as_of = min(history_as_of, as_of_cap_us)
        now_us = _now_us()
        run = {
            "created_us": now_us,
            "created_by": created_by,
            "from_us": from_us,
            "until_us": until_us,
            "tolerance_us": tolerance_us,
        }
        run_id = await _start(writer, run)
        try:
            pending = _Pending(writer, run_id)
            found = await _store_items(
                snapshot,
                pending,
                (from_us, until_us),
                tolerance_us,
                coverage.oldest_us,
                history_as_of,
                confirms,
            )
            summary = _summary(run_id, run, found, coverage, uncovered)
            async with writer.begin():
                await pending.store_rest()
                if not await repository.finish_run(writer, run_id, summary, _now_us()):
                    raise RunInterrupted(run_id)
                if then is not None:
                    await then(writer, summary)
        except BaseException as exc:
            await asyncio.shield(_fail(engine, run_id, _failure(exc)))
            raise
        finally:
            _LIVE.discard(run_id)
            await _release(writer, run_id)
    return summary


async def _start(writer: AsyncConnection, run: dict[str, Any]) -> int:
    """Store a new run as running in this process, in a transaction of its own; its id."""
    run_id = None
    try:
        async with writer.begin():
            run_id = await ReconcileRepository().create_run(
                writer,
                {**run, "status": RunState.RUNNING, "process": this_process(), "summary": "{}"},
            )
            # Live before anyone can see it (`fail_interrupted`).
            _LIVE.add(run_id)
    except BaseException:
        _LIVE.discard(run_id or 0)
        raise
    return run_id


def _summary(
    run_id: int,
    run: dict[str, Any],
    found: Tally,
    coverage: history_coverage.Coverage,
    uncovered: str | None,
) -> dict[str, Any]:
    """A run's summary, as stored and returned."""
    return {
        "id": run_id,
        "created_at": iso(run["created_us"]),
        "created_by": run["created_by"],
        "from": iso(run["from_us"]),
        "until": iso(run["until_us"]),
        "tolerance_seconds": run["tolerance_us"] / 1_000_000,
        "counts": found.counts,
        "gaps": [_gap(gap) for gap in gaps_in(found.entries)],
        "inputs": {
            "cdrs": found.cdrs,
            "mn_records": found.records,
            "pairs": found.pairs,
            "syslog": _bounds(found.syslog_bounds),
            "mn": _bounds(found.mn_bounds),
            "mn_retention_from": iso(coverage.oldest_us),
        },
        "coverage": coverage.describe(uncovered),
    }


class _Pending:
    """A run's items on their way to the database: stored `ITEMS_PER_TRANSACTION` at a time
    in transactions of their own (a slice may hold a few items or many, and each
    transaction may wait behind the batch writer's), the rest with the summary."""

    def __init__(self, writer: AsyncConnection, run_id: int) -> None:
        self.writer, self.run_id = writer, run_id
        self.rows: list[ItemRow] = []
        self.stored = 0

    async def add(self, items: list[ItemRow]) -> None:
        self.rows += items
        while len(self.rows) >= ITEMS_PER_TRANSACTION:
            async with self.writer.begin():
                await self._store(self.rows[:ITEMS_PER_TRANSACTION])
            del self.rows[:ITEMS_PER_TRANSACTION]

    async def store_rest(self) -> None:
        """Store what is left, in the transaction the caller began on the writer."""
        await self._store(self.rows)
        self.rows = []

    async def _store(self, rows: list[ItemRow]) -> None:
        await ReconcileRepository().insert_items(
            self.writer, self.run_id, rows, first_seq=self.stored + 1
        )
        self.stored += len(rows)


async def _store_items(
    snapshot: AsyncConnection,
    pending: _Pending,
    window: tuple[int, int],
    tolerance_us: int,
    retention_from: int | None,
    history_as_of: int | None,
    confirms: Callable[[int | None], bool] | None = None,
) -> Tally:
    """Read `window` from `snapshot` a slice at a time and hand the run's items to
    `pending`; the tally of what it found. A lost record that `confirms` does not vouch
    for is `unconfirmed` (None: every one is lost)."""
    from_us, until_us = window
    repository = ReconcileRepository()
    tally = Tally()
    span = await repository.time_span(snapshot, from_us, until_us)
    first, last = span if span is not None else (until_us, until_us - 1)
    start = first
    while start <= last:
        end = min(start + SLICE_US, until_us)
        legs = await repository.syslog_rows(snapshot, start, end)
        # Reach past the slice by the tolerance, so that a record just across an edge still
        # meets its twin. A lone MN record is judged in the slice whose window, moved back
        # by the tolerance, holds it: near the end of a slice it may still find its twin
        # among the next slice's legs.
        candidates = await repository.mn_rows(
            snapshot, start - tolerance_us, end + tolerance_us, [leg[ID] for leg in legs]
        )
        agreed, other_legs, other_records = split_agreeing(
            legs,
            [r for r in candidates if r[ID] not in tally.classified],
            tolerance_us,
        )
        outcome = classify(
            [leg_view(row) for row in other_legs],
            [leg_view(row) for row in other_records],
            tolerance_us=tolerance_us,
            retention_from_us=retention_from,
            history_as_of_us=history_as_of,
            window=(
                from_us if start == first else start - tolerance_us,
                until_us if end > last else end - tolerance_us,
            ),
            with_gaps=False,
        )
        items = [item_row(item) for item in outcome.items]
        if confirms is not None:  # not the agreeing pairs: matched, and the most by far
            items = confirmed(items, confirms)
        items += [agreed_row(cdr, mn) for cdr, mn in agreed]
        items.sort()  # item rows start with their unique pair key: the order of Items
        await pending.add(items)
        tally.add_items(items)
        tally.add_legs(legs)
        start = end
    return tally


def _now_us() -> int:
    return time.time_ns() // 1000


def _failure(exc: BaseException) -> str:
    """Why a run failed, as its `failure` says."""
    if isinstance(exc, asyncio.CancelledError):
        return "stopped before it finished (its task was cancelled)"
    return f"{type(exc).__name__}: {exc}"[:2000]


async def _fail(engine: AsyncEngine, run_id: int, failure: str) -> None:
    """Mark a run failed and discard its items; logged, never raised, since the run's own
    error is what its caller must hear (a run left running is failed later, see
    `fail_interrupted`)."""
    try:
        async with engine.begin() as conn:
            failed = await ReconcileRepository().fail_run(conn, run_id, failure, _now_us())
        if failed:  # not done after all (a commit that failed to say it succeeded)
            await discard_items(engine, run_id)
    except Exception:
        log.exception("could not mark reconciliation run %d failed (%s)", run_id, failure)


async def _release(writer: AsyncConnection, run_id: int) -> None:
    """Give up the run's lock (PostgreSQL); a connection that cannot is closed, which
    does it too, rather than go back to the pool still holding it."""
    try:
        await ReconcileRepository().release_run(writer, run_id)
        if writer.in_transaction():
            await writer.commit()
    except Exception:
        await writer.invalidate()


class RunInterrupted(ConflictError):
    """The run was marked failed by another process before it could finish."""

    def __init__(self, run_id: int) -> None:
        super().__init__(
            f"reconciliation run {run_id} was marked interrupted before it finished; run it again"
        )


# A run found interrupted says so, for the runs list and its API answer.
INTERRUPTED = "interrupted: the process running it stopped before it finished"


async def fail_interrupted(engine: AsyncEngine) -> list[int]:
    """Mark failed the runs left running by a process that is gone (killed, or a task of
    this one that ended without saying), discard their items; their ids. A run of another
    live process is left alone: on PostgreSQL its session holds the run's lock, on SQLite
    its process is still there (a process on another host is never judged gone)."""

    def is_live(run_id: int, process: str | None) -> bool:
        if process == this_process():
            return run_id in _LIVE
        return not has_ended(process)

    repository = ReconcileRepository()
    # Read first, write only when there is something to mark: no write lock for nothing.
    async with engine.connect() as conn:
        ended = await repository.ended_runs(conn, is_live)
    if ended:
        async with engine.begin() as conn:
            ended = await repository.fail_runs(conn, ended, INTERRUPTED, _now_us())
    for run_id in ended:
        log.warning("reconciliation run %d was %s; marked failed", run_id, INTERRUPTED)
        await discard_items(engine, run_id)
    return ended


async def discard_items(engine: AsyncEngine, run_id: int) -> int:
    """Delete a run's items a few thousand a transaction; how many went."""
    repository, gone = ReconcileRepository(), 0
    while True:
        async with engine.begin() as conn:
            deleted = await repository.delete_items(conn, run_id, ITEMS_PER_TRANSACTION)
        gone += deleted
        if deleted < ITEMS_PER_TRANSACTION:
            return gone


async def delete_run(engine: AsyncEngine, run_id: int) -> None:
    """Delete a run, its items first, a few thousand a transaction."""
    await discard_items(engine, run_id)
    async with engine.begin() as conn:
        await ReconcileRepository().delete_run(conn, run_id)


async def _finished(conn: AsyncConnection, run_id: int) -> dict[str, Any]:
    """Run `run_id`'s row if it is done; RunNotFound or RunNotFinished otherwise."""
    run = await ReconcileRepository().get_run(conn, run_id)
    if run is None:
        raise RunNotFound(run_id)
    if run["status"] != RunState.DONE:
        raise RunNotFinished(run_id, run["status"], run["created_us"], run["failure"])
    return run


async def get_summary(conn: AsyncConnection, run_id: int) -> dict[str, Any]:
    """The stored summary of a done run."""
    summary: dict[str, Any] = json.loads((await _finished(conn, run_id))["summary"])
    return summary


async def newest_runs(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    """The summaries of the newest `limit` done runs, newest first."""
    return [json.loads(text) for text in await ReconcileRepository().newest_summaries(conn, limit)]


async def page_items(
    conn: AsyncConnection, run_id: int, status: str | None, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a run's items and the cursor of the next page (None on the last)."""
    repository = ReconcileRepository()
    await _finished(conn, run_id)
    after = decode_cursor(cursor, int)[0] if cursor else 0
    rows = await repository.page_items(conn, run_id, status, after, limit + 1)
    rows, next_cursor = cut_page(rows, limit, lambda row: (row["seq"],))
    for row in rows:
        row["time"] = iso(row.pop("time_us"))
        row["differences"] = json.loads(row["differences"]) if row["differences"] else None
        row.pop("run_id", None)
    return rows, next_cursor


# What a person needs to recognise an item's legs: who, dialled how, when, how long.
SHOWN_LEG = ("display_name", "local_alias", "remote_alias", "start_us", "end_us", "duration")


async def page_items_with_legs(
    conn: AsyncConnection, run_id: int, status: str | None, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of `page_items`, each item with the syslog CDR (`cdr`) and the MN record (`mn`)
    it names: their `SHOWN_LEG` fields, times as ISO 8601, or None for a side it lacks."""
    items, next_cursor = await page_items(conn, run_id, status, cursor, limit)
    repository = ReconcileRepository()
    found = {}
    for side, table in (("cdr", cdrs), ("mn", mn_participants)):
        ids = [item[f"{side}_id"] for item in items if item[f"{side}_id"]]
        found[side] = await repository.legs_by_id(conn, table, ids, SHOWN_LEG)
    for item in items:
        for side, legs in found.items():
            leg = legs.get(item[f"{side}_id"] or "")
            if leg is not None:
                leg["start"], leg["end"] = iso(leg.pop("start_us")), iso(leg.pop("end_us"))
            item[side] = leg
    return items, next_cursor


HOUR_US = 3600 * 1_000_000


@dataclass(frozen=True, slots=True)
class Density:
    """How many syslog CDRs and MN records started in each bucket of a window."""

    from_us: int
    bucket_us: int  # an hour, or whole hours when the window is long
    syslog: list[int]  # per bucket, from `from_us`
    mn: list[int]


async def density(
    conn: AsyncConnection, from_us: int, until_us: int, max_buckets: int = 720
) -> Density:
    """Syslog CDRs and MN records per hour of call start over [from, until); the buckets
    are whole hours, widened so that there are at most `max_buckets`."""
    hours = max(1, -(-(until_us - from_us) // HOUR_US))
    bucket_us = HOUR_US * -(-hours // max_buckets)
    repository = ReconcileRepository()
    syslog = await repository.starts_per_bucket(conn, cdrs, from_us, until_us, bucket_us)
    mn = await repository.starts_per_bucket(conn, mn_participants, from_us, until_us, bucket_us)
    return Density(from_us, bucket_us, syslog, mn)


async def kept_around_gaps(
    conn: AsyncConnection, summary: dict[str, Any], limit: int = 3
) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """For each gap of a run's summary, the MN records kept nearest before and after it
    (up to `limit` each, nearest first), times as ISO 8601."""
    start, end = _us(summary.get("from")), _us(summary.get("until"))
    repository = ReconcileRepository()
    around: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    for gap in summary.get("gaps") or []:
        first, last = _us(gap.get("from")), _us(gap.get("until"))
        if start is None or end is None or first is None or last is None:
            around.append(([], []))
            continue
        before, after = await repository.kept_around(conn, (start, end), (first, last), limit)
        for record in (*before, *after):
            record["start"], record["end"] = iso(record.pop("start_us")), iso(record.pop("end_us"))
        around.append((before, after))
    return around


def _us(text: Any) -> int | None:
    """An ISO 8601 time of a stored summary as epoch microseconds."""
    if not isinstance(text, str):
        return None
    return to_us(datetime.fromisoformat(text))
