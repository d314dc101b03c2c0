"""One and two `cdrecon serve` receivers on one PostgreSQL database, side by side (issue 15).

What it measures
    The realistic mix (bench.frames: ~500-byte frames, one call event in ten, eight nodes)
    is cut into parts, one a receiver: by sending node (a node sends its log to one
    receiver, and a call's lines come from its node), or with `--split consecutive` into
    consecutive parts (a tenth of the legs then reach both). Each part is sent by its own
    loggen over TCP (one connection) to its own `cdrecon serve`, every serve with its
    deriving process (CDRECON_DERIVE_PROCESS, the default) and all on one scratch database
    on the PostgreSQL server of --postgres, created and dropped by the benchmark. First
    one receiver takes all N messages, then two share them, in the same run (a loaded
    machine makes runs minutes apart incomparable); --runs repeats the pair.

    * raw msg/s: N / (loggen's start to the moment the serves' `cdrecon_messages_stored_total`
      add up to N).
    * CDR-ready msg/s: N / (loggen's start to the moment, after that, when nothing is listed
      in `pending_derivations`: every call event derived and its CDR stored).
    * CPU-s, each process, from loggen's start to CDR-ready: each serve (its writer, the
      receiving and the storing), each serve's deriving process, the server processes of
      the scratch database's sessions, and the whole PostgreSQL server (its sessions of
      other databases and its background writers included: other users' work lands there).
    * stale: derivations a writer found stale and derived itself, by the reason its log gives
      ("its runs are no longer listed whole": another process's derivation of the same runs
      was stored first; "a leg changed": another's of other runs with events of the same
      legs).
    * The load average before and after, and the machine's busy CPU-s.

    `--reference DIR` runs another checkout's serves (on this virtual environment) right after
    this one's, for each receiver count: new/ref in one run.

Run:  .venv/bin/python -m bench.pg_receivers [--messages 200000] [--receivers 1,2] [--runs 1]
                                              [--split node|consecutive] [--reference DIR]
                                              [--postgres postgresql://postgres@127.0.0.1:5432/test]
Writes bench/out/pg-receivers-<timestamp>.json and keeps the serves' logs next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.commands import git_revision
from bench.ingest.receivers import CdreconReceiver, sum_metric
from bench.ingest.runs import RunResult, Scenario, Settings
from bench.ingest.senders import (
    Stream,
    StreamMaker,
    ensure_loggen,
    loggen_commands,
    start_senders,
    stop_senders,
)
from bench.loopback import TlsFiles, make_tls_files
from bench.paths import CDRECON, OUT_DIR
from bench.procfs import (
    cpu_seconds,
    load_average,
    machine_info,
    process_tree,
    system_busy_seconds,
)

TCP = Scenario("tcp", 1)
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
POLL = 0.1  # seconds between looks at the serves and the database
STALL = 60.0  # seconds without progress before a run is given up
# The writer's log line for a derivation it found stale and derived itself (deriving.py).
STALE = re.compile(r"a derivation was stale \(([^)]*)\)")


class PostgresReceiver(CdreconReceiver):
    """`cdrecon serve` with its deriving process, on the scratch PostgreSQL database."""

    def __init__(
        self,
        workdir: Path,
        logdir: Path,
        tls: TlsFiles,
        url: str,
        start_timeout: float,
        reference: Path | None,
    ) -> None:
        super().__init__(workdir, logdir, tls, start_timeout, derive_process=True)
        self.url = url
        self.reference = reference

    def environment(self, scenario: Scenario, port: int, http_port: int) -> dict[str, str]:
        env = super().environment(scenario, port, http_port)
        env["CDRECON_DATABASE_URL"] = self.url
        if self.reference is not None:
            # Another checkout's app and parsers, ahead of this one's editable install (its
            # deriving process inherits the environment).
            env["PYTHONPATH"] = str(self.reference)
        return env

    def log_text(self) -> str:
        return self._log.read_text(errors="replace")


@dataclass(slots=True)
class Outcome:
    """What one receiver count did with the N messages."""

    receivers: int
    code: str  # "new", or "ref" (--reference)
    messages: int
    raw_seconds: float = 0.0
    ready_seconds: float = 0.0
    raw_rate: float = 0.0
    ready_rate: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0
    load_before: float = 0.0
    load_after: float = 0.0
    stale: dict[str, int] = field(default_factory=dict)  # by the writer's reason
    events: int = 0
    legs: int = 0
    stored: int = 0
    error: str = ""


class ServerCpu:
    """CPU-s of the PostgreSQL server's processes since `start`: the sessions of one database
    and the whole server. A process that ended counts up to the last look at it."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._ours: set[int] = set()

    def look(self, ours: list[int] | None = None) -> None:
        for pid in process_tree(self.postmaster):
            used = cpu_seconds(pid)
            self._first.setdefault(pid, used)
            self._last[pid] = used
        if ours is not None:
            self._ours.update(ours)

    def used(self) -> tuple[float, float]:
        """(the database's sessions, the whole server)."""
        spent = {pid: self._last[pid] - first for pid, first in self._first.items()}
        return sum(spent.get(pid, 0.0) for pid in self._ours), sum(spent.values())


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def upgrade(target: str, reference: Path | None) -> None:
    """`cdrecon db upgrade`, with the migrations of `reference` if given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRECON_")}
    env["CDRECON_DATABASE_URL"] = target
    if reference is not None:
        env["PYTHONPATH"] = str(reference)
    subprocess.run([CDRECON, "db", "upgrade"], env=env, check=True, capture_output=True)


class Database:
    """A session on the scratch database the benchmark looks through while it runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.loop.run_until_complete(asyncpg.connect(url))

    def value(self, sql: str) -> int:
        return int(self.loop.run_until_complete(self.conn.fetchval(sql)))

    def sessions(self, database: str) -> list[int]:
        rows = self.loop.run_until_complete(
            self.conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
        )
        return [int(row[0]) for row in rows]

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def split(maker: StreamMaker, count: int, how: str, work: Path) -> list[tuple[Path, int]]:
    """The master frame file cut into `count` parts (file, lines): by the sending node (a
    node's lines, and so its calls, go to one receiver, as where each node sends its log
    to one receiver), or into consecutive parts (calls in progress at a cut go to both)."""
    total = maker.settings.messages
    if count == 1:
        return [(maker.master(), total)]
    if how == "consecutive":
        per = total // count
        return [(path, per) for path in maker.split(count, per)]
    paths = [work / f"by-node-{count}-{i}.txt" for i in range(count)]
    if not all(path.exists() for path in paths):
        outs = [path.open("wb") for path in paths]
        try:
            with maker.master().open("rb") as lines:
                for line in lines:
                    # `LEN <PRI>1 TIMESTAMP HOST ...`: the host is the fourth field.
                    host = line.split(b" ", 4)[3]
                    outs[int(host.rsplit(b"-", 1)[1]) % count].write(line)
        finally:
            for out in outs:
                out.close()
    return [(path, sum(1 for _ in path.open("rb"))) for path in paths]


def measure(
    count: int,
    args: argparse.Namespace,
    maker: StreamMaker,
    logdir: Path,
    work: Path,
    reference: Path | None,
) -> Outcome:
    """Send the N messages through `count` receivers (this checkout's code, or that of
    `reference`) on a fresh scratch database; `work` holds the frame files and each serve's
    working directory."""
    code = "new" if reference is None else "ref"
    outcome = Outcome(count, code, args.messages)
    name = f"cdrecon_pgrecv_{os.getpid()}"
    target = _with_database(args.postgres, name)
    asyncio.run(_admin(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_admin(args.postgres, f'CREATE DATABASE "{name}"'))
    receivers: list[PostgresReceiver] = []
    database: Database | None = None
    try:
        serve_url = target.replace("postgresql://", "postgresql+asyncpg://")
        upgrade(serve_url, reference)
        database = Database(target)
        postmaster = int(Path(f"/proc/{database.sessions(name)[0]}/stat").read_text().split()[3])
        tls = make_tls_files(work)  # unused (TCP), but the receiver wants them
        parts = split(maker, count, args.split, work)
        commands = []
        for index in range(count):
            workdir = Path(tempfile.mkdtemp(prefix=f"serve-{count}-{index}-", dir=work))
            receiver = PostgresReceiver(
                workdir,
                Path(tempfile.mkdtemp(prefix=f"{code}-{count}x-{index}-", dir=logdir)),
                tls,
                serve_url,
                args.start_timeout,
                reference,
            )
            receivers.append(receiver)
            port = receiver.start(TCP)
            path, lines = parts[index]
            commands += loggen_commands(TCP, port, Stream((path,), lines, 1, False))
        target_count = sum(lines for _, lines in parts)
        outcome.messages = target_count
        # The deriving processes have started by now (each serve starts its own at once).
        processes = {f"serve-{i}": r.pid for i, r in enumerate(receivers)}
        for index, receiver in enumerate(receivers):
            children = [pid for pid in process_tree(receiver.pid) if pid != receiver.pid]
            processes |= {f"derive-{index}": pid for pid in children}
        before = {key: cpu_seconds(pid) for key, pid in processes.items()}
        server = ServerCpu(postmaster)
        server.look(database.sessions(name))
        busy = system_busy_seconds()
        outcome.load_before = load_average()[0]
        started, senders, logs = start_senders(commands, logdir)
        stored = last_change = 0.0
        changed_at = started
        ticks = 0
        try:
            while True:
                now = time.perf_counter()
                stored = sum(
                    sum_metric(r.metrics(), "cdrecon_messages_stored_total") for r in receivers
                )
                if stored >= target_count and not outcome.raw_seconds:
                    outcome.raw_seconds = now - started
                listed = database.value(
                    "SELECT coalesce(sum(last_id - first_id + 1), 0) FROM pending_derivations"
                )
                ticks += 1
                server.look(database.sessions(name) if ticks % 20 == 0 else None)
                if outcome.raw_seconds and not listed:
                    outcome.ready_seconds = now - started
                    break
                if stored + listed != last_change:
                    last_change, changed_at = stored + listed, now
                elif now - changed_at > STALL:
                    outcome.error = f"stalled at {stored:.0f} stored, {listed} listed"
                    break
                time.sleep(POLL)
        finally:
            result = RunResult(TCP.name, f"{count}x", 0, target_count)
            stop_senders(senders, logs, result)
        server.look(database.sessions(name))
        outcome.machine_busy = round(system_busy_seconds() - busy, 2)
        outcome.load_after = load_average()[0]
        for key, pid in processes.items():
            outcome.cpu[key] = round(cpu_seconds(pid) - before[key], 2)
        ours, whole = server.used()
        outcome.cpu["postgres-sessions"] = round(ours, 2)
        outcome.cpu["postgres-server"] = round(whole, 2)
        if outcome.raw_seconds:
            outcome.raw_rate = target_count / outcome.raw_seconds
        if outcome.ready_seconds:
            outcome.ready_rate = target_count / outcome.ready_seconds
        outcome.stored = database.value("SELECT count(*) FROM messages")
        outcome.events = database.value("SELECT count(*) FROM events")
        outcome.legs = database.value("SELECT count(*) FROM cdrs")
        if outcome.stored != target_count:
            outcome.error = f"{outcome.stored:,} messages stored, not {target_count:,}"
    finally:
        for receiver in receivers:
            receiver.stop()
        for receiver in receivers:
            for reason in STALE.findall(receiver.log_text()):
                outcome.stale[reason] = outcome.stale.get(reason, 0) + 1
        if database is not None:
            database.close()
        asyncio.run(_admin(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return outcome


def table(outcomes: list[Outcome]) -> str:
    """The figures side by side, a row each."""
    lines = [
        "receivers | code | raw msg/s | CDR-ready msg/s | CPU-s by process | PostgreSQL CPU-s "
        "(scratch db / whole server) | machine busy CPU-s | load | stale | events | legs",
        "---|---|---|---|---|---|---|---|---|---|---",
    ]
    for o in outcomes:
        processes = ", ".join(
            f"{key} {value:.1f}" for key, value in o.cpu.items() if not key.startswith("postgres")
        )
        stale = ", ".join(f"{n} {reason}" for reason, n in sorted(o.stale.items())) or "0"
        lines.append(
            f"{o.receivers} | {o.code} | {o.raw_rate:,.0f} | {o.ready_rate:,.0f} | {processes} | "
            f"{o.cpu.get('postgres-sessions', 0):.1f} / {o.cpu.get('postgres-server', 0):.1f} | "
            f"{o.machine_busy:.1f} | {o.load_before:.1f}→{o.load_after:.1f} | {stale} | "
            f"{o.events:,} | {o.legs:,}" + (f" | {o.error}" if o.error else "")
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_receivers", description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--event-every", type=int, default=10)
    parser.add_argument("--receivers", default="1,2", help="receiver counts, in order")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a postgresql:// URL")
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument(
        "--split",
        choices=("node", "consecutive"),
        default="node",
        help="how the receivers share the lines: by sending node (default), or in "
        "consecutive parts (calls in progress at a cut reach both)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        help="another checkout (no venv needed: it runs on this one's): its serves run too, "
        "each receiver count right after this checkout's",
    )
    args = parser.parse_args(argv)
    try:
        args.counts = [int(n) for n in args.receivers.split(",")]
    except ValueError:
        parser.error(f"--receivers takes counts like 1,2, not {args.receivers!r}")
    if args.messages < 1 or args.runs < 1 or any(n < 1 for n in args.counts):
        parser.error("--messages, --runs and the receiver counts must be at least 1")
    if args.reference is not None and not (args.reference / "app" / "cli.py").is_file():
        parser.error(f"--reference {args.reference} is not a cdrecon checkout")
    if not args.postgres.startswith("postgresql://"):
        parser.error("--postgres takes a plain postgresql:// URL")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_loggen()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = OUT_DIR / f"pg-receivers-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        messages=args.messages,
        size=args.size,
        distinct=0,
        scenarios=(TCP,),
        receivers=("cdrecon",),
        runs=args.runs,
        poll=POLL,
        stall_timeout=STALL,
        run_timeout=3600,
        start_timeout=args.start_timeout,
        quiet_wait=0,
        event_every=args.event_every,
    )
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="pgrecv-") as scratch:
        work = Path(scratch)
        maker = StreamMaker(work, settings)
        maker.master()
        for run in range(args.runs):
            for count in args.counts:
                for reference in [None] + ([args.reference] if args.reference else []):
                    print(f"run {run + 1}: {count} receiver(s) ...", flush=True)
                    outcomes.append(measure(count, args, maker, logdir, work, reference))
                    print(table(outcomes[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(outcomes))
    # Every receiver count and code derived the same messages: the same events and legs.
    if len({(o.events, o.legs) for o in outcomes}) > 1:
        for o in outcomes:
            o.error = o.error or "events or legs differ between the runs"
        print("\nERROR: the runs derived different events or legs")
    report = {
        "revision": git_revision(),
        "machine": machine_info(),
        "arguments": vars(args),
        "outcomes": [asdict(o) for o in outcomes],
    }
    out = OUT_DIR / f"pg-receivers-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {out}")
    return 0 if all(not o.error for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
