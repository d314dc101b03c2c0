"""Reconciliation runs: load a window from both stores, classify, persist, summarise."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import InvalidInputError, NotFoundError
from app.history.repository import HistoryRepository
from app.times import iso

from .matching import Gap, GapEntry, Status, classify, gap_entries, gaps_in
from .repository import ReconcileRepository


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


def _bounds(times: list[int | None]) -> dict[str, str | None]:
    known = [t for t in times if t is not None]
    return {"first": iso(min(known)) if known else None, "last": iso(max(known)) if known else None}


# A window is reconciled a slice at a time, so that memory follows the busiest slice, not
# the whole window.
SLICE_US = 6 * 3600 * 1_000_000


async def reconcile(
    conn: AsyncConnection,
    from_us: int,
    until_us: int,
    tolerance_us: int = 2_000_000,
    created_by: str | None = None,
) -> dict[str, Any]:
    """Run a reconciliation over [from, until), store it, and return its summary."""
    if until_us <= from_us:
        raise InvalidInputError("the window is empty: `until` must be after `from`")
    repository = ReconcileRepository()
    retention_from = await HistoryRepository.for_connection(conn).oldest_start(conn)
    now_us = time.time_ns() // 1000
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
    counts = {status.value: 0 for status in Status}
    entries: list[GapEntry] = []
    classified: set[str] = set()  # MN records given a status in an earlier slice
    seq = cdrs = records = pairs = 0
    syslog_times: list[int | None] = []
    mn_times: list[int | None] = []
    span = await repository.time_span(conn, from_us, until_us)
    first, last = span if span is not None else (until_us, until_us - 1)
    start = first
    while start <= last:
        end = min(start + SLICE_US, until_us)
        legs = await repository.syslog_legs(conn, start, end)
        # Reach past the slice by the tolerance, so that a record just across an edge still
        # meets its twin. A lone MN record is judged in the slice whose window, moved back
        # by the tolerance, holds it: near the end of a slice it may still find its twin
        # among the next slice's legs.
        candidates = await repository.mn_records(
            conn, start - tolerance_us, end + tolerance_us, (leg.id for leg in legs)
        )
        outcome = classify(
            legs,
            [r for r in candidates if r.id not in classified],
            tolerance_us=tolerance_us,
            retention_from_us=retention_from,
            window=(
                from_us if start == first else start - tolerance_us,
                until_us if end > last else end - tolerance_us,
            ),
            with_gaps=False,
        )
        await repository.insert_items(conn, run_id, outcome.items, first_seq=seq + 1)
        seq += len(outcome.items)
        for status, count in outcome.counts.items():
            counts[status] += count
        entries.extend(gap_entries(outcome.items))
        for item in outcome.items:
            if item.mn is not None:
                classified.add(item.mn.id)
                records += 1
                mn_times.append(item.mn.time_us)
                if item.cdr is not None:
                    pairs += 1
        cdrs += len(legs)
        syslog_times.extend(leg.time_us for leg in legs)
        start = end
    summary = {
        "id": run_id,
        "created_at": iso(now_us),
        "created_by": created_by,
        "from": iso(from_us),
        "until": iso(until_us),
        "tolerance_seconds": tolerance_us / 1_000_000,
        "counts": counts,
        "gaps": [_gap(gap) for gap in gaps_in(entries)],
        "inputs": {
            "cdrs": cdrs,
            "mn_records": records,
            "pairs": pairs,
            "syslog": _bounds(syslog_times),
            "mn": _bounds(mn_times),
            "mn_retention_from": iso(retention_from),
        },
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
    conn: AsyncConnection, run_id: int, status: str | None, cursor: int, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of a run's items and the cursor of the next page (None on the last)."""
    repository = ReconcileRepository()
    if await repository.get_run(conn, run_id) is None:
        raise RunNotFound(run_id)
    rows = await repository.page_items(conn, run_id, status, cursor, limit + 1)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = int(rows[-1]["seq"])
    for row in rows:
        row["time"] = iso(row.pop("time_us"))
        row["differences"] = json.loads(row["differences"]) if row["differences"] else None
        row.pop("run_id", None)
    return rows, next_cursor
