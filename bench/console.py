"""Console benchmark: the overview page's time against the size of the raw store.

What it measures
    For each N (`--sizes`, default 10k, 100k and 1M), a fresh SQLite database holds N raw
    messages from `--nodes` hosts spread over the last 7 days, with the tables the batch
    writer maintains beside them as it would have left them (`nodes`, `row_counts`, and
    `node_minutes` for the last two days). A real `cdrecon serve` runs on it (syslog off),
    and `GET /` is asked `--requests` times with an admin token's session cookie after two
    warm-up requests: the median and the slowest answer. The page must carry the traffic
    chart of every node. Each page request is followed by a `GET /healthz`, whose median is
    the floor of one request on this (shared) machine at that moment.

    The reference, in the same run and on the same file: the queries the overview would need
    without maintained tables, `SELECT count(*) FROM messages` and the per-node, per-minute
    `GROUP BY` over the last 24 hours of `messages`, timed with Python's sqlite3 (median of
    3). The point: the page's time stays flat while the reference grows with N.

How
    `cdrecon db upgrade` creates the schema; the rows are inserted with sqlite3 executemany
    (not timed). The token comes from `cdrecon token create bench --scope admin`.

Run:  .venv/bin/python -m bench.console [--sizes 10000,100000,1000000] [--requests 15]
Writes bench/out/console-<UTC timestamp>.json; the server logs go next to it.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from bench.commands import upgrade_database
from bench.export import create_token, start_server, stop_server
from bench.options import benchmark_parser, parse_sizes
from bench.paths import OUT_DIR
from bench.procfs import load_average, load_text
from bench.results import stamp, table, write_json

MINUTE_US = 60_000_000
DAY_US = 24 * 60 * MINUTE_US
SPREAD_DAYS = 7
KEPT_DAYS = 2  # as app/ingest/repository.py keeps node_minutes


@dataclass(slots=True)
class SizeResult:
    """One store size: the page's answers and the reference's."""

    messages: int
    page_median_ms: float
    page_max_ms: float
    healthz_median_ms: float  # GET /healthz between the pages: a request's floor then
    page_bytes: int
    reference_median_ms: float
    fill_seconds: float
    load: str  # the 1-minute load average before and after the requests


def fill(database: Path, n: int, hosts: int, now_us: int) -> None:
    """N messages from `hosts` hosts, evenly over the last SPREAD_DAYS, and the maintained
    tables the writer would have left."""
    span = SPREAD_DAYS * DAY_US
    names = [f"conf-{index:02d}" for index in range(hosts)]
    minutes: Counter[tuple[int, str]] = Counter()
    with closing(sqlite3.connect(database)) as db, db:
        rows = []
        for index in range(n):
            received = now_us - span + index * span // n
            host = names[index % hosts]
            if received >= now_us - KEPT_DAYS * DAY_US:
                minutes[(received - received % MINUTE_US, host)] += 1
            rows.append(
                (
                    received,
                    "tcp",
                    "rfc5424",
                    host,
                    40,
                    False,
                    b"<134>1 2026-12-01T00:00:00Z %b pexip - - - x" % host.encode(),
                )
            )
            if len(rows) == 50_000:
                _insert(db, rows)
                rows = []
        _insert(db, rows)
        db.executemany(
            "INSERT INTO nodes (host, last_peer, last_transport, first_seen_us, last_seen_us, "
            "messages, parse_failures) VALUES (?, '127.0.0.1', 'tcp', ?, ?, ?, 0)",
            [
                (host, now_us - span, now_us, len(range(i, n, hosts)))
                for i, host in enumerate(names)
            ],
        )
        db.executemany(
            "INSERT INTO node_minutes (minute_us, host, messages) VALUES (?, ?, ?)",
            [(minute, host, count) for (minute, host), count in minutes.items()],
        )
        db.execute("INSERT INTO row_counts (table_name, slot, n) VALUES ('messages', 0, ?)", (n,))


def _insert(db: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
    db.executemany(
        "INSERT INTO messages (received_us, transport, format, hostname, msg_offset, "
        "truncated, raw) VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def reference_ms(database: Path, now_us: int) -> float:
    """Median of 3: the overview's figures read from `messages` itself."""
    times = []
    with closing(sqlite3.connect(database)) as db:
        for _ in range(3):
            started = time.perf_counter()
            db.execute("SELECT count(*) FROM messages").fetchone()
            db.execute(
                "SELECT hostname, received_us / 60000000, count(*) FROM messages "
                "WHERE received_us >= ? GROUP BY 1, 2",
                (now_us - DAY_US,),
            ).fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def page_ms(
    base_url: str, token: str, requests: int, hosts: int
) -> tuple[list[float], list[float], int]:
    """The times of `requests` GET / (after two warm-ups), each followed by a GET /healthz
    (the floor of one request on this machine at that moment), and the page's size."""
    times: list[float] = []
    floors: list[float] = []
    size = 0
    with httpx.Client(base_url=base_url, cookies={"cdrecon_token": token}, timeout=60) as client:
        for index in range(requests + 2):
            started = time.perf_counter()
            page = client.get("/")
            elapsed = (time.perf_counter() - started) * 1000
            if page.status_code != 200 or page.text.count('class="spark"') != hosts:
                raise RuntimeError(f"GET / answered {page.status_code} without every chart")
            size = len(page.content)
            started = time.perf_counter()
            if client.get("/healthz").status_code != 200:
                raise RuntimeError("GET /healthz is not 200")
            floor = (time.perf_counter() - started) * 1000
            if index >= 2:
                times.append(elapsed)
                floors.append(floor)
    return times, floors, size


def run_size(args: argparse.Namespace, n: int, when: str) -> SizeResult:
    """Fill a store of N messages, start the server, time the page and the reference."""
    workdir = Path(tempfile.mkdtemp(prefix=f"cdrecon-console-{n}-"))
    logdir = OUT_DIR / f"console-{when}-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    try:
        database = workdir / "bench.db"
        upgrade_database(database)
        now_us = time.time_ns() // 1000
        started = time.perf_counter()
        fill(database, n, args.nodes, now_us)
        filled = time.perf_counter() - started
        token = create_token(database)
        reference = reference_ms(database, now_us)
        server = start_server(database, logdir / f"serve-{n}.log", 60)
        try:
            before = load_average()
            times, floors, size = page_ms(server.base_url, token, args.requests, args.nodes)
            load = load_text(before, load_average())
        finally:
            stop_server(server)
        return SizeResult(
            messages=n,
            page_median_ms=statistics.median(times),
            page_max_ms=max(times),
            healthz_median_ms=statistics.median(floors),
            page_bytes=size,
            reference_median_ms=reference,
            fill_seconds=filled,
            load=load,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run every size and print the table."""
    parser = benchmark_parser(__doc__)
    parser.add_argument("--sizes", type=parse_sizes, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--nodes", type=int, default=8, help="sending hosts")
    parser.add_argument("--requests", type=int, default=15, help="timed GET / per size")
    args = parser.parse_args(argv)
    when = stamp()
    results = []
    for n in args.sizes:
        result = run_size(args, n, when)
        print(
            f"[{n:,}] GET / median {result.page_median_ms:.1f} ms; "
            f"reference {result.reference_median_ms:.1f} ms",
            flush=True,
        )
        results.append(result)
    print(
        table(
            (
                "messages",
                "GET / median ms",
                "GET / max ms",
                "GET /healthz median ms",
                "page KB",
                "reference: scan messages ms",
            ),
            [
                (
                    f"{r.messages:,}",
                    f"{r.page_median_ms:.1f}",
                    f"{r.page_max_ms:.1f}",
                    f"{r.healthz_median_ms:.1f}",
                    f"{r.page_bytes / 1024:.0f}",
                    f"{r.reference_median_ms:.1f}",
                )
                for r in results
            ],
        )
    )
    path = write_json(
        "console",
        when,
        {"settings": vars(args), "results": [asdict(r) for r in results]},
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
