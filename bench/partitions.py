"""PostgreSQL day partitions benchmark: what partitioning `messages` costs and saves.

What it measures, on a fresh database built by the migrations (partitioned `messages`) with
a plain copy of the table beside it (`messages_plain`: same columns and indexes, a unique
digest index, no partitions), in one run:
    1. Insert rate: batches of B realistic rows (Pexip lines, one in ten a call event, packed
       as ingest packs them) inserted by the product's `MessageRepository.insert_messages`
       into each table, alternately, `--rounds` times; best round of each, rows a second.
    2. Lookup by id: with `--days` days of (empty) partitions made besides today's, the
       reads deriving and the console make: 500 ids at a time (`WHERE id IN (...)`, as
       `CdrRepository.leg_events`), one id at a time, and a join from rows holding the ids
       (as `events_of_leg` reads a leg's events) with the id list named on both sides or on
       one only; µs per id, best round of each.
    3. Pruning N days of M support messages each: retention's pass (`prune`, dropping
       the days' partitions) against deleting the same rows from the plain table as retention
       deletes rows (ids read in order, `DELETE ... WHERE id IN` 2,000 at a time, one
       transaction each), seconds each.
    4. The byte test that classes messages when they are stored (`may_carry_call_event`):
       ns per line (beside extract's own first test, which every message already pays),
       and the share of lines classed "may carry" against those that do, in
       `bench.frames` lines (one in ten a call event) and the real sample lines.

Run:  .venv/bin/python -m bench.partitions [--rows 50000] [--days 400] [--prune-days 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
import uuid

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr.extract import extract, may_carry_call_event
from app.db import partitions
from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.ingest.origin import Origin
from app.ingest.prepare import prepare_chunk
from app.ingest.repository import MessageRepository
from app.ingest.rows import Batch, add_frames
from app.retention.policy import DAY_US, Policy
from app.retention.service import prune
from bench.frames import pexip_frames
from bench.paths import ROOT
from parsers.framing import Frame

POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BATCH = 500


def _batch(frames: list[bytes], received_us: int) -> Batch:
    """A batch as the writer builds it from `frames`."""
    chunk = prepare_chunk(
        Origin("tcp", "10.0.0.1", 1), received_us, [Frame(f) for f in frames], find=False
    )
    batch = Batch(classify=True)
    add_frames(batch, chunk.origin, received_us, chunk.frames, chunk.messages, chunk.stored)
    return batch


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _insert(engine: AsyncEngine, table: str, batches: list[Batch]) -> float:
    """Seconds to insert `batches` into `table`, a transaction each."""
    async with engine.connect() as conn:
        repository = MessageRepository.for_connection(conn)
    repository._insert_sql = repository._insert_sql.replace("INTO messages ", f"INTO {table} ")
    started = time.perf_counter()
    for batch in batches:
        async with engine.begin() as conn:
            await repository.insert_messages(conn, batch.rows, batch.calls)
    return time.perf_counter() - started


# The shapes of the reads by id: `id IN` a list (deriving, a leg's messages, the CDR page's
# raw lines), and a join from the ids' rows as a leg's events are read (`events_of_leg`),
# with the list named on the join's other side too, or not.
_READS = {
    "list": "SELECT id, hostname, raw, packed, msg_offset FROM {table} WHERE id IN ({marks})",
    "join": "SELECT m.id, m.raw FROM probe p JOIN {table} m ON m.id = p.message_id "
    "WHERE p.message_id IN ({marks}) AND m.id IN ({marks})",
    "join, one list": "SELECT m.id, m.raw FROM probe p JOIN {table} m ON m.id = p.message_id "
    "WHERE p.message_id IN ({marks})",
}


async def _lookups(
    engine: AsyncEngine, table: str, ids: list[int], chunk: int, read: str = "list"
) -> float:
    """µs per id to read `ids` from `table`, `chunk` at a time, by the read `read`."""
    async with engine.connect() as conn:
        if read != "list":
            await conn.exec_driver_sql("CREATE TEMPORARY TABLE probe (message_id bigint)")
            await conn.exec_driver_sql(
                f"INSERT INTO probe SELECT unnest(ARRAY[{','.join(map(str, ids))}]::bigint[])"
            )
            await conn.exec_driver_sql("ANALYZE probe")
        started = time.perf_counter()
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            marks = ", ".join(f"${i + 1}" for i in range(len(part)))
            result = await conn.exec_driver_sql(
                _READS[read].format(table=table, marks=marks), tuple(part)
            )
            assert len(result.all()) == len(part)
        return (time.perf_counter() - started) / len(ids) * 1e6


async def _delete_rows(engine: AsyncEngine, table: str, before_us: int) -> float:
    """Seconds to delete `table`'s rows received before `before_us` as retention deletes
    rows: ids in order, 2,000 a transaction."""
    started = time.perf_counter()
    after = -1
    while True:
        async with engine.begin() as conn:
            ids = [
                int(i)
                for (i,) in (
                    await conn.exec_driver_sql(
                        f"SELECT id FROM {table} WHERE id > $1 AND received_us < $2 "
                        "ORDER BY id LIMIT 2000",
                        (after, before_us),
                    )
                ).all()
            ]
            if not ids:
                return time.perf_counter() - started
            marks = ", ".join(f"${i + 1}" for i in range(len(ids)))
            await conn.exec_driver_sql(f"DELETE FROM {table} WHERE id IN ({marks})", tuple(ids))
            after = ids[-1]


def _classes(lines: list[bytes]) -> tuple[float, float, int, int]:
    """ns per line of the byte test, and of extract's own first test (the reference);
    lines it classes "may carry"; lines that carry one."""
    started = time.perf_counter_ns()
    may = sum(1 for line in lines if may_carry_call_event(line))
    took = (time.perf_counter_ns() - started) / len(lines)
    started = time.perf_counter_ns()
    sum(1 for line in lines if b'Level="' in line or b'Name="' in line)
    reference = (time.perf_counter_ns() - started) / len(lines)
    carry = sum(1 for line in lines if extract(line, 0, None) is not None)
    return took, reference, may, carry


async def main(args: argparse.Namespace) -> None:
    name = f"cdrecon_bench_{uuid.uuid4().hex[:8]}"
    url = str(make_url(args.url).set(database=name).render_as_string(False))
    await _admin(args.url, f'CREATE DATABASE "{name}"')
    engine: AsyncEngine | None = None
    try:
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        now_us = time.time_ns() // 1000
        async with engine.begin() as conn:
            # The table as it was before partitions: the same columns, its primary key and
            # a unique digest index.
            await conn.exec_driver_sql(
                "CREATE TABLE messages_plain (LIKE messages INCLUDING DEFAULTS, PRIMARY KEY (id))"
            )
            await conn.exec_driver_sql(
                "CREATE UNIQUE INDEX ix_plain_digest ON messages_plain (digest) "
                "WHERE digest IS NOT NULL"
            )
            await partitions.create(conn, partitions.ahead(now_us))
        frames = pexip_frames(size=500, event_every=10)
        source = [bytes(f.split(b" ", 1)[1]) for f in itertools.islice(frames, args.rows)]

        # 1. Insert rate, alternately.
        started = time.perf_counter()
        batches = [_batch(source[i : i + BATCH], now_us) for i in range(0, args.rows, BATCH)]
        prepared = (time.perf_counter() - started) / args.rows * 1e9
        print(f"preparing a row as the writer does (parse, pack, class): {prepared:,.0f} ns")
        seconds: dict[str, list[float]] = {"partitioned": [], "plain": []}
        for _ in range(args.rounds):
            for table, label in (("messages", "partitioned"), ("messages_plain", "plain")):
                async with engine.begin() as conn:
                    await conn.exec_driver_sql(f"TRUNCATE {table}")
                seconds[label].append(await _insert(engine, table, batches))
        for label, taken in seconds.items():
            print(f"insert {label}: {args.rows / min(taken):,.0f} rows/s (rounds {taken})")

        # 2. Lookups by id, with `--days` days of partitions besides.
        for day in range(args.days):
            async with engine.begin() as conn:
                await partitions.create(
                    conn, partitions.ahead(now_us - (args.days + 30 - day) * DAY_US, 0)
                )
        async with engine.begin() as conn:
            count = len(await partitions.existing(conn))
            ids = {
                table: [
                    int(i) for (i,) in (await conn.exec_driver_sql(f"SELECT id FROM {table}")).all()
                ]
                for table in ("messages", "messages_plain")
            }
        ids = {table: every[:: max(1, len(every) // 10_000)] for table, every in ids.items()}
        for read, chunk in (("list", 500), ("list", 1), ("join", 500), ("join, one list", 500)):
            times: dict[str, list[float]] = {"partitioned": [], "plain": []}
            for _ in range(args.rounds):
                for label, table in (("partitioned", "messages"), ("plain", "messages_plain")):
                    times[label].append(await _lookups(engine, table, ids[table], chunk, read))
            print(
                f"lookup by id ({read}), {chunk} a query, {count} partitions: partitioned "
                f"{min(times['partitioned']):.1f} µs/id, plain {min(times['plain']):.1f} µs/id"
            )

        # 3. Pruning N days of M support messages.
        generated = pexip_frames(size=500, event_every=1000, seed=9)
        support = [
            f.split(b" ", 1)[1]
            for f in itertools.islice(
                (f for f in generated if not may_carry_call_event(f)), args.per_day
            )
        ]
        async with engine.begin() as conn:
            await conn.exec_driver_sql("TRUNCATE messages, messages_plain")
            made = await partitions.existing(conn)
        for old in made:  # the lookups' empty days, a transaction each (locks)
            if old.day < partitions.day_of(now_us):
                async with engine.begin() as conn:
                    await partitions.drop(conn, old)
        old_us = [now_us - (40 + day) * DAY_US for day in range(args.prune_days)]
        async with engine.begin() as conn:
            for at in old_us:
                await partitions.create(conn, partitions.ahead(at, 0))
        for at in old_us:
            of_day = [_batch(support[i : i + BATCH], at) for i in range(0, len(support), BATCH)]
            await _insert(engine, "messages", of_day)
            await _insert(engine, "messages_plain", of_day)
        total = args.prune_days * len(support)
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
        done = await prune(engine, Policy(14, 0), now_us=now_us, rest=False)
        dropped = sum(n for n in done.tally.partitions.values())
        deleted = await _delete_rows(engine, "messages_plain", now_us - 14 * DAY_US)
        print(
            f"prune {args.prune_days} days x {len(support)} messages ({total}): "
            f"drop partitions {done.seconds:.2f} s ({dropped} rows), delete rows {deleted:.2f} s"
        )

        # 4. The byte test.
        mixed = itertools.islice(pexip_frames(event_every=10), 100_000)
        called = [f.split(b" ", 1)[1] for f in mixed]
        sample = (ROOT / "tests" / "fixtures" / "pexip" / "lines.txt").read_bytes().splitlines()
        for label, lines in (("bench.frames 1:10", called), ("fixture lines", sample)):
            ns, reference, may, carry = _classes(lines)
            print(
                f"byte test, {label}: {ns:.0f} ns/line (extract's Level/Name test "
                f"{reference:.0f}); {may} of {len(lines)} 'may carry', {carry} carry a call event"
            )
    finally:
        if engine is not None:
            await engine.dispose()
        await _admin(args.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=POSTGRES)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--days", type=int, default=400, help="days of partitions for lookups")
    parser.add_argument("--prune-days", type=int, default=5)
    parser.add_argument("--per-day", type=int, default=40_000)
    asyncio.run(main(parser.parse_args()))
