"""The calls the reconcile and export benchmarks plant: closed CDRs and the MN's records."""

from __future__ import annotations

import itertools
import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.mn_records import CDR_COLUMNS, MN_COLUMNS, cdr_row, mn_row
from bench.people import person

BASE_US = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp() * 1_000_000)

SPAN_US = 30 * 86_400 * 1_000_000

LOST_FRACTION = 0.05

LOST_FROM = 0.60  # the gap starts at this fraction of the records, in end-time order

MISMATCHED_FRACTION = 0.001

MISMATCH_SECONDS = 600

MN_ONLY = 7

CHUNK = 20_000


@dataclass(slots=True)
class Plan:
    """Where N calls sit in time, and which of them the MN lost or got wrong."""

    n: int
    starts: list[int]
    ends: list[int]
    lost: set[int] = field(default_factory=set)  # indices with no MN record
    mismatched: set[int] = field(default_factory=set)  # indices whose MN duration is off
    mn_only: int = 0

    @property
    def window(self) -> tuple[int, int]:
        """A [from, until) window holding every call's start."""
        return BASE_US - 3_600_000_000, BASE_US + SPAN_US + 86_400_000_000

    def gap_bounds(self) -> tuple[int, int]:
        """First and last end time of the lost calls."""
        ends = [self.ends[i] for i in self.lost]
        return min(ends), max(ends)


def plan_calls(n: int, seed: int, *, lost: float = 0.0, mismatched: float = 0.0) -> Plan:
    """N calls at an even rate over 30 days with realistic durations (exponential, mean
    20 minutes, 5 s to 4 h) and distinct end times; the `lost` fraction is one contiguous
    run by end time, and `mismatched` is drawn from the rest."""
    rng = random.Random(seed)
    step = SPAN_US // n
    starts = [BASE_US + i * step + rng.randrange(step) for i in range(n)]
    ends = [
        start + int(min(max(rng.expovariate(1 / 1200), 5), 14_400) * 1_000_000) for start in starts
    ]
    order = sorted(range(n), key=ends.__getitem__)
    for before, index in itertools.pairwise(order):
        if ends[index] <= ends[before]:  # keep end times distinct: a gap has sharp edges
            ends[index] = ends[before] + 1
    plan = Plan(n, starts, ends)
    if lost:
        first = int(n * LOST_FROM)
        plan.lost = set(order[first : first + round(n * lost)])
    if mismatched:
        kept = [i for i in range(n) if i not in plan.lost]
        plan.mismatched = set(rng.sample(kept, round(n * mismatched)))
    return plan


def insert_sql(table_name: str, columns: Sequence[str]) -> str:
    """INSERT with qmark placeholders."""
    return (
        f"INSERT INTO {table_name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )


def planted_rows(
    plan: Plan,
    seed: int,
    with_mn: bool,
    cdr_columns: Sequence[str] = CDR_COLUMNS,
    mn_columns: Sequence[str] = MN_COLUMNS,
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """(CDR rows, MN rows) a chunk at a time, for the plan, in the given column orders."""
    rng = random.Random(seed + 1)
    imported_us = time.time_ns() // 1000
    cdr_rows: list[tuple[Any, ...]] = []
    mn_rows: list[tuple[Any, ...]] = []
    if with_mn:
        for k in range(plan.mn_only):  # records the MN has and syslog never saw
            start = BASE_US + (k + 1) * 1_000_000
            mn_rows.append(
                mn_row(person(rng), start, start + 60_000_000, 0, imported_us, mn_columns)
            )
    for i in range(plan.n):
        who = person(rng)
        start, end = plan.starts[i], plan.ends[i]
        cdr_rows.append(cdr_row(who, start, end, cdr_columns))
        if with_mn and i not in plan.lost:
            shifted_start = start + rng.randrange(-999_000, 999_000)
            shifted_end = end + rng.randrange(-999_000, 999_000)
            offset = MISMATCH_SECONDS if i in plan.mismatched else 0
            mn_rows.append(mn_row(who, shifted_start, shifted_end, offset, imported_us, mn_columns))
        if len(cdr_rows) >= CHUNK:
            yield cdr_rows, mn_rows
            cdr_rows, mn_rows = [], []
    yield cdr_rows, mn_rows


def plant(database: Path, plan: Plan, seed: int, *, with_mn: bool) -> float:
    """Insert the plan's CDRs (and MN records) into the upgraded database; seconds taken.

    The columns are those the database has, so that a reference checkout's schema (made by
    its own `cdrecon db upgrade`) gets the same calls; a value for a column it lacks is
    left out, and said."""
    started = time.perf_counter()
    conn = sqlite3.connect(database)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        cdr_columns = [c for c in _columns(conn, "cdrs") if c in CDR_COLUMNS]
        mn_columns = [c for c in _columns(conn, "mn_participants") if c in MN_COLUMNS]
        if left_out := (set(CDR_COLUMNS) - set(cdr_columns)) | (set(MN_COLUMNS) - set(mn_columns)):
            print(f"{database}: no such columns here, left out: {sorted(left_out)}", flush=True)
        cdr_sql = insert_sql("cdrs", cdr_columns)
        mn_sql = insert_sql("mn_participants", mn_columns)
        with conn:
            for cdr_rows, mn_rows in planted_rows(plan, seed, with_mn, cdr_columns, mn_columns):
                conn.executemany(cdr_sql, cdr_rows)
                conn.executemany(mn_sql, mn_rows)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - started


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")]


def iso(us: int) -> str:
    """Microseconds since the epoch as ISO 8601 UTC with Z, as the product prints them."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")
