"""Bulk insert beside a busy event loop: sqlite3's executemany against multi-row statements.

What it measures
    The raw store's insert as `serve`'s writer runs it: on a database thread (aiosqlite's),
    while the event loop parses the next batch on the main thread. sqlite3 lets go of the
    GIL while it steps a statement and takes it back for the next row or statement; a
    thread that wants the GIL back waits until the holder lets go, at the latest after the
    switch interval (`sys.setswitchinterval`, 5 ms by default). So each way of inserting is
    timed in four settings: main thread idle or busy (a pure-Python loop standing in for the
    parser), switch interval 5 ms (CPython's default) or 0.5 ms (what `Runtime.build` sets).

    The ways: `executemany` of the one-row INSERT (what the writer did until 2026-12-07),
    and `app.db.sql.Insert` (multi-row `VALUES` statements of up to ROWS_PER_STATEMENT rows).
    Rows are the realistic mix's (`bench.frames.pexip_frames(500, event_every=10)`),
    parsed, packed and laid out by the writer's own code, 5,000 a transaction, into a fresh
    migrated SQLite file with cdrecon's pragmas. Figures are wall microseconds per row on
    the database thread, the best of `--rounds`.

Run:  .venv/bin/python -m bench.insert_gil [--messages 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.db.sql import Insert
from app.ingest.origin import Origin
from app.ingest.prepare import prepare_chunk
from app.ingest.rows import MESSAGE_COLUMNS, Batch, Row, add_frames
from bench.frames import pexip_frames
from parsers.framing import Framer

BATCH = 5000
INTERVALS = (0.005, 0.0005)


def batches(count: int) -> list[list[Row]]:
    """`count` realistic messages as the writer's rows, `BATCH` a transaction."""
    framer = Framer()
    frames = list(framer.feed(b"".join(itertools.islice(pexip_frames(500, event_every=10), count))))
    origin = Origin("tcp", "10.0.0.1", 5000)
    out = []
    for start in range(0, len(frames), BATCH):
        chunk = prepare_chunk(origin, 1_764_150_000_000_000, frames[start : start + BATCH])
        batch = Batch()
        add_frames(batch, origin, chunk.received_us, chunk.frames, chunk.messages, chunk.stored)
        out.append(batch.rows)
    return out


def spin(stop: threading.Event) -> None:
    """The busy event loop: pure Python until told to stop."""
    total = 0
    while not stop.is_set():
        for i in range(1000):
            total += i


async def insert_all(url: str, rows: list[list[Row]], multirow: bool) -> float:
    """Seconds to insert `rows`, a transaction a batch, the one way or the other."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            dialect = conn.dialect
        insert = Insert("messages", MESSAGE_COLUMNS, dialect.name, dialect.paramstyle)
        started = time.perf_counter()
        for batch in rows:
            async with engine.begin() as conn:
                if multirow:
                    await insert.run(conn, batch)
                else:
                    await conn.exec_driver_sql(insert.sql, batch)
        return time.perf_counter() - started
    finally:
        await engine.dispose()


def _insert_all(url: str, rows: list[list[Row]], multirow: bool) -> float:
    return asyncio.run(insert_all(url, rows, multirow))


def timed(run: Callable[[], float], busy: bool) -> float:
    """`run()` in a thread of its own (its own event loop, as the writer's database thread
    works for the writer's), beside a busy or idle main thread."""
    stop = threading.Event()
    seconds: list[float] = []
    worker = threading.Thread(target=lambda: seconds.append(run()))
    worker.start()
    if busy:
        watcher = threading.Thread(target=_stop_after, args=(worker, stop))
        watcher.start()
        spin(stop)
        watcher.join()
    else:
        worker.join()
    return seconds[0]


def _stop_after(worker: threading.Thread, stop: threading.Event) -> None:
    worker.join()
    stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = batches(args.messages)
    count = sum(len(batch) for batch in rows)
    best: dict[tuple[str, str, float], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for interval in INTERVALS:
                sys.setswitchinterval(interval)
                for way, multirow in (("executemany", False), ("Insert", True)):
                    for main_thread, busy in (("idle", False), ("busy", True)):
                        path = Path(tmp) / f"r{round_}-{way}-{main_thread}-{interval}.db"
                        url = f"sqlite+aiosqlite:///{path}"
                        upgrade(url)
                        run = partial(_insert_all, url, rows, multirow)
                        seconds = timed(run, busy)
                        key = (way, main_thread, interval)
                        best[key] = min(best.get(key, seconds), seconds)
    print(f"{count:,} rows, {BATCH:,} a transaction; wall µs a row, best of {args.rounds}")
    print(
        f"{'insert':<12} {'main thread':<12}"
        + "".join(f"{f'switch {i * 1000:g} ms':>16}" for i in INTERVALS)
    )
    for way in ("executemany", "Insert"):
        for main_thread in ("idle", "busy"):
            cells = "".join(f"{best[way, main_thread, i] / count * 1e6:>16.1f}" for i in INTERVALS)
            print(f"{way:<12} {main_thread:<12}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
