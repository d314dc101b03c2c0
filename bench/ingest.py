"""Ingest benchmark: how fast cdrecon stores Pexip syslog, next to syslog-ng writing a file.

What it measures
    For each scenario (TCP with 1 connection, TCP with several connections, TLS with 1
    connection) and each receiver, the same N octet-counted RFC 5424 frames (distinct,
    realistic Pexip Infinity conference log lines, ~500 bytes) are sent over loopback by
    syslog-ng's `loggen`: one loggen process per connection, each sending its own share of
    the lines as they are (`--read-file --dont-parse`). `--distinct K` instead has one
    loggen loop over K lines on all connections.

    * syslog-ng (the reference): run in the foreground with its own config, a `syslog()`
      source on 127.0.0.1 and a `file()` destination under `flags(flow-control)`. A message
      counts once its line is in the output file.
    * cdrecon: `.venv/bin/cdrecon serve` on a fresh SQLite database. A message counts once
      `cdrecon_messages_stored_total` (summed over its transport labels) on GET /metrics
      says it is committed.

    Figures, per receiver and scenario:
    * messages/s: N / (time from starting loggen to the moment the receiver has all N),
      timed on the receiver side by polling every ~20 ms; loggen's own rate is not used.
    * delivered: messages the receiver had when it finished, or when it stalled (no progress
      for --stall-timeout seconds) or hit --run-timeout: less than N means loss or a stall.
    * peak RSS MB: VmHWM of the receiver (and any children) just before it is stopped.
    * CPU-s: the receiver's utime+stime (/proc/<pid>/stat) spent between loggen's start and
      the last message stored.
    * cdrecon only: `select count(*) from messages` with sqlite3 after SIGTERM and exit,
      which must equal delivered (durability).

How
    Each (scenario, receiver, run) gets a fresh receiver process and a fresh output file or
    database in a temporary directory; receivers alternate within a scenario. Everything
    listens on and sends to 127.0.0.1 only, and every wait is bounded.

Run:  .venv/bin/python bench/ingest.py [--messages N] [--size 500] [--connections 1,4]
                                       [--runs 1] [--skip-tls] [--receivers syslog-ng,cdrecon]
Writes bench/out/ingest-<timestamp>.json and keeps the receivers' logs next to it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

import httpx
from backfill import upgrade_database
from common import (
    TlsFiles,
    children_cpu_seconds,
    command_output,
    free_port,
    listening,
    machine_info,
    make_tls_files,
    pexip_frames,
    self_cpu_seconds,
    system_busy_seconds,
    tail,
    tcp_counters,
    tree_cpu_seconds,
    tree_peak_rss_mb,
    wait_for,
    wait_until_quiet,
    write_frames,
)
from floor import Floor, measure_floor

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
CDRECON = ROOT / ".venv" / "bin" / "cdrecon"
SETUP_SCRIPT = BENCH_DIR / "setup-syslog-ng.sh"
STORED_METRIC = "cdrecon_messages_stored_total"
PENDING_METRIC = "cdrecon_derive_pending_messages"
LOGGEN_RATE = 1_000_000_000  # msg/s per connection: far above anything reached, i.e. unthrottled


# --------------------------------------------------------------------------------------------
# Scenarios and results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """One way of sending: transport and number of parallel connections."""

    transport: str  # "tcp" or "tls"
    connections: int

    @property
    def name(self) -> str:
        return f"{self.transport.upper()} x{self.connections}"


@dataclass(slots=True)
class RunResult:
    """What one receiver did with one scenario's stream."""

    scenario: str
    receiver: str
    run: int
    target: int
    delivered: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    complete: bool = False
    stop_reason: str = ""
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0
    cpu_seconds_total: float = 0.0
    sender_seconds: float | None = None
    sender_reported_count: int | None = None
    sender_reported_seconds: float | None = None
    sender_exit: int | None = None
    db_count: int | None = None
    exit_code: int | None = None
    error: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    # cdrecon only: until every stored message's events and CDRs were derived as well
    # (later than `seconds` when the writer deferred deriving during the burst).
    derived_seconds: float | None = None
    derived_cpu_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """The command line, resolved."""

    messages: int
    size: int
    distinct: int
    scenarios: tuple[Scenario, ...]
    receivers: tuple[str, ...]
    runs: int
    poll: float
    stall_timeout: float
    run_timeout: float
    start_timeout: float
    quiet_wait: float
    floor: bool = True  # also time SQLite alone writing the rows (bench/floor.py)


# --------------------------------------------------------------------------------------------
# Receivers
# --------------------------------------------------------------------------------------------


class Receiver(Protocol):
    """A syslog receiver under test, started fresh for one run."""

    name: str
    pid: int
    logdir: Path

    def start(self, scenario: Scenario) -> int:
        """Start and wait until it accepts `scenario`; return the port to send to."""
        ...

    def stored(self) -> int:
        """How many messages it has durably taken so far."""
        ...

    def stop(self) -> int | None:
        """Stop it gracefully and wait; return its exit code (None if it had to be killed)."""
        ...

    def finish(self, result: RunResult) -> None:
        """Add receiver-specific checks to the result after it stopped, then clean up."""
        ...


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code, None if killed."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return None


class LineCounter:
    """Counts the lines of a file that another process is appending to, incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._handle: BinaryIO | None = None

    def count(self) -> int:
        if self._handle is None:
            if not self.path.exists():
                return 0
            self._handle = self.path.open("rb")
        while chunk := self._handle.read(8 << 20):
            self.lines += chunk.count(b"\n")
        return self.lines

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = None


SYSLOG_NG_CONF = """\
@version: {version}
# Written by bench/ingest.py: the reference receiver, run in the foreground only.
options {{
    use-dns(no); use-fqdn(no); dns-cache(no); keep-hostname(yes); chain-hostnames(no);
    stats-freq(0); mark-freq(0);
}};
source s_bench {{
    syslog(ip("127.0.0.1") port({port}) transport("{transport}")
           max-connections({max_conn}) log-iw-size({iw_size}){tls});
}};
destination d_file {{
    file("{out}" template("${{ISODATE}} ${{HOST}} ${{PROGRAM}} ${{MSG}}\\n")
         log-fifo-size({fifo}));
}};
log {{ source(s_bench); destination(d_file); flags(flow-control); }};
"""


class SyslogNgReceiver:
    """syslog-ng -F with a syslog() source and a file() destination under flow control."""

    name = "syslog-ng"
    max_connections = 64
    window_per_connection = 10_000

    def __init__(self, workdir: Path, logdir: Path, tls: TlsFiles, version: str) -> None:
        self.workdir = workdir
        self.logdir = logdir
        self.tls = tls
        self.version = version
        self.out = workdir / "syslog-ng-out.log"
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._counter = LineCounter(self.out)
        self._log = logdir / "syslog-ng.log"

    def config(self, scenario: Scenario, port: int) -> str:
        tls = ""
        if scenario.transport == "tls":
            tls = (
                f'\n           tls(key-file("{self.tls.key}") cert-file("{self.tls.cert}")'
                " peer-verify(optional-untrusted))"
            )
        return SYSLOG_NG_CONF.format(
            version=self.version,
            port=port,
            transport=scenario.transport,
            max_conn=self.max_connections,
            iw_size=self.max_connections * self.window_per_connection,
            fifo=2 * self.max_connections * self.window_per_connection,
            tls=tls,
            out=self.out,
        )

    def command(self, conf: Path) -> list[str]:
        return [
            "syslog-ng",
            "-F",  # foreground: never a service
            "-e",  # its own messages to stderr (our log file)
            "--no-caps",
            "-f",
            str(conf),
            "--pidfile",
            str(self.workdir / "syslog-ng.pid"),
            "--persist-file",
            str(self.workdir / "syslog-ng.persist"),
            "--control",
            str(self.workdir / "syslog-ng.ctl"),
        ]

    def start(self, scenario: Scenario) -> int:
        port = free_port()
        conf = self.workdir / "syslog-ng.conf"
        conf.write_text(self.config(scenario, port))
        shutil.copy(conf, self.logdir / "syslog-ng.conf")
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(conf), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        self.pid = self._proc.pid
        proc = self._proc
        if not wait_for(lambda: proc.poll() is not None or listening(port), timeout=20):
            raise RuntimeError("syslog-ng did not open its port in 20 s")
        if proc.poll() is not None:
            raise RuntimeError(f"syslog-ng exited {proc.returncode}: {last_line(self._log)}")
        return port

    def stored(self) -> int:
        return self._counter.count()

    def stop(self) -> int | None:
        return _terminate(self._proc, timeout=30) if self._proc else None

    def finish(self, result: RunResult) -> None:
        self._counter.close()
        result.extra["output_lines_after_stop"] = LineCounter(self.out).count()
        self.out.unlink(missing_ok=True)


class CdreconReceiver:
    """`.venv/bin/cdrecon serve` on a fresh SQLite database, watched through /metrics."""

    name = "cdrecon"

    def __init__(self, workdir: Path, logdir: Path, tls: TlsFiles, start_timeout: float) -> None:
        self.workdir = workdir
        self.logdir = logdir
        self.tls = tls
        self.start_timeout = start_timeout
        self.db = workdir / "bench.db"
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None
        self._log = logdir / "cdrecon.log"
        self._last = 0
        self.metric_errors = 0
        self.final_metrics: dict[str, float] = {}

    def environment(self, scenario: Scenario, port: int, http_port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDRECON_")}
        env |= {
            "CDRECON_DATABASE_URL": f"sqlite+aiosqlite:///{self.db}",
            "CDRECON_SYSLOG_TCP": f"127.0.0.1:{port}" if scenario.transport == "tcp" else "off",
            "CDRECON_SYSLOG_UDP": "off",
            "CDRECON_HTTP": f"127.0.0.1:{http_port}",
        }
        if scenario.transport == "tls":
            env |= {
                "CDRECON_SYSLOG_TLS": f"127.0.0.1:{port}",
                "CDRECON_TLS_CERT": str(self.tls.cert),
                "CDRECON_TLS_KEY": str(self.tls.key),
            }
        return env

    def start(self, scenario: Scenario) -> int:
        port, http_port = free_port(), free_port()
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(CDRECON), "serve"],
                env=self.environment(scenario, port, http_port),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self.pid = self._proc.pid
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=5)
        proc = self._proc
        if not wait_for(lambda: proc.poll() is not None or self._healthy(), self.start_timeout):
            raise RuntimeError(f"cdrecon /healthz not 200 in {self.start_timeout:.0f} s")
        if proc.poll() is not None:
            raise RuntimeError(f"cdrecon exited {proc.returncode}: {last_line(self._log)}")
        if not wait_for(lambda: listening(port), timeout=10):
            raise RuntimeError(f"cdrecon healthy but nothing listens on {port}")
        return port

    def _healthy(self) -> bool:
        assert self._http is not None
        try:
            return self._http.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> dict[str, float]:
        """The plain counters and gauges of /metrics, by sample name with labels."""
        assert self._http is not None
        response = self._http.get("/metrics")
        response.raise_for_status()
        return parse_prometheus(response.text)

    def stored(self) -> int:
        try:
            samples = self.metrics()
        except httpx.HTTPError:
            self.metric_errors += 1
            return self._last
        self._last = int(sum_metric(samples, STORED_METRIC))
        return self._last

    def derived(self) -> int:
        """Stored messages whose call events and CDRs are derived too."""
        try:
            samples = self.metrics()
        except httpx.HTTPError:
            self.metric_errors += 1
            return 0
        return int(sum_metric(samples, STORED_METRIC) - sum_metric(samples, PENDING_METRIC))

    def stop(self) -> int | None:
        try:
            self.final_metrics = self.metrics()
        except httpx.HTTPError:
            self.metric_errors += 1
        if self._http is not None:
            self._http.close()
        return _terminate(self._proc, timeout=90) if self._proc else None

    def finish(self, result: RunResult) -> None:
        result.db_count = sqlite_count(self.db)
        result.extra["metric_errors"] = self.metric_errors
        result.extra["final_metrics"] = {
            k: v
            for k, v in self.final_metrics.items()
            if k.startswith("cdrecon_") and "_created" not in k and "_bucket" not in k
        }
        result.extra["db_bytes"] = sum(
            p.stat().st_size for p in self.workdir.glob("bench.db*") if p.is_file()
        )
        for path in self.workdir.glob("bench.db*"):
            path.unlink(missing_ok=True)


class LeanReceiver:
    """bench/lean_receiver.py: the leanest CPython receiver that stores every message, parsed,
    in cdrecon's raw store (no events, no CDRs): what Python itself allows."""

    name = "python-lean"

    def __init__(self, workdir: Path, logdir: Path, tls: TlsFiles) -> None:
        self.workdir = workdir
        self.logdir = logdir
        self.tls = tls
        self.db = workdir / "bench.db"
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: sqlite3.Connection | None = None
        self._log = logdir / "python-lean.log"
        self._last = 0

    def start(self, scenario: Scenario) -> int:
        upgrade_database(self.db)
        port = free_port()
        argv = [sys.executable, str(BENCH_DIR / "lean_receiver.py"), "--db", str(self.db)]
        argv += ["--port", str(port)]
        if scenario.transport == "tls":
            argv += ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)]
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.pid = self._proc.pid
        proc = self._proc
        if not wait_for(lambda: proc.poll() is not None or listening(port), timeout=20):
            raise RuntimeError("the lean receiver did not open its port in 20 s")
        if proc.poll() is not None:
            raise RuntimeError(f"lean receiver exited {proc.returncode}: {last_line(self._log)}")
        return port

    def stored(self) -> int:
        # Committed rows only: ids are contiguous from 1 in one writer's SQLite file.
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
            self._last = int(self._conn.execute("SELECT max(id) FROM messages").fetchone()[0] or 0)
        except sqlite3.Error:
            pass
        return self._last

    def stop(self) -> int | None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return _terminate(self._proc, timeout=60) if self._proc else None

    def finish(self, result: RunResult) -> None:
        result.db_count = sqlite_count(self.db)
        for path in self.workdir.glob("bench.db*"):
            path.unlink(missing_ok=True)


def last_line(log: Path) -> str:
    """The last non-empty line of a log: usually the error that ended a process."""
    lines = [line for line in tail(log, 40).splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(empty log)"


def parse_prometheus(text: str) -> dict[str, float]:
    """Sample name (with its label set) -> value, from Prometheus text exposition."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            samples[name] = float(value)
        except ValueError:
            continue
    return samples


def sum_metric(samples: dict[str, float], metric: str) -> float:
    """Sum of all samples of one metric, whatever their labels."""
    return sum(v for k, v in samples.items() if k == metric or k.startswith(metric + "{"))


def sqlite_count(db: Path) -> int | None:
    """`select count(*) from messages`, with the sqlite3 CLI if present, else the module."""
    if not db.exists():
        return None
    query = "select count(*) from messages"
    if shutil.which("sqlite3"):
        done = subprocess.run(
            ["sqlite3", str(db), query], capture_output=True, text=True, timeout=300, check=False
        )
        return int(done.stdout.strip()) if done.returncode == 0 else None
    with sqlite3.connect(db) as conn:
        return int(conn.execute(query).fetchone()[0])


# --------------------------------------------------------------------------------------------
# Sender and measurement
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stream:
    """What loggen sends in one scenario: one loggen process per file."""

    files: tuple[Path, ...]
    per_connection: int  # messages each connection sends
    connections_per_file: int  # loggen --active-connections
    loop: bool  # loop over a few distinct lines instead of sending each line once


class StreamMaker:
    """Writes the frame files: by default N distinct frames, split between the connections."""

    def __init__(self, directory: Path, settings: Settings) -> None:
        self.directory = directory
        self.settings = settings
        self._master: Path | None = None
        self._splits: dict[int, tuple[Path, ...]] = {}
        self.frames = 0
        self.bytes = 0

    def master(self) -> Path:
        """The file with all distinct frames (N of them, or --distinct K to loop over)."""
        if self._master is None:
            count = self.settings.distinct or self.settings.messages
            self._master = self.directory / "pexip-frames.txt"
            frames = pexip_frames(self.settings.size)
            self.frames, self.bytes = write_frames([self._master], count, frames)
        return self._master

    def split(self, parts: int, per_part: int) -> tuple[Path, ...]:
        """The master's first parts x per_part lines, cut into `parts` consecutive files."""
        if parts == 1:
            return (self.master(),)
        if parts not in self._splits:
            paths = tuple(self.directory / f"pexip-frames-{parts}-{i}.txt" for i in range(parts))
            with self.master().open("rb") as lines:
                for path in paths:
                    path.write_bytes(b"".join(itertools.islice(lines, per_part)))
            self._splits[parts] = paths
        return self._splits[parts]

    def for_scenario(self, scenario: Scenario) -> Stream:
        per_connection = self.settings.messages // scenario.connections
        if self.settings.distinct:
            return Stream((self.master(),), per_connection, scenario.connections, loop=True)
        files = self.split(scenario.connections, per_connection)
        return Stream(files, per_connection, 1, loop=False)

    def facts(self) -> dict[str, object]:
        with self.master().open("rb") as lines:
            sample = lines.readline().decode().rstrip("\n")
        return {
            "distinct_frames": self.frames,
            "mean_frame_bytes": round(self.bytes / max(self.frames, 1), 1),
            "looped": bool(self.settings.distinct),
            "sample_frame": sample,
        }


def loggen_commands(scenario: Scenario, port: int, stream: Stream) -> list[list[str]]:
    """One loggen per frame file, sending its framed lines as they are."""
    transport = ["--use-ssl"] if scenario.transport == "tls" else ["--inet", "--stream"]
    return [
        [
            "loggen",
            *transport,
            f"--rate={LOGGEN_RATE}",
            "--permanent",
            f"--number={stream.per_connection}",
            f"--active-connections={stream.connections_per_file}",
            "--quiet",
            f"--read-file={path}",
            "--dont-parse",
            *(["--loop-reading"] if stream.loop else []),
            "127.0.0.1",
            str(port),
        ]
        for path in stream.files
    ]


def loggen_count(stderr: str) -> int | None:
    """The message count loggen reports on exit."""
    found = re.findall(r"count\s*=\s*(\d+)", stderr)
    return int(found[-1]) if found else None


class CpuWatch:
    """CPU spent during one measurement: the receiver's, loggen's, ours, and everything else.

    `snapshot()` is taken whenever the receiver makes progress, so that a stalled run is
    charged only up to its last progress. "other_processes" is what unrelated processes
    took from the machine meanwhile: on a 2-CPU machine other work skews the figures, so it
    is reported to spot a noisy run.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start = self._now()
        self._last = self._start
        self._children_start = children_cpu_seconds()

    def _now(self) -> tuple[float, float, float]:
        return tree_cpu_seconds(self.pid), system_busy_seconds(), self_cpu_seconds()

    def snapshot(self) -> None:
        self._last = self._now()

    def receiver(self) -> float:
        """Receiver CPU seconds up to the last snapshot."""
        return self._last[0] - self._start[0]

    def receiver_now(self) -> float:
        """Receiver CPU seconds from the start until now."""
        return tree_cpu_seconds(self.pid) - self._start[0]

    def breakdown(self) -> dict[str, float]:
        """Call after loggen was waited for: its CPU is then in our children's usage."""
        receiver, busy, own = (
            last - first for last, first in zip(self._last, self._start, strict=True)
        )
        loggen = children_cpu_seconds() - self._children_start
        return {
            "receiver": round(receiver, 2),
            "loggen": round(loggen, 2),
            "bench_driver": round(own, 2),
            "machine_busy": round(busy, 2),
            "other_processes": round(max(busy - receiver - loggen - own, 0.0), 2),
        }


def poll_overhead(receiver: Receiver, settings: Settings, seconds: float = 1.0) -> float:
    """Receiver CPU seconds per second spent just answering our progress polls while idle."""
    before = tree_cpu_seconds(receiver.pid)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        receiver.stored()
        time.sleep(settings.poll)
    return (tree_cpu_seconds(receiver.pid) - before) / seconds


@dataclass(slots=True)
class Progress:
    """What the polling loop saw."""

    delivered: int = 0
    seconds: float = 0.0
    complete: bool = False
    stop_reason: str = ""
    sender_seconds: float | None = None
    # (seconds since start, messages stored), about once a second: shows a rate that decays.
    timeline: list[tuple[float, int]] = field(default_factory=list)


def poll_until_done(
    receiver: Receiver,
    senders: list[subprocess.Popen[bytes]],
    started: float,
    target: int,
    settings: Settings,
    cpu: CpuWatch,
) -> Progress:
    """Poll the receiver until it has `target` messages, stalls, or runs out of time."""
    progress = Progress()
    last_change = started
    while True:
        tick = time.perf_counter()
        count = receiver.stored()
        now = time.perf_counter()
        if progress.sender_seconds is None and all(p.poll() is not None for p in senders):
            progress.sender_seconds = now - started
        if count != progress.delivered:
            progress.delivered, last_change = count, now
            cpu.snapshot()
        if not progress.timeline or now - started - progress.timeline[-1][0] >= 1.0:
            progress.timeline.append((round(now - started, 2), count))
        if count >= target:
            progress.complete, progress.stop_reason = True, "all stored"
            progress.seconds = now - started
            return progress
        if now - last_change > settings.stall_timeout:
            progress.stop_reason = f"stalled: no progress for {settings.stall_timeout:.0f} s"
        elif now - started > settings.run_timeout:
            progress.stop_reason = f"run timeout {settings.run_timeout:.0f} s"
        if progress.stop_reason:
            progress.seconds = last_change - started
            return progress
        time.sleep(max(0.0, settings.poll - (time.perf_counter() - tick)))


def wait_until_derived(
    derived: Callable[[], int],
    started: float,
    result: RunResult,
    settings: Settings,
    cpu: CpuWatch,
) -> None:
    """Poll until every stored message is derived too; the time and CPU from the start."""
    deadline = time.perf_counter() + settings.run_timeout
    last, last_change = -1, time.perf_counter()
    while time.perf_counter() < deadline:
        count = derived()
        now = time.perf_counter()
        if count >= result.target:
            result.derived_seconds = now - started
            result.derived_cpu_seconds = cpu.receiver_now()
            return
        if count != last:
            last, last_change = count, now
        elif now - last_change > settings.stall_timeout:
            add_error(result, f"deriving stalled at {count:,} of {result.target:,}")
            return
        time.sleep(settings.poll)
    add_error(result, "deriving did not finish within the run timeout")


def stop_senders(
    senders: list[subprocess.Popen[bytes]], logs: list[Path], result: RunResult
) -> None:
    """Let each loggen finish (they should have), or end it; record what they say they sent."""
    counts: list[int] = []
    times: list[float] = []
    for sender, log in zip(senders, logs, strict=True):
        try:
            sender.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _terminate(sender, timeout=5)
            add_error(result, "loggen still running at the end")
        text = log.read_text(errors="replace")
        counts.append(loggen_count(text) or 0)
        found = re.findall(r"time\s*=\s*([0-9.e+-]+)", text)
        times.extend(float(t) for t in found[-1:])
    result.sender_exit = max((abs(p.returncode or 0) for p in senders), default=0)
    result.sender_reported_count = sum(counts)
    result.sender_reported_seconds = max(times, default=None)


def start_senders(
    commands: list[list[str]], logdir: Path
) -> tuple[float, list[subprocess.Popen[bytes]], list[Path]]:
    """Start the loggen processes together; return the start time, processes and logs."""
    logs = [logdir / f"loggen-{i}.log" for i in range(len(commands))]
    handles = [log.open("wb") for log in logs]
    started = time.perf_counter()
    try:
        senders = [
            subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            for argv, out in zip(commands, handles, strict=True)
        ]
    finally:
        for out in handles:
            out.close()
    return started, senders, logs


def measure(
    receiver: Receiver,
    scenario: Scenario,
    port: int,
    stream: Stream,
    settings: Settings,
    result: RunResult,
) -> None:
    """Send the stream to a started receiver and fill `result` with what it did."""
    commands = loggen_commands(scenario, port, stream)
    result.extra["loggen_commands"] = [" ".join(argv) for argv in commands]
    result.extra["poll_overhead_cpu_per_s"] = round(poll_overhead(receiver, settings), 3)
    tcp_before = tcp_counters()
    cpu = CpuWatch(receiver.pid)
    started, senders, logs = start_senders(commands, receiver.logdir)
    try:
        progress = poll_until_done(receiver, senders, started, result.target, settings, cpu)
        result.cpu_seconds = cpu.receiver()
        derived = getattr(receiver, "derived", None)
        if progress.complete and derived is not None:
            wait_until_derived(derived, started, result, settings, cpu)
        result.cpu_seconds_total = tree_cpu_seconds(receiver.pid)
        result.peak_rss_mb = tree_peak_rss_mb(receiver.pid)
    finally:
        stop_senders(senders, logs, result)
        tcp_after = tcp_counters()
        result.extra["tcp_counter_deltas"] = {
            k: tcp_after[k] - tcp_before.get(k, 0) for k in tcp_after
        }
    result.extra["cpu_seconds"] = cpu.breakdown()
    result.delivered = progress.delivered
    result.seconds = progress.seconds
    result.complete = progress.complete
    result.stop_reason = progress.stop_reason
    result.sender_seconds = progress.sender_seconds
    result.extra["timeline"] = progress.timeline
    result.rate = progress.delivered / progress.seconds if progress.seconds > 0 else 0.0


def add_error(result: RunResult, text: str) -> None:
    result.error = f"{result.error}; {text}" if result.error else text


def run_one(
    receiver: Receiver, scenario: Scenario, stream: Stream, settings: Settings, result: RunResult
) -> None:
    """Start the receiver, measure, stop it, and check what it kept."""
    try:
        port = receiver.start(scenario)
        measure(receiver, scenario, port, stream, settings, result)
    except Exception as exc:  # report it in the table, keep benchmarking the others
        result.stop_reason = result.stop_reason or "error"
        add_error(result, f"{type(exc).__name__}: {exc}")
    finally:
        result.exit_code = receiver.stop()
        if result.exit_code is None:
            add_error(result, "had to be killed (SIGKILL)")
        receiver.finish(result)
    if result.db_count is not None and result.db_count != result.delivered:
        add_error(result, f"database has {result.db_count} rows, metrics said {result.delivered}")


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


def ensure_loggen() -> None:
    """Install loggen and syslog-ng with bench/setup-syslog-ng.sh if either is missing."""
    if shutil.which("loggen") and shutil.which("syslog-ng"):
        return
    print("loggen or syslog-ng missing: running bench/setup-syslog-ng.sh", flush=True)
    subprocess.run(["bash", str(SETUP_SCRIPT)], check=True, timeout=900)
    if not (shutil.which("loggen") and shutil.which("syslog-ng")):
        sys.exit("loggen/syslog-ng still missing after bench/setup-syslog-ng.sh")


def versions() -> dict[str, str]:
    """syslog-ng, loggen (same Debian package) and cdrecon versions."""
    sng = command_output("syslog-ng", "--version").splitlines()
    package = command_output("dpkg-query", "-W", "-f", "${Version}", "syslog-ng-core")
    try:
        from importlib.metadata import version

        cdrecon = version("cdrecon")
    except Exception:  # not installed in this interpreter
        cdrecon = "unknown"
    return {
        "syslog-ng": sng[0] if sng else "unknown",
        "syslog-ng-core package": package or "unknown",
        "loggen": f"loggen from syslog-ng-core {package or '?'} (has no --version)",
        "cdrecon": f"{cdrecon} ({git_revision()})",
    }


def git_revision() -> str:
    """The checkout's commit, and whether the service code differs from it."""
    commit = command_output("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    if not re.fullmatch(r"[0-9a-f]+", commit):
        return "no git commit"
    changes = command_output("git", "-C", str(ROOT), "status", "--porcelain", "app", "parsers")
    return f"git {commit}" + (" + uncommitted changes in app/ or parsers/" if changes else "")


def syslog_ng_config_version() -> str:
    """`@version:` for the config: major.minor of the installed syslog-ng."""
    found = re.search(r"(\d+\.\d+)\.\d+", command_output("syslog-ng", "--version"))
    return found.group(1) if found else "3.38"


def make_receiver(name: str, workdir: Path, logdir: Path, tls: TlsFiles, s: Settings) -> Receiver:
    logdir.mkdir(parents=True, exist_ok=True)
    if name == "syslog-ng":
        return SyslogNgReceiver(workdir, logdir, tls, syslog_ng_config_version())
    if name == "python-lean":
        return LeanReceiver(workdir, logdir, tls)
    return CdreconReceiver(workdir, logdir, tls, s.start_timeout)


def run_floors(settings: Settings) -> list[Floor]:
    """SQLite alone writing the design's rows for the same number of messages, once per run
    (it is the same for every scenario: nothing is received)."""
    floors = []
    for run in range(1, settings.runs + 1):
        wait_until_quiet(settings.quiet_wait)
        print(f"  {'-':<7} {'sqlite alone':<12} run {run}: ", end="", flush=True)
        floor = measure_floor(settings.messages, backfill=False)
        print(floor.text(), flush=True)
        floors.append(floor)
    return floors


def run_all(settings: Settings, stamp: str) -> tuple[list[RunResult], dict[str, object]]:
    """Every scenario x receiver x run; returns the results and the message file facts."""
    results: list[RunResult] = []
    logroot = OUT_DIR / f"ingest-{stamp}-logs"
    with tempfile.TemporaryDirectory(prefix="cdrecon-bench-") as tmp:
        tmpdir = Path(tmp)
        tls = make_tls_files(tmpdir)
        streams = StreamMaker(tmpdir, settings)
        print("writing the frame files ...", flush=True)
        streams.master()
        for scenario in settings.scenarios:
            stream = streams.for_scenario(scenario)
            target = stream.per_connection * scenario.connections
            for run in range(1, settings.runs + 1):
                for name in settings.receivers:
                    tag = f"{scenario.transport}{scenario.connections}-{name}-run{run}"
                    workdir = tmpdir / tag
                    workdir.mkdir()
                    receiver = make_receiver(name, workdir, logroot / tag, tls, settings)
                    result = RunResult(scenario.name, name, run, target)
                    busy = wait_until_quiet(settings.quiet_wait)
                    result.extra["machine_busy_before"] = round(busy, 2)
                    print(f"  {scenario.name:<7} {name:<9} run {run}: ", end="", flush=True)
                    run_one(receiver, scenario, stream, settings, result)
                    print(one_line(result), flush=True)
                    results.append(result)
                    shutil.rmtree(workdir, ignore_errors=True)
        facts = streams.facts()
    return results, facts


def other_cpu(r: RunResult) -> float:
    """CPU seconds unrelated processes used during the measurement."""
    cpu = r.extra.get("cpu_seconds")
    value = cpu.get("other_processes", 0.0) if isinstance(cpu, dict) else 0.0
    return float(value)


def is_noisy(r: RunResult) -> bool:
    """Whether other processes took more than a tenth of a CPU during the measurement."""
    return r.seconds > 0 and other_cpu(r) > 0.1 * r.seconds


def one_line(r: RunResult) -> str:
    """Progress line for one run."""
    text = (
        f"{r.rate:>10,.0f} msg/s  {r.delivered:,}/{r.target:,} in {r.seconds:.2f} s"
        f"  rss {r.peak_rss_mb:.0f} MB  cpu {r.cpu_seconds:.1f} s"
    )
    if r.db_count is not None:
        text += f"  db rows {r.db_count:,}"
    if not r.complete:
        text += f"  [{r.stop_reason}]"
    if r.sender_reported_count is not None and r.sender_reported_count != r.target:
        text += f"  loggen sent {r.sender_reported_count:,}"
    deltas = r.extra.get("tcp_counter_deltas")
    resets = deltas.get("TcpExt:TCPAbortOnClose", 0) if isinstance(deltas, dict) else 0
    if resets:
        text += f"  ({resets} socket(s) closed with unread data: RST)"
    if is_noisy(r):
        text += f"  [noisy: other processes used {other_cpu(r):.1f} CPU-s meanwhile]"
    if r.error:
        text += f"  ERROR: {r.error[:300]}"
    return text


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """The median over runs of one receiver in one scenario."""

    scenario: str
    receiver: str
    rate: float
    delivered: int
    target: int
    peak_rss_mb: float
    cpu_seconds: float
    seconds: float
    db_count: int | None
    ok: bool
    noisy: bool


DERIVED = "cdrecon+CDRs"


def derived_view(r: RunResult) -> RunResult:
    """cdrecon's run seen up to the last CDR derived, as a receiver of its own."""
    assert r.derived_seconds is not None
    return replace(
        r,
        receiver=DERIVED,
        seconds=r.derived_seconds,
        rate=r.target / r.derived_seconds,
        cpu_seconds=r.derived_cpu_seconds or 0.0,
    )


def summarize(results: list[RunResult]) -> list[Summary]:
    groups: dict[tuple[str, str], list[RunResult]] = {}
    views = [derived_view(r) for r in results if r.derived_seconds is not None]
    for r in [*results, *views]:
        groups.setdefault((r.scenario, r.receiver), []).append(r)
    summaries = []
    for (scenario, receiver), runs in groups.items():
        db_counts = [r.db_count for r in runs if r.db_count is not None]
        summaries.append(
            Summary(
                scenario=scenario,
                receiver=receiver,
                rate=statistics.median(r.rate for r in runs),
                delivered=min(r.delivered for r in runs),
                target=runs[0].target,
                peak_rss_mb=statistics.median(r.peak_rss_mb for r in runs),
                cpu_seconds=statistics.median(r.cpu_seconds for r in runs),
                seconds=statistics.median(r.seconds for r in runs),
                db_count=min(db_counts) if db_counts else None,
                ok=all(r.complete and not r.error for r in runs),
                noisy=any(is_noisy(r) for r in runs),
            )
        )
    return summaries


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def table_row(s: Summary) -> str:
    flag = ("" if s.ok else " !") + (" ~" if s.noisy else "")
    db = f"{s.db_count:,}" if s.db_count is not None else "-"
    rate = f"{s.rate:,.0f}" if s.delivered else "failed"
    return (
        f"{s.scenario:<8} {s.receiver + flag:<17} {rate:>11} "
        f"{f'{s.delivered:,}/{s.target:,}':>21} {s.peak_rss_mb:>11.1f} "
        f"{s.cpu_seconds:>7.2f} {s.seconds:>7.2f} {db:>11}"
    )


def floor_rows(scenario: str, floors: list[Floor], ours: Summary | None) -> list[str]:
    """The SQLite-alone row of a scenario, and cdrecon's rate as a share of it."""
    if not floors:
        return []
    rate = statistics.median(f.per_second for f in floors)
    cpu = statistics.median(f.measured.cpu_seconds for f in floors)
    seconds = statistics.median(f.measured.seconds for f in floors)
    rows = [
        f"{scenario:<8} {'sqlite alone':<17} {rate:>11,.0f} {'(rows only)':>21} "
        f"{statistics.median(f.measured.peak_rss_mb for f in floors):>11.1f} "
        f"{cpu:>7.2f} {seconds:>7.2f}"
    ]
    if ours:
        rows.append(f"{scenario:<8} {'+CDRs/sqlite':<17} {ratio(ours.rate, rate):>11}")
    return rows


def table(summaries: list[Summary], floors: list[Floor] | None = None) -> str:
    """Plain-text table: each scenario's receivers, the cdrecon/syslog-ng ratio, and SQLite
    alone writing the same rows."""
    head = (
        f"{'scenario':<8} {'receiver':<17} {'messages/s':>11} {'delivered':>21} "
        f"{'peak RSS MB':>11} {'CPU-s':>7} {'time s':>7} {'db rows':>11}"
    )
    lines = [head, "-" * len(head)]
    by_scenario: dict[str, dict[str, Summary]] = {}
    for s in summaries:
        by_scenario.setdefault(s.scenario, {})[s.receiver] = s
    for scenario, receivers in by_scenario.items():
        lines.extend(table_row(s) for s in receivers.values())
        ours, ref = receivers.get("cdrecon"), receivers.get("syslog-ng")
        if ours and ref:
            lines.append(
                f"{scenario:<8} {'cdrecon/syslog-ng':<17} {ratio(ours.rate, ref.rate):>11} "
                f"{'':>21} {ratio(ours.peak_rss_mb, ref.peak_rss_mb):>11} "
                f"{ratio(ours.cpu_seconds, ref.cpu_seconds):>7}"
            )
        lean = receivers.get("python-lean")
        if lean and ref:
            lines.append(
                f"{scenario:<8} {'lean/syslog-ng':<17} {ratio(lean.rate, ref.rate):>11} "
                f"{'':>21} {ratio(lean.peak_rss_mb, ref.peak_rss_mb):>11} "
                f"{ratio(lean.cpu_seconds, ref.cpu_seconds):>7}"
            )
        with_cdrs = receivers.get(DERIVED)
        if with_cdrs and ref:
            lines.append(
                f"{scenario:<8} {'+CDRs/syslog-ng':<17} {ratio(with_cdrs.rate, ref.rate):>11}"
            )
        # The floor holds the CDR rows too: compare it with cdrecon's run to the last CDR.
        lines.extend(floor_rows(scenario, floors or [], with_cdrs or ours))
        lines.append("")
    lines.append(
        "messages/s = delivered / seconds from loggen start to the last message stored "
        "(median of runs);\nCPU-s = receiver CPU in that time; ! = incomplete or an error "
        "in some run; ~ = other processes loaded the machine meanwhile (see above and the JSON);\n"
        "python-lean = bench/lean_receiver.py: frames, parses the header and stores the raw row, "
        "nothing else;\n"
        "cdrecon = raw messages stored; cdrecon+CDRs = until their call events and CDRs are "
        "derived too;\n"
        "sqlite alone = SQLite's own C code writing the rows cdrecon keeps for as many messages"
        "\n(raw, event, CDR; bench/floor.py): nothing received or parsed, no Python in the loop"
    )
    return "\n".join(lines)


def lines_text(settings: Settings) -> str:
    if settings.distinct:
        return f"{settings.distinct:,} distinct lines looped"
    return "every one distinct, one loggen process per connection"


def header(settings: Settings, machine: dict[str, object], vers: dict[str, str]) -> str:
    scen = ", ".join(s.name for s in settings.scenarios)
    return "\n".join(
        [
            f"ingest benchmark: {settings.messages:,} messages of ~{settings.size} B "
            f"({lines_text(settings)}), runs={settings.runs}",
            f"scenarios: {scen}; receivers: {', '.join(settings.receivers)}",
            f"machine: {machine['nproc']} CPUs, {machine['cpu_model']}, "
            f"{machine['memory_gib']} GiB, Linux {machine['kernel']}",
            f"versions: {vers['syslog-ng']} (Debian syslog-ng-core "
            f"{vers['syslog-ng-core package']}, also loggen); cdrecon {vers['cdrecon']}",
        ]
    )


def write_json(
    path: Path,
    settings: Settings,
    results: list[RunResult],
    facts: dict[str, object],
    context: dict[str, object],
    floors: list[Floor],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        **context,
        "settings": {**asdict(settings), "scenarios": [s.name for s in settings.scenarios]},
        "messages_file": facts,
        "summary": [asdict(s) for s in summarize(results)],
        "results": [asdict(r) for r in results],
        "sqlite_alone": [
            {**asdict(f.measured), "messages": f.messages, "per_second": f.per_second}
            for f in floors
        ],
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1_000_000, help="N per scenario")
    parser.add_argument("--size", type=int, default=500, help="approximate frame bytes")
    parser.add_argument(
        "--distinct",
        type=int,
        default=0,
        help="0 (default): every message distinct, one loggen per connection; "
        "K: loggen loops over K distinct lines",
    )
    parser.add_argument("--connections", default="1,4", help="TCP connection counts")
    parser.add_argument("--tls-connections", type=int, default=1)
    parser.add_argument("--skip-tls", action="store_true")
    parser.add_argument(
        "--receivers",
        default="syslog-ng,python-lean,cdrecon",
        help="python-lean: bench/lean_receiver.py, the leanest CPython raw store",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip timing SQLite alone writing the same rows (bench/floor.py)",
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat each measurement")
    parser.add_argument("--poll", type=float, default=0.02, help="poll interval, s")
    parser.add_argument("--stall-timeout", type=float, default=30, help="no progress for, s")
    parser.add_argument("--run-timeout", type=float, default=900, help="per measurement, s")
    parser.add_argument("--start-timeout", type=float, default=60, help="receiver start, s")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="before each measurement wait up to this many s for other load to pass",
    )
    args = parser.parse_args(argv)
    scenarios = [Scenario("tcp", int(c)) for c in args.connections.split(",") if c.strip()]
    if not args.skip_tls:
        scenarios.append(Scenario("tls", args.tls_connections))
    receivers = tuple(r.strip() for r in args.receivers.split(",") if r.strip())
    unknown = set(receivers) - {"syslog-ng", "python-lean", "cdrecon"}
    if unknown or not receivers:
        parser.error(f"unknown receivers: {sorted(unknown)}")
    if args.messages < max(s.connections for s in scenarios):
        parser.error("--messages must be at least the number of connections")
    return Settings(
        messages=args.messages,
        size=args.size,
        distinct=args.distinct,
        scenarios=tuple(scenarios),
        receivers=receivers,
        runs=args.runs,
        poll=args.poll,
        stall_timeout=args.stall_timeout,
        run_timeout=args.run_timeout,
        start_timeout=args.start_timeout,
        quiet_wait=args.quiet_wait,
        floor=not args.no_floor,
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    ensure_loggen()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    machine, vers = machine_info(), versions()
    print(header(settings, machine, vers), flush=True)
    floors = run_floors(settings) if settings.floor else []
    results, facts = run_all(settings, stamp)
    print(f"\nmessages: mean frame {facts['mean_frame_bytes']} B; e.g. {facts['sample_frame']}\n")
    print(table(summarize(results), floors))
    out = OUT_DIR / f"ingest-{stamp}.json"
    context: dict[str, object] = {"started": stamp, "machine": machine, "versions": vers}
    write_json(out, settings, results, facts, context, floors)
    print(f"\nJSON: {out.relative_to(ROOT)}; logs: bench/out/ingest-{stamp}-logs/")
    return 0 if all(r.complete and not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
