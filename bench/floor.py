"""SQLite's floor: how fast SQLite alone, with no Python in the loop, writes the rows that
cdrecon's design keeps for each received message.

Why
    The ingest and backfill targets compare cdrecon with syslog-ng copying the same stream
    into a plain file. cdrecon's design (../shared/docs/design.md, issues 2 and 3) keeps, per
    message, a raw-store row, a call-event row and its share of a CDR, in SQLite. This script
    measures what those rows cost SQLite's own C code, so that the cdrecon figure can be read
    against two references: what syslog-ng does, and what the storage alone allows.

What it writes (all in the real schema: `cdrecon db upgrade` creates the database, so every
index cdrecon has is there; the pragmas are cdrecon's: WAL, synchronous=NORMAL,
wal_autocheckpoint 16384, and a 32 MiB cache, twice what cdrecon keeps since 2026-12-06, so
that the floor is no worse off than cdrecon), in transactions of `--batch` messages:

* `messages`: one row per message, every column filled as cdrecon fills it for the ingest
  benchmark's RFC 5424 Pexip lines, `raw` 496 bytes (the benchmark's mean frame) stored
  plain: cdrecon stores it packed, about a quarter of that (app/db/packing.py), which this
  floor leaves out;
* `events`: one row per message (every benchmark line is a participant event), random
  16-byte digest, ascending time; with `--event-every K`, one row per K messages (the
  realistic mix, where the other lines are support-log lines);
* `cdrs`: one row per three messages (a call logs attempting, joined, disconnected), keyed by
  a random participant uuid as real ones are.
* `--backfill`: the messages come from a file, so each also gets its line key (its first 24
  bytes and a 16-byte hash: app/ingest/prepare.py), which the unique `ix_messages_digest`
  index holds.

Every value is made inside SQLite (`randomblob`, a recursive CTE): the child process runs one
INSERT ... SELECT per table per batch, so the time is SQLite's, not Python's. It is a lower
bound on what cdrecon's storage can cost: it leaves out the event-to-message links for
repeats, the node tallies, the duplicate look-ups, and every CDR update after the first
insert, and nothing is received, framed or parsed. The time is the child's own, from its
first BEGIN to its last COMMIT: the interpreter's start and imports (0.1-0.3 s, varying) are
not SQLite's and are left out, as the receivers' start is left out of theirs.

`--postgres [URL]` measures the same live rows on a PostgreSQL server instead (default
postgresql://postgres@127.0.0.1:5432/test): a scratch database is created next to the one
named, migrated by `cdrecon db upgrade`, written by one session with `generate_series`, and
dropped. The server's own processes do the work, so the figure is wall time, with how many
CPUs the whole machine kept busy meanwhile.

Run:  .venv/bin/python -m bench.floor [--messages 1000000] [--backfill] [--runs 3]
      .venv/bin/python -m bench.floor --postgres [URL]
Also run by bench.ingest and bench.backfill, next to their own figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from app.cdr.assembly import LEG_COLUMNS
from bench.commands import Measured, cdrecon_env, run_measured, upgrade_database
from bench.options import benchmark_parser
from bench.paths import CDRECON, ROOT
from bench.procfs import machine_info, system_busy_seconds, wait_until_quiet

# cdrecon's connection pragmas (app/db/engine.py).
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA cache_size=-32768",
    "PRAGMA wal_autocheckpoint=16384",
)
# The columns each benchmark row fills, the same on SQLite and PostgreSQL.
MESSAGE_COLUMNS = (
    "received_us, transport, peer_host, peer_port, tls_subject, format, hostname, msg_offset, "
    "truncated, error, raw, source, digest"
)
EVENT_COLUMNS = "digest, time_us, participant_id, truncated, message_id"
# The `cdrs` columns: the leg's (the product's declaration) and its message ids.
CDR_COLUMNS = (*LEG_COLUMNS, "message_ids")
# The microsecond clock of the first message: 2026-11-26T10:00:00Z.
EPOCH_US = 1_795_687_200_000_000


def _series(first: int, count: int, step: int = 1) -> str:
    """A CTE `s(i)` of `count` integers from `first`, `step` apart, made inside SQLite."""
    last = first + (count - 1) * step
    return (
        f"WITH RECURSIVE s(i) AS (SELECT {first} UNION ALL "
        f"SELECT i + {step} FROM s WHERE i < {last}) "
    )


def cdr_select(random_id: str, random_hex: str, clock: str, message_ids: str) -> str:
    """The SELECT list of a floor leg over the series `i`, in CDR_COLUMNS order: the SQL of
    each value by column (a column not named is NULL); the dialects differ only in how they
    make random ids (`random_id`, `random_hex`) and the leg's time and message ids."""
    values = {
        "id": random_id,
        "call_uuid": f"{random_hex} || '@10.34.10.61'",
        "conversation_id": random_id,
        "conference_name": "'All hands'",
        "display_name": "'Peggy Novak'",
        "local_alias": "'meet.all-hands@example.com'",
        "remote_alias": "'sip:peggy.novak@corp.example.net'",
        "protocol": "'MSSIP'",
        "call_direction": "'in'",
        "role": "'guest'",
        "remote_address": "'10.34.10.61'",
        "remote_port": "5061",
        "signalling_node": "'10.0.1.18'",
        "media_node": "'10.0.1.11'",
        "system_location": "'London'",
        "vendor": "'Microsoft Teams Room'",
        "service_type": "'conference'",
        "disconnect_reason": "'Call disconnected'",
        "start_us": clock,
        "end_us": f"{clock} + 60000000",
        "duration": "60",
        "first_seen_us": clock,
        "state": "'closed'",
        "node": "'conf-node-0' || (1 + i % 8)",
        "event_count": "3",
        "message_ids": message_ids,
    }
    if unknown := set(values) - set(CDR_COLUMNS):
        raise RuntimeError(f"bench/floor.py: no such `cdrs` column: {sorted(unknown)}")
    return ", ".join(values.get(column, "NULL") for column in CDR_COLUMNS)


def batch_statements(
    first: int, count: int, first_message_id: int, backfill: bool, event_every: int = 1
) -> list[str]:
    """The INSERT ... SELECT statements that write messages `first` .. `first + count - 1`;
    one in `event_every` of them carries a call event (the realistic mix: the rest are
    support-log lines, stored raw only)."""
    transport, source, digest = (
        ("'file'", "'/var/log/pexip/pexip.log.gz'", "CAST(substr(raw, 1, 24) || key AS BLOB)")
        if backfill
        else ("'tcp'", "NULL", "NULL")
    )
    # Each line starts as a syslog file line does, with its time (125 ms apart), and is
    # padded with random hex to 496 bytes (the benchmarks' mean frame), so no two are equal.
    # Its key is 40 bytes as cdrecon's: the first 24, then 16 random ones (hex digits, as
    # SQLite's || makes text of blobs).
    head = (
        "strftime('%Y-%m-%dT%H:%M:%f', "
        f"{EPOCH_US // 1_000_000} + i * 0.125, 'unixepoch') || '+00:00 conf-node-0' || "
        "(1 + i % 8) || ' pexip: '"
    )
    lines = (
        f"SELECT i, CAST({head} || substr(hex(randomblob(248)), 1, 496 - length({head})) "
        "AS BLOB) AS raw, substr(hex(randomblob(8)), 1, 16) AS key FROM s"
    )
    messages = (
        f"INSERT INTO messages ({MESSAGE_COLUMNS}) "
        + _series(first, count)
        + f"SELECT {EPOCH_US} + i * 125000, {transport}, '127.0.0.1', 40000 + i % 4, NULL, "
        "'rfc5424', 'conf-node-0' || (1 + i % 8), 60, 0, NULL, raw, "
        f"{source}, {digest} FROM ({lines})"
    )
    events = (
        f"INSERT INTO events ({EVENT_COLUMNS}) "
        + _series(first, max(count // event_every, 1), event_every)
        + f"SELECT randomblob(16), {EPOCH_US} + i * 125000, lower(hex(randomblob(18))), 0, "
        f"{first_message_id} + i - {first} FROM s"
    )
    legs = count // (3 * event_every)
    message = f"{first_message_id} + i - {first}"
    select = cdr_select(
        "lower(hex(randomblob(18)))",
        "lower(hex(randomblob(16)))",
        f"{EPOCH_US} + i * 125000",
        f"({message}) || ',' || ({message} + {event_every}) || ',' || "
        f"({message} + {2 * event_every})",
    )
    cdrs = (
        f"INSERT INTO cdrs ({', '.join(CDR_COLUMNS)}) "
        + _series(first, max(legs, 1), 3 * event_every)
        + f"SELECT {select} FROM s"
    )
    return [messages, events] + ([cdrs] if legs else [])


def write_rows(
    database: Path, messages: int, batch: int, backfill: bool, event_every: int = 1
) -> tuple[float, float]:
    """Write the rows of `messages` messages into `database`, `batch` per transaction;
    return the wall and CPU seconds from the first BEGIN to the last COMMIT."""
    conn = sqlite3.connect(database, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    started, cpu = time.perf_counter(), time.process_time()
    for first in range(0, messages, batch):
        count = min(batch, messages - first)
        conn.execute("BEGIN")
        statements = batch_statements(first, count, first + 1, backfill, event_every)
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")
    timed = (time.perf_counter() - started, time.process_time() - cpu)
    conn.close()
    return timed


@dataclass(slots=True)
class Floor:
    """One measured floor run: `seconds` and `cpu_seconds` are the writing's alone (first
    BEGIN to last COMMIT); `measured` is the whole child process, interpreter start included."""

    messages: int
    backfill: bool
    measured: Measured
    database_bytes: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        """Messages (or lines) per second of the writing's wall time."""
        return self.messages / self.seconds

    def text(self) -> str:
        """One line for a report."""
        m = self.measured
        return (
            f"SQLite alone ({'backfill' if self.backfill else 'live'} rows, no Python in the "
            f"loop): {self.per_second:,.0f} msg/s, {self.seconds:.1f} s writing "
            f"({m.seconds:.1f} s with the process's start), {self.cpu_seconds:.1f} s CPU, "
            f"{self.database_bytes / 1e6:.0f} MB"
        )


def measure_floor(messages: int, backfill: bool, batch: int = 5000, event_every: int = 1) -> Floor:
    """Create a fresh cdrecon database and time a child process writing the rows into it."""
    workdir = Path(tempfile.mkdtemp(prefix="cdrecon-floor-"))
    try:
        database = workdir / "floor.db"
        upgrade_database(database)
        argv = [sys.executable, "-m", "bench.floor", "--child", str(database)]
        argv += ["--messages", str(messages), "--batch", str(batch)]
        argv += ["--backfill"] if backfill else []
        argv += ["--event-every", str(event_every)]
        measured = run_measured(argv, cdrecon_env(database), ROOT)
        if measured.returncode != 0:
            raise RuntimeError(f"the floor child failed: {measured.stderr.strip()[-2000:]}")
        size = sum(p.stat().st_size for p in workdir.glob("floor.db*"))
        check = sqlite3.connect(database)
        stored = check.execute("SELECT count(*) FROM messages").fetchone()[0]
        check.close()
        if stored != messages:
            raise RuntimeError(f"the floor child stored {stored} messages, not {messages}")
        timed = json.loads(measured.stdout.strip().splitlines()[-1])
        return Floor(messages, backfill, measured, size, timed["seconds"], timed["cpu_seconds"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def postgres_statements(first: int, count: int) -> list[str]:
    """The live rows of messages `first` .. `first + count - 1`, made by PostgreSQL itself:
    the same shapes and sizes as `batch_statements`."""
    series = f"generate_series({first}::bigint, {first + count - 1}::bigint) AS i"
    clock = f"{EPOCH_US} + i * 125000"
    head = (
        f"to_char(to_timestamp({EPOCH_US // 1_000_000} + i * 0.125) AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.MS') || '+00:00 conf-node-0' || (1 + i % 8) || ' pexip: '"
    )
    messages = (
        f"INSERT INTO messages (id, {MESSAGE_COLUMNS}) "
        f"SELECT nextval('messages_id_seq'), {clock}, 'tcp', '127.0.0.1', 40000 + i % 4, "
        "NULL, 'rfc5424', 'conf-node-0' || (1 + i % 8), 60, false, NULL, "
        f"convert_to(rpad({head}, 496, md5(i::text) || md5(random()::text)), 'UTF8'), "
        f"NULL, NULL FROM {series}"
    )
    events = (
        f"INSERT INTO events ({EVENT_COLUMNS}) "
        f"SELECT decode(md5(random()::text), 'hex'), {clock}, gen_random_uuid()::text, false, "
        f"i + 1 FROM {series}"
    )
    legs = (
        f"generate_series({first}::bigint, {first + count - 3}::bigint, 3) AS i"
        if count >= 3
        else None
    )
    select = cdr_select(
        "gen_random_uuid()::text",
        "md5(random()::text)",
        clock,
        "(i + 1) || ',' || (i + 2) || ',' || (i + 3)",
    )
    cdrs = f"INSERT INTO cdrs ({', '.join(CDR_COLUMNS)}) SELECT {select} FROM {legs}"
    return [messages, events] + ([cdrs] if legs else [])


def _with_database(url: str, name: str) -> str:
    """`url` naming the database `name` on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass(slots=True)
class PostgresFloor:
    """One measured PostgreSQL floor run."""

    messages: int
    seconds: float
    machine_busy_cpus: float
    database_bytes: int

    def text(self) -> str:
        """One line for a report."""
        return (
            "PostgreSQL alone (live rows, one session, no Python in the loop): "
            f"{self.messages / self.seconds:,.0f} msg/s, {self.seconds:.1f} s wall, "
            f"{self.machine_busy_cpus:.2f} CPUs busy, {self.database_bytes / 1e6:.0f} MB"
        )


async def _measure_postgres(url: str, messages: int, batch: int) -> PostgresFloor:
    scratch = f"cdrecon_floor_{os.getpid()}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        await admin.execute(f'CREATE DATABASE "{scratch}"')
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CDRECON_")}
            target = _with_database(url, scratch)
            env["CDRECON_DATABASE_URL"] = target.replace("postgresql://", "postgresql+asyncpg://")
            proc = await asyncio.create_subprocess_exec(
                *(CDRECON, "db", "upgrade"),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"cdrecon db upgrade failed: {output.decode()[-2000:]}")
            conn = await asyncpg.connect(target)
            try:
                busy = system_busy_seconds()
                started = time.perf_counter()
                for first in range(0, messages, batch):
                    async with conn.transaction():
                        for statement in postgres_statements(first, min(batch, messages - first)):
                            await conn.execute(statement)
                seconds = time.perf_counter() - started
                busy = (system_busy_seconds() - busy) / seconds
                stored = await conn.fetchval("SELECT count(*) FROM messages")
                size = await conn.fetchval("SELECT pg_database_size(current_database())")
            finally:
                await conn.close()
            if stored != messages:
                raise RuntimeError(f"PostgreSQL stored {stored} messages, not {messages}")
            return PostgresFloor(messages, seconds, busy, int(size))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    finally:
        await admin.close()


def measure_floor_postgres(url: str, messages: int, batch: int = 5000) -> PostgresFloor:
    """Time PostgreSQL writing the live rows of `messages` messages into a scratch database
    on the server of `url` (a plain postgresql:// URL)."""
    return asyncio.run(_measure_postgres(url, messages, batch))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000, help="messages per transaction")
    parser.add_argument("--backfill", action="store_true", help="rows of a backfilled file")
    parser.add_argument(
        "--event-every", type=int, default=1, help="one call event in K messages (live rows)"
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--quiet-wait", type=float, default=120, help="seconds, at most")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const="postgresql://postgres@127.0.0.1:5432/test",
        help="measure on this PostgreSQL server instead (live rows)",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the floor for the given settings."""
    args = parse_args(argv)
    if args.child is not None:
        seconds, cpu = write_rows(
            args.child, args.messages, args.batch, args.backfill, args.event_every
        )
        print(json.dumps({"seconds": seconds, "cpu_seconds": cpu}))
        return 0
    print(f"machine: {machine_info()}", flush=True)
    for _ in range(args.runs):
        wait_until_quiet(args.quiet_wait)
        started = time.strftime("%H:%M:%S")
        if args.postgres:
            floor = measure_floor_postgres(args.postgres, args.messages, args.batch).text()
        else:
            floor = measure_floor(
                args.messages, args.backfill, args.batch, max(args.event_every, 1)
            ).text()
        print(f"{started} {floor}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
