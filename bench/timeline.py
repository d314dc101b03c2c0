"""Run page benchmark: what the timeline and the kept records cost a run's page.

What it measures
    For each N (`--sizes`, default 100k and 1M), a fresh SQLite database holds N closed
    CDRs over 30 days and the MN's records of them less a 5% restore gap (the calls
    bench.reconcile plants: bench/planted.py). On a window holding them all, it times
    (median of `--runs`):

    * `density`: the CDRs and MN records per hour of call start (`reconcile.service.density`,
      the timeline's bars; 720 buckets);
    * `kept`: the MN records kept nearest either side of the gap
      (`reconcile.service.kept_around_gaps`, 3 each);
    * the reference, `count`: `SELECT count(*)` of the CDRs by start time and of the MN
      records by end time over the same window, one pass over each index: the least any
      per-hour figure can cost;
    * and `items page`: the page's own first 50 items with their legs
      (`reconcile.service.page_items_with_legs`), what the page cost before the timeline,
      after one reconciliation of the window (not timed).

Run:  .venv/bin/python -m bench.timeline [--sizes 100000,1000000] [--runs 5]
Writes bench/out/timeline-<UTC timestamp>.json.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from app.db.engine import create_engine
from app.reconcile import service
from bench.commands import upgrade_database
from bench.options import benchmark_parser, parse_sizes
from bench.planted import LOST_FRACTION, iso, plan_calls, plant
from bench.results import stamp, table, write_json

SEED = 41


async def _median(runs: int, step: Callable[[], Awaitable[Any]]) -> float:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        await step()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


async def measure(database: Path, n: int, runs: int) -> dict[str, Any]:
    """Plant N calls in `database` and time each query on them; seconds, medians."""
    plan = plan_calls(n, SEED, lost=LOST_FRACTION)
    plant(database, plan, SEED, with_mn=True)
    start, until = plan.window
    first, last = plan.gap_bounds()
    summary = {
        "from": iso(start),
        "until": iso(until),
        "gaps": [{"from": iso(first), "until": iso(last), "count": len(plan.lost)}],
    }
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        run = await service.reconcile(engine, start, until, 2_000_000, "bench", force=True)
        async with engine.connect() as conn:

            async def density() -> None:
                await service.density(conn, start, until)

            async def kept() -> None:
                await service.kept_around_gaps(conn, summary)

            async def count() -> None:
                for sql in (
                    "SELECT count(*) FROM cdrs WHERE start_us >= :a AND start_us < :b",
                    "SELECT count(*) FROM mn_participants WHERE end_us >= :a AND end_us < :b",
                ):
                    await conn.execute(text(sql), {"a": start, "b": until})

            async def items() -> None:
                await service.page_items_with_legs(conn, int(run["id"]), None, None, 50)

            return {
                "n": n,
                "density": await _median(runs, density),
                "kept": await _median(runs, kept),
                "count (reference)": await _median(runs, count),
                "items page": await _median(runs, items),
            }
    finally:
        await engine.dispose()


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="calls planted, per run")
    parser.add_argument("--runs", type=int, default=5, help="timings per query (median)")
    args = parser.parse_args()
    when = stamp()
    results = []
    for n in parse_sizes(args.sizes):
        with tempfile.TemporaryDirectory(prefix="cdrecon-bench-timeline-") as folder:
            database = Path(folder) / "cdrecon.db"
            upgrade_database(database)
            results.append(asyncio.run(measure(database, n, args.runs)))
    headers = ["calls", "density", "kept", "count (reference)", "items page"]
    rows = [[f"{r['n']:,}", *(f"{r[h] * 1000:,.1f} ms" for h in headers[1:])] for r in results]
    print(table(headers, rows))
    print(write_json("timeline", when, {"runs": args.runs, "results": results}))


if __name__ == "__main__":
    main()
