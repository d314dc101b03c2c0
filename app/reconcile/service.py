"""Reconciliation runs: load a window from both stores, classify, persist, summarise."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.cdr.deriving import derive_pending
from app.db.models import cdrs, mn_participants
from app.errors import InvalidInputError, NotFoundError
from app.history import coverage as history_coverage
from app.paging import cut_page, decode_cursor
from app.times import FIRST_US, LAST_US, iso, to_us

from .items import agreed_row, item_row
from .matching import Gap, classify, gaps_in
from .repository import ReconcileRepository
from .rows import ID, leg_view, split_agreeing
from .tally import Tally


class RunNotFound(NotFoundError):
    """No reconciliation run with that id."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"no reconciliation run {run_id}")


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


async def reconcile(
    conn: AsyncConnection,
    from_us: int,
    until_us: int,
    tolerance_us: int = 2_000_000,
    created_by: str | None = None,
    force: bool = False,
    as_of_cap_us: int | None = None,
) -> dict[str, Any]:
    """Run a reconciliation over [from, until), store it, and return its summary.

    Derives what a busy writer deferred first, in transactions of its own: call it before
    `conn` has read anything, so that it reads complete CDRs. Refused (HistoryNotCovered)
    when no MN history covers the window, unless `force`: then the operator vouches for the
    history, and no call is held back as `after_history`. `as_of_cap_us` trusts the history
    no further than that instant (the watch's settle time: the MN may write a record a
    little after the call ended).
    """
    if until_us <= from_us:
        raise InvalidInputError("the window is empty: `until` must be after `from`")
    if from_us < FIRST_US or until_us > LAST_US:
        raise InvalidInputError("the window must lie within the years 1 to 9999 (UTC)")
    # A CDR not derived yet would count its leg as missing in syslog.
    await derive_pending(conn.engine)
    repository = ReconcileRepository()
    now_us = time.time_ns() // 1000
    # The run's row is `conn`'s first statement: on SQLite the transaction takes the write
    # lock before it reads, so it cannot find its snapshot stale when it writes (which
    # fails at once, however long it would wait, while ingest commits).
    run_id = await repository.create_run(
        conn,
        {
            "created_us": now_us,
            "created_by": created_by,
            "from_us": from_us,
            "until_us": until_us,
            "tolerance_us": tolerance_us,
            "summary": "{}",
        },
    )
    coverage = await history_coverage.read(conn)
    uncovered = coverage.uncovered(from_us, until_us)
    if uncovered is not None and not force:
        raise history_coverage.HistoryNotCovered(uncovered)
    history_as_of = None if uncovered is not None else coverage.as_of_us
    if history_as_of is not None and as_of_cap_us is not None:
        history_as_of = min(history_as_of, as_of_cap_us)
    retention_from = coverage.oldest_us
    tally = Tally()
    seq = 0
    span = await repository.time_span(conn, from_us, until_us)
    first, last = span if span is not None else (until_us, until_us - 1)
    start = first
    while start <= last:
        end = min(start + SLICE_US, until_us)
        legs = await repository.syslog_rows(conn, start, end)
        # Reach past the slice by the tolerance, so that a record just across an edge still
        # meets its twin. A lone MN record is judged in the slice whose window, moved back
        # by the tolerance, holds it: near the end of a slice it may still find its twin
        # among the next slice's legs.
        candidates = await repository.mn_rows(
            conn, start - tolerance_us, end + tolerance_us, [leg[ID] for leg in legs]
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
        items = [agreed_row(cdr, mn) for cdr, mn in agreed]
        items += [item_row(item) for item in outcome.items]
        items.sort()  # item rows start with their unique pair key: the order of Items
        await repository.insert_items(conn, run_id, items, first_seq=seq + 1)
        seq += len(items)
        tally.add_items(items)
        tally.add_legs(legs)
        start = end
    summary = {
        "id": run_id,
        "created_at": iso(now_us),
        "created_by": created_by,
        "from": iso(from_us),
        "until": iso(until_us),
        "tolerance_seconds": tolerance_us / 1_000_000,
        "counts": tally.counts,
        "gaps": [_gap(gap) for gap in gaps_in(tally.entries)],
        "inputs": {
            "cdrs": tally.cdrs,
            "mn_records": tally.records,
            "pairs": tally.pairs,
            "syslog": _bounds(tally.syslog_bounds),
            "mn": _bounds(tally.mn_bounds),
            "mn_retention_from": iso(retention_from),
        },
        "coverage": coverage.describe(uncovered),
    }
    await repository.save_summary(conn, run_id, summary)
    return summary


async def get_summary(conn: AsyncConnection, run_id: int) -> dict[str, Any]:
    """The stored summary of a run."""
    run = await ReconcileRepository().get_run(conn, run_id)
    if run is None:
        raise RunNotFound(run_id)
    summary: dict[str, Any] = json.loads(run["summary"])
    return summary


async def newest_runs(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    """The summaries of the newest `limit` runs, newest first."""
    summaries = []
    for text in await ReconcileRepository().newest_summaries(conn, limit):
        summary = json.loads(text)
        if isinstance(summary, dict) and summary:  # "{}" while a run is being written
            summaries.append(summary)
    return summaries


async def page_items(
    conn: AsyncConnection, run_id: int, status: str | None, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a run's items and the cursor of the next page (None on the last)."""
    repository = ReconcileRepository()
    if await repository.get_run(conn, run_id) is None:
        raise RunNotFound(run_id)
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
