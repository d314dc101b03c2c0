"""Storage benchmark: bytes on disk per stored message, what packing raw messages costs, and
pruning's cost to ingest.

What it measures
    1. Bytes per message. For each kind of line (`call`: Pexip call-event lines from
       `bench.frames`, which become events and CDRs; `support`: Pexip support-log lines of the
       same size, which carry no call event) N messages are sent over one TCP connection to a
       real `cdrecon serve` on a fresh SQLite file, until all are stored and derived. Then,
       the service stopped: the file's bytes over the messages' own bytes (each message as
       received, without its octet count), the same after a VACUUM (pages compacted, nothing
       else changed), and where the bytes go (SQLite's `dbstat`, per table with its
       indexes). Beside it, the service's CPU time per message for that ingest (store and
       derive; CPU, not wall time: the machine is shared) and its rate. With `--reference
       DIR` (bench/reference.py: another checkout with its own .venv, e.g. the commit before
       a storage change) the same lines go to that checkout's `serve` too, in turn, the
       order swapped every run, `--runs` times each: bytes and CPU before and after in one
       run.
    2. The codec (app/db/packing.py, in this process: the one use of the product's code
       here besides its commands and HTTP): the CPU time to pack each of the N messages as
       the writer does and to unpack it as every reader of `messages.raw` does, in µs per
       message; packed bytes over raw bytes. The dictionary was trained on this benchmark's
       generators (other seeds: bench/raw_dictionary.py), which draw names, aliases,
       conferences and vendors from small pools it learnt too, so two harsher figures:
       `values unseen`, each message with every letter of its values replaced at random
       (but Level, Name, Message and the few enumerated keys, and padding), which a real
       estate's names and ids would not be worse than; and zstd at the same level with no
       dictionary at all. "as stored, values unseen" and "as stored, no dictionary" are the
       file's ratio had each message packed only that well.
    3. Pruning while ingesting. A database holding P support messages received 30 days ago
       (filled through `serve`, then their receive time moved back) gets M call-event
       messages sent to `serve`, once with pruning off (the reference) and once with
       `serve` pruning every second (CDRECON_RETAIN_MESSAGES_DAYS=14), alternately,
       `--runs` times each. Ingest rate = M / the time until all M are stored and derived;
       the rows pruned meanwhile come from `cdrecon_rows_pruned_total`. Pruning yields to
       the batch writer while messages wait (up to a second per transaction), so beside it:
       how long `serve` takes to prune the P messages when it receives nothing. A third
       mode starts from a copy whose old messages were deleted behind cdrecon's back, so
       the pass has only SQLite's free pages to hand back (incremental vacuum) while the M
       messages arrive.

Run:  .venv/bin/python -m bench.storage [--messages 100000] [--prefill 300000] [--runs 2]
          [--reference DIR] [--skip-prune]
Writes bench/out/storage-<UTC timestamp>.json.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import zstandard

from app.db.packing import pack, unpack
from bench.commands import cdrecon_env
from bench.frames import pexip_frames
from bench.loopback import free_port
from bench.options import benchmark_parser
from bench.paths import CDRECON
from bench.procfs import cpu_seconds, load_average
from bench.reference import THIS_TREE, Checkout, in_turn
from bench.results import stamp, table, write_json


def support_frames(size: int = 500, seed: int = 3164) -> Iterator[bytes]:
    """Endless distinct, octet-counted Pexip support-log lines of about `size` bytes that
    carry no call event (SIP signalling, as a node's support log is mostly)."""
    rng = random.Random(seed)
    clock = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    methods = ("INVITE", "ACK", "BYE", "OPTIONS", "REGISTER", "SUBSCRIBE")
    for n in itertools.count():
        clock += timedelta(microseconds=rng.randrange(1000, 50_000))
        when = clock.strftime("%Y-%m-%d %H:%M:%S,") + f"{clock.microsecond // 1000:03d}"
        host = f"conf-node-{rng.randrange(1, 9):02d}"
        fields = [
            ("Level", "INFO"),
            ("Name", "support.sip"),
            ("Message", "SIP request received"),
            ("Method", rng.choice(methods)),
            (
                "Src-address",
                f"10.{rng.randrange(2, 250)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            ),
            ("Dst-address", f"10.0.1.{rng.randrange(11, 19)}"),
            ("Transaction-id", f"{rng.getrandbits(64):016x}-{n}"),
            ("Call-id", f"{rng.getrandbits(128):032x}@10.0.0.{rng.randrange(1, 255)}"),
            ("Uri", f"sip:user{rng.randrange(10_000)}@example.com"),
        ]
        head = f"<134>1 {clock.isoformat(timespec='milliseconds')} {host} pexip - - - {when}"
        body = " ".join(f'{k}="{v}"' for k, v in fields)
        padding = max(0, size - len(head) - len(body) - 20)
        line = f'{head} {body} Detail="{"x" * padding}"\n'.encode()
        yield str(len(line)).encode() + b" " + line


def message_bytes(frame: bytes) -> bytes:
    """The message as received: the frame without its octet count and trailing LF."""
    return frame.split(b" ", 1)[1].rstrip(b"\n")


# --------------------------------------------------------------------------------------------
# A service to send to
# --------------------------------------------------------------------------------------------


@dataclass
class Service:
    """`cdrecon serve` on a SQLite file, on free loopback ports."""

    database: Path
    settings: dict[str, str] = field(default_factory=dict)
    cdrecon: str = CDRECON  # the checkout's command
    process: subprocess.Popen[bytes] | None = None
    tcp: int = 0
    http: int = 0
    cpu_seconds: float = 0.0

    def __enter__(self) -> Service:
        self.tcp, self.http = free_port(), free_port()
        env = cdrecon_env(
            self.database,
            syslog_tcp=f"127.0.0.1:{self.tcp}",
            syslog_udp="off",
            http=f"127.0.0.1:{self.http}",
            log_level="WARNING",
            **self.settings,
        )
        with open(self.database.with_suffix(".log"), "ab") as log:
            self.process = subprocess.Popen(
                [self.cdrecon, "serve"], env=env, cwd=self.database.parent, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: see {self.database.with_suffix('.log')}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.http}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("serve did not start")

    def __exit__(self, *_exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)

    def metric(self, name: str, label: str = "") -> float:
        """Sum of a metric's samples (whose labels contain `label`)."""
        text = httpx.get(f"http://127.0.0.1:{self.http}/metrics", timeout=30).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#") and label in line:
                series, _, value = line.rpartition(" ")
                if series.split("{")[0] == name:
                    total += float(value)
        return total

    def ingest(self, frames: list[bytes]) -> float:
        """Send `frames` on one connection; seconds until all are stored and derived (the
        service's CPU seconds meanwhile are added to `cpu_seconds`)."""
        assert self.process is not None
        before = self.metric("cdrecon_messages_stored_total")
        cpu_before = cpu_seconds(self.process.pid)
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", self.tcp)) as sock:
            for chunk in _batched(frames):
                sock.sendall(b"".join(chunk))
        while (
            self.metric("cdrecon_messages_stored_total") < before + len(frames)
            or self.metric("cdrecon_derive_pending_messages") > 0
        ):
            time.sleep(0.05)
        self.cpu_seconds += cpu_seconds(self.process.pid) - cpu_before
        return time.perf_counter() - started


def _commit(root: Path) -> str:
    """The commit a checkout is at (with "+" if it has uncommitted changes)."""
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head + ("+" if dirty else "")


def _batched(frames: list[bytes], size: int = 2000) -> Iterator[list[bytes]]:
    for start in range(0, len(frames), size):
        yield frames[start : start + size]


# --------------------------------------------------------------------------------------------
# 1 and 2: bytes per message, and means of storing less
# --------------------------------------------------------------------------------------------


def file_bytes(database: Path) -> int:
    """The database with its log (the service checkpoints and removes the log at stop)."""
    return sum(
        os.stat(f"{database}{suffix}").st_size
        for suffix in ("", "-wal")
        if os.path.exists(f"{database}{suffix}")
    )


def where_bytes_go(database: Path) -> dict[str, int]:
    """Bytes of pages per table, its indexes included (SQLite's dbstat)."""
    connection = sqlite3.connect(database)
    try:
        owners = dict(connection.execute("SELECT name, tbl_name FROM sqlite_master"))
        sizes: dict[str, int] = {}
        for name, size in connection.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            owner = owners.get(name, name)
            sizes[owner] = sizes.get(owner, 0) + int(size)
        return dict(sorted(sizes.items(), key=lambda item: -item[1]))
    finally:
        connection.close()


def vacuumed_bytes(source: Path, directory: Path) -> int:
    """The bytes of a VACUUMed copy of `source`: its pages compacted, nothing else changed."""
    copy = directory / "vacuumed.db"
    shutil.copyfile(source, copy)
    connection = sqlite3.connect(copy, isolation_level=None)
    try:
        connection.execute("VACUUM")
    finally:
        connection.close()
    size = file_bytes(copy)
    copy.unlink()
    return size


@dataclass
class Stored:
    """One kind of line, stored by one checkout and measured."""

    kind: str
    checkout: str
    messages: int
    message_bytes: int
    file_bytes: int
    vacuumed_bytes: int
    ingest_seconds: float
    ingest_cpu_us: float  # the service's CPU per message, deriving included
    tables: dict[str, int]

    @property
    def ratio(self) -> float:
        return self.file_bytes / self.message_bytes


def store_kind(kind: str, frames: list[bytes], directory: Path, checkout: Checkout) -> Stored:
    """Store `frames` through `checkout`'s `serve` on a fresh file and measure it."""
    database = directory / f"{kind}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    with Service(database, {"prune_interval": "0"}, checkout.cdrecon) as service:
        seconds = service.ingest(frames)
    return Stored(
        kind=kind,
        checkout=checkout.label,
        messages=len(frames),
        message_bytes=sum(len(message_bytes(frame)) for frame in frames),
        file_bytes=file_bytes(database),
        vacuumed_bytes=vacuumed_bytes(database, directory),
        ingest_seconds=seconds,
        ingest_cpu_us=service.cpu_seconds / len(frames) * 1e6,
        tables=where_bytes_go(database),
    )


@dataclass
class Codec:
    """What packing one kind of line costs and saves, in this process."""

    kind: str
    pack_us: float
    unpack_us: float
    packed_bytes: int
    unseen_bytes: int  # packed, each message with its values replaced (`unseen`)
    undictionaried_bytes: int  # zstd at the same level without a dictionary


# Keys whose values Pexip draws from a few words: left as they are by `unseen`.
ENUMERATED = frozenset(
    b"Level Name Message Protocol Direction Role Service-type Encryption Presentation-allowed "
    b"Was Now Transport Method".split()
)
_PAIR = re.compile(rb'([A-Za-z-]+)="([^"]*)"')


def unseen(message: bytes, rng: random.Random) -> bytes:
    """`message` with each letter of its values (but enumerated keys' and padding) replaced
    at random: names and ids the dictionary cannot have seen."""

    def replace(match: re.Match[bytes]) -> bytes:
        key, value = match.group(1), match.group(2)
        if key in ENUMERATED or len(set(value)) <= 1:
            return match.group(0)
        letters = bytes(
            rng.choice(LOWER) if c in LOWER else rng.choice(UPPER) if c in UPPER else c
            for c in value
        )
        return key + b'="' + letters + b'"'

    return _PAIR.sub(replace, message)


LOWER = b"abcdefghijklmnopqrstuvwxyz"
UPPER = LOWER.upper()


def measure_codec(kind: str, frames: list[bytes]) -> Codec:
    """Pack and unpack each message as the writer and the readers do (CPU time)."""
    messages = [message_bytes(frame) for frame in frames]
    started = time.process_time()
    packed = [pack(m) for m in messages]
    pack_us = (time.process_time() - started) / len(messages) * 1e6
    started = time.process_time()
    for stored, flag in packed:
        unpack(stored, flag)
    unpack_us = (time.process_time() - started) / len(messages) * 1e6
    assert all(unpack(*p) == m for p, m in zip(packed[:1000], messages[:1000], strict=True))
    plain = zstandard.ZstdCompressor(level=1, write_checksum=False, write_content_size=True)
    rng = random.Random(7)
    return Codec(
        kind=kind,
        pack_us=pack_us,
        unpack_us=unpack_us,
        packed_bytes=sum(len(stored) for stored, _ in packed),
        unseen_bytes=sum(len(pack(unseen(m, rng))[0]) for m in messages),
        undictionaried_bytes=sum(min(len(plain.compress(m)), len(m)) for m in messages),
    )


# --------------------------------------------------------------------------------------------
# 3: pruning while ingesting
# --------------------------------------------------------------------------------------------


@dataclass
class PruneRun:
    """One ingest of M messages: pruning off (the reference), pruning, or pruning with
    only free pages left to hand back."""

    mode: str
    seconds: float
    messages: int
    pruned_during: int
    pages_returned_during: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


MODES = ("off", "pruning", "returning space")


def free_pages(database: Path) -> int:
    """SQLite's free list, read beside the service (WAL lets it)."""
    connection = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    try:
        return int(connection.execute("PRAGMA freelist_count").fetchone()[0])
    finally:
        connection.close()


def prefill(directory: Path, count: int) -> Path:
    """A database holding `count` support messages received 30 days ago."""
    database = directory / "prefilled.db"
    with Service(database, {"prune_interval": "0"}) as service:
        service.ingest(list(itertools.islice(support_frames(), count)))
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        month_us = 30 * 86_400 * 1_000_000
        connection.execute(f"UPDATE messages SET received_us = received_us - {month_us}")
    finally:
        connection.close()
    return database


def freed(prefilled: Path, directory: Path) -> Path:
    """A copy of the prefilled database with its old messages deleted behind cdrecon's back:
    only the free pages are left for a pass to hand back."""
    database = directory / "freed.db"
    shutil.copyfile(prefilled, database)
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("DELETE FROM messages")
        connection.execute("DELETE FROM row_counts")
    finally:
        connection.close()
    return database


def ingest_while(source: Path, directory: Path, frames: list[bytes], mode: str) -> PruneRun:
    """Send `frames` to `serve` on a copy of `source`, with pruning off or on (`mode`)."""
    database = directory / "run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, database)
    on = mode != "off"
    settings = {"prune_interval": "1" if on else "0", "retain_messages_days": "14"}
    with Service(database, settings) as service:
        free = free_pages(database)
        # Wait until the first pass has begun its work.
        while mode == "pruning" and service.metric("cdrecon_rows_pruned_total") == 0:
            time.sleep(0.05)
        while mode == "returning space" and free_pages(database) == free:
            time.sleep(0.05)
        pruned, free = service.metric("cdrecon_rows_pruned_total"), free_pages(database)
        seconds = service.ingest(frames)
        pruned = int(service.metric("cdrecon_rows_pruned_total") - pruned)
        returned = free - free_pages(database)
    return PruneRun(mode, seconds, len(frames), pruned, max(0, returned))


def prune_alone(prefilled: Path, directory: Path, count: int) -> float:
    """Seconds `serve`, receiving nothing, takes to prune the `count` old messages of a copy
    of the prefilled database (its transactions and rests as under traffic)."""
    database = directory / "alone.db"
    shutil.copyfile(prefilled, database)
    settings = {"prune_interval": "0.1", "retain_messages_days": "14"}
    with Service(database, settings) as service:
        started = time.perf_counter()
        while service.metric("cdrecon_rows_pruned_total", 'table="messages"') < count:
            time.sleep(0.05)
        return time.perf_counter() - started


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--messages", type=int, default=100_000, help="N per kind, and M")
    parser.add_argument("--prefill", type=int, default=300_000, help="P old support messages")
    parser.add_argument(
        "--runs",
        type=int,
        default=2,
        help="ingests of each kind per checkout, and with and without pruning (medians shown)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="DIR",
        help="another checkout (with its own .venv) whose bytes and CPU to measure beside these",
    )
    parser.add_argument("--skip-prune", action="store_true", help="only bytes per message")
    args = parser.parse_args(argv)
    trees = [THIS_TREE]
    if args.reference is not None:
        reference = Checkout("reference", args.reference.resolve())
        if not Path(reference.cdrecon).exists():
            raise SystemExit(f"--reference {args.reference}: no {reference.cdrecon}")
        trees.append(reference)
    when = stamp()
    results: dict[str, object] = {"settings": vars(args) | {"reference": str(args.reference)}}
    results["load_before"] = load_average()
    results["commits"] = {tree.label: _commit(tree.root) for tree in trees}
    with tempfile.TemporaryDirectory(prefix="cdrecon-storage-") as temporary:
        directory = Path(temporary)
        kinds = {
            "call": list(itertools.islice(pexip_frames(), args.messages)),
            "support": list(itertools.islice(support_frames(), args.messages)),
        }
        stored: list[Stored] = []
        for run in range(args.runs):
            for kind, frames in kinds.items():
                for tree in in_turn(trees, run):
                    stored.append(store_kind(kind, frames, directory, tree))
        codecs = {kind: measure_codec(kind, frames) for kind, frames in kinds.items()}
        rows = []
        for kind in kinds:
            codec = codecs[kind]
            for tree in trees:
                tries = [s for s in stored if s.kind == kind and s.checkout == tree.label]
                last = tries[-1]  # bytes are the same run to run; CPU is not
                cpu = [s.ingest_cpu_us for s in tries]
                rate = statistics.median(s.messages / s.ingest_seconds for s in tries)
                worse = {
                    "unseen": last.file_bytes + codec.unseen_bytes - codec.packed_bytes,
                    "none": last.file_bytes + codec.undictionaried_bytes - codec.packed_bytes,
                }
                rows.append(
                    [
                        kind,
                        tree.label,
                        last.messages,
                        f"{last.message_bytes / last.messages:.0f}",
                        f"{last.file_bytes / last.messages:.0f}",
                        f"{last.ratio:.2f}x",
                        f"{last.vacuumed_bytes / last.message_bytes:.2f}x",
                        f"{rate:,.0f}",
                        f"{statistics.median(cpu):.1f} ({' '.join(f'{c:.1f}' for c in cpu)})",
                        *(
                            f"{size / last.message_bytes:.2f}x" if tree is THIS_TREE else ""
                            for size in worse.values()
                        ),
                    ]
                )
        print(
            table(
                [
                    "lines",
                    "checkout",
                    "N",
                    "B/msg",
                    "disk B/msg",
                    "as stored",
                    "vacuumed",
                    "ingest msg/s",
                    "ingest CPU µs/msg, median (each)",
                    "as stored, values unseen",
                    "as stored, no dictionary",
                ],
                rows,
            )
        )
        print()
        print(
            table(
                [
                    "lines",
                    "pack µs/msg",
                    "unpack µs/msg",
                    "packed/raw",
                    "values unseen",
                    "no dictionary",
                ],
                [
                    [
                        c.kind,
                        f"{c.pack_us:.2f}",
                        f"{c.unpack_us:.2f}",
                        f"{c.packed_bytes / stored[0].message_bytes:.3f}",
                        f"{c.unseen_bytes / stored[0].message_bytes:.3f}",
                        f"{c.undictionaried_bytes / stored[0].message_bytes:.3f}",
                    ]
                    for c in codecs.values()
                ],
            )
        )
        for s in stored[-len(kinds) * len(trees) :]:
            parts = ", ".join(
                f"{name} {size / s.messages:.0f}" for name, size in list(s.tables.items())[:6]
            )
            print(f"{s.kind}, {s.checkout}: bytes per message by table (with indexes): {parts}")
        results["stored"] = [asdict(s) | {"ratio": s.ratio} for s in stored]
        results["codec"] = [asdict(c) for c in codecs.values()]

        if not args.skip_prune:
            prefilled = prefill(directory, args.prefill)
            alone = prune_alone(prefilled, directory, args.prefill)
            print(
                f"serve pruning {args.prefill} old support messages, receiving nothing: "
                f"{alone:.1f} s, {args.prefill / alone:,.0f} rows/s"
            )
            results["prune_alone_seconds"] = alone
            frames = kinds["call"]
            sources = {
                "off": prefilled,
                "pruning": prefilled,
                "returning space": freed(prefilled, directory),
            }
            runs: list[PruneRun] = []
            for _ in range(args.runs):
                for mode in MODES:
                    runs.append(ingest_while(sources[mode], directory, frames, mode))
            rates = {mode: [r.rate for r in runs if r.mode == mode] for mode in MODES}
            print()
            print(
                table(
                    ["pruning", "runs", "ingest msg/s (median)", "each", "rows pruned", "pages"],
                    [
                        [
                            mode,
                            len(rates[mode]),
                            f"{statistics.median(rates[mode]):,.0f}",
                            " ".join(f"{r:,.0f}" for r in rates[mode]),
                            " ".join(str(r.pruned_during) for r in runs if r.mode == mode),
                            " ".join(str(r.pages_returned_during) for r in runs if r.mode == mode),
                        ]
                        for mode in MODES
                    ],
                )
            )
            off = rates["off"]
            on = rates["pruning"]
            change = statistics.median(on) / statistics.median(off) - 1
            print(f"ingest while pruning: {change:+.1%} against pruning off, same run")
            returning = statistics.median(rates["returning space"]) / statistics.median(off) - 1
            print(f"ingest while returning space: {returning:+.1%} against pruning off")
            results["returning_change"] = returning
            results["prune_runs"] = [asdict(r) | {"rate": r.rate} for r in runs]
            results["prune_change"] = change
    results["load_after"] = load_average()
    path = write_json("storage", when, results)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
