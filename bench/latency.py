"""Disconnect to CDR readable: how long after a `Participant has disconnected.` line reaches
cdrecon its CDR can be read, closed, at half the maximum rate; one process against two
(`CDRECON_DERIVE_PROCESS`), in one run.

What it measures, for each mode (`1proc`, `2proc`), on a fresh `cdrecon serve` and SQLite file:

* max CDR-ready msg/s: `--burst` realistic-mix frames (bench/frames.py, one call event in
  `--event-every`, the rest support-log lines) sent as fast as one TCP connection takes
  them, until /metrics says every stored message is derived (stored minus
  `cdrecon_derive_pending_messages`);
* then, on the same service, `--seconds` of paced sending at the offered rate (by default
  half the one-process maximum of this run, the same for both modes): frames go out in
  10 ms ticks; the send time of every disconnect line (about one line in 3 x K) is noted,
  and a reader polls the SQLite file (read-only, WAL) every `--poll` s for the closed CDRs
  of those participants. The latency of a line is the time from its tick's send to the
  poll that first sees its CDR closed (resolution: the poll interval);
* p50, p99 and max of those latencies, how many were seen, and the peak RSS (VmHWM) of all
  cdrecon processes together.

Run:  .venv/bin/python -m bench.latency [--burst 300000] [--seconds 30] [--event-every 10]
Writes bench/out/latency-<timestamp>.json.
"""

from __future__ import annotations

import itertools
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.commands import cdrecon_env, terminate
from bench.frames import pexip_frames
from bench.ingest.receivers import PENDING_METRIC, STORED_METRIC, parse_prometheus, sum_metric
from bench.loopback import free_port, listening, wait_for
from bench.options import benchmark_parser
from bench.paths import CDRECON
from bench.procfs import load_average, load_text, tree_peak_rss_mb, wait_until_quiet
from bench.results import stamp, table, write_json

TICK = 0.01  # seconds between paced sends
DISCONNECT = b'Message="Participant has disconnected."'
PARTICIPANT = re.compile(rb'Participant-id="([^"]+)"')


@dataclass(slots=True)
class ModeResult:
    """What one mode did."""

    mode: str
    burst_rate: float = 0.0  # messages/s until every message was derived
    burst_raw_rate: float = 0.0  # messages/s until every message was stored
    offered_rate: float = 0.0
    sent: int = 0
    probes: int = 0
    seen: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    load: str = ""
    error: str = ""

    def percentile(self, share: float) -> float:
        values = sorted(self.latencies_ms)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(share * len(values)))]


class Service:
    """`cdrecon serve` on a fresh SQLite file, TCP only."""

    def __init__(self, workdir: Path, derive_process: bool) -> None:
        self.db = workdir / "latency.db"
        self.port, http_port = free_port(), free_port()
        env = cdrecon_env(
            self.db,
            syslog_tcp=f"127.0.0.1:{self.port}",
            syslog_udp="off",
            http=f"127.0.0.1:{http_port}",
            derive_process="true" if derive_process else "false",
        )
        self._log = (workdir / "cdrecon.log").open("ab")
        self.proc = subprocess.Popen(
            [CDRECON, "serve"], env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=5)
        if not wait_for(lambda: self.proc.poll() is not None or listening(self.port), 60):
            raise RuntimeError("cdrecon did not open its syslog port in 60 s")
        if self.proc.poll() is not None:
            raise RuntimeError(f"cdrecon exited {self.proc.returncode}")

    def counts(self) -> tuple[int, int]:
        """(stored, derived) messages, from /metrics."""
        samples = parse_prometheus(self.http.get("/metrics").text)
        stored = int(sum_metric(samples, STORED_METRIC))
        return stored, stored - int(sum_metric(samples, PENDING_METRIC))

    def stop(self) -> None:
        self.http.close()
        terminate(self.proc, timeout=60)
        self._log.close()


def burst(service: Service, frames: list[bytes], result: ModeResult) -> None:
    """Send `frames` at once; the raw and CDR-ready rates."""
    data = b"".join(frames)
    target = len(frames)
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        started = time.perf_counter()
        sock.sendall(data)
        stored_at = None
        deadline = started + 900
        while time.perf_counter() < deadline:
            stored, derived = service.counts()
            now = time.perf_counter()
            if stored_at is None and stored >= target:
                stored_at = now
            if stored >= target and derived >= target:
                result.burst_raw_rate = target / ((stored_at or now) - started)
                result.burst_rate = target / (now - started)
                return
            time.sleep(0.02)
    result.error = "the burst was not derived within 900 s"


class Reader(threading.Thread):
    """Polls the database for the closed CDRs of the participants sent, noting when each is
    first seen."""

    def __init__(self, db: Path, poll: float) -> None:
        super().__init__(daemon=True)
        self.db, self.poll = db, poll
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        self.stopped_at: float | None = None  # when sending ended
        self.errors = 0

    def run(self) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, check_same_thread=False)
        try:
            while True:
                with self.lock:
                    waiting = list(self.sent)
                if self.stopped_at is not None and (
                    not waiting or time.perf_counter() - self.stopped_at > 60
                ):
                    return
                seen: set[str] = set()
                try:
                    for start in range(0, len(waiting), 500):
                        chunk = waiting[start : start + 500]
                        rows = conn.execute(
                            "SELECT id FROM cdrs WHERE state = 'closed' AND id IN "
                            f"({', '.join('?' * len(chunk))})",
                            chunk,
                        ).fetchall()
                        seen.update(row[0] for row in rows)
                except sqlite3.Error:
                    self.errors += 1  # busy for a moment: the next poll reads again
                now = time.perf_counter()
                with self.lock:
                    for pid in seen:
                        self.latencies.append((now - self.sent.pop(pid)) * 1000)
                time.sleep(self.poll)
        finally:
            conn.close()

    def finish(self) -> None:
        """Sending ended: wait for the rest (at most 60 s)."""
        self.stopped_at = time.perf_counter()
        self.join(90)


def paced(
    service: Service, frames: list[bytes], rate: float, seconds: float, poll: float
) -> tuple[int, int, list[float]]:
    """Send `frames` at `rate` for `seconds`; (sent, probes, latencies in ms)."""
    reader = Reader(service.db, poll)
    reader.start()
    per_tick = max(1, round(rate * TICK))
    ticks = int(seconds / TICK)
    sent = probes = 0
    source = iter(frames)
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        started = time.perf_counter()
        for tick in range(ticks):
            chunk = list(itertools.islice(source, per_tick))
            if not chunk:
                break
            sock.sendall(b"".join(chunk))
            now = time.perf_counter()
            sent += len(chunk)
            found = [
                m.group(1).decode()
                for frame in chunk
                if DISCONNECT in frame and (m := PARTICIPANT.search(frame))
            ]
            if found:
                probes += len(found)
                with reader.lock:
                    reader.sent.update(dict.fromkeys(found, now))
            pause = started + (tick + 1) * TICK - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    reader.finish()
    return sent, probes, reader.latencies


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--burst", type=int, default=300_000, help="messages for the maximum")
    parser.add_argument("--seconds", type=float, default=30, help="of paced sending")
    parser.add_argument("--event-every", type=int, default=10, help="one call event in K")
    parser.add_argument("--rate", type=float, default=0, help="offered msg/s (0: half max)")
    parser.add_argument("--poll", type=float, default=0.005, help="reader poll interval, s")
    parser.add_argument("--quiet-wait", type=float, default=60, help="wait for load, s")
    parser.add_argument("--modes", default="1proc,2proc")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    results: list[ModeResult] = []
    when = stamp()
    print(f"latency benchmark: burst {args.burst:,}, one call event in {args.event_every}")
    with tempfile.TemporaryDirectory(prefix="cdrecon-latency-") as tmp:
        rate = args.rate
        for mode in modes:
            workdir = Path(tmp) / mode
            workdir.mkdir()
            wait_until_quiet(args.quiet_wait)
            before = load_average()
            result = ModeResult(mode)
            # The same lines for every mode: the paced lines continue the burst's calls, so
            # each disconnect closes a call whose join that service has seen.
            frames = pexip_frames(500, event_every=args.event_every)
            burst_frames = list(itertools.islice(frames, args.burst))
            service = Service(workdir, derive_process=mode == "2proc")
            try:
                burst(service, burst_frames, result)
                if not rate:
                    rate = result.burst_rate / 2
                result.offered_rate = rate
                count = int(rate * args.seconds) + 1
                paced_frames = list(itertools.islice(frames, count))
                result.sent, result.probes, result.latencies_ms = paced(
                    service, paced_frames, rate, args.seconds, args.poll
                )
                result.seen = len(result.latencies_ms)
                result.peak_rss_mb = tree_peak_rss_mb(service.proc.pid)
            except Exception as exc:  # report it, measure the other mode
                result.error = f"{type(exc).__name__}: {exc}"
            finally:
                service.stop()
            result.load = load_text(before, load_average())
            results.append(result)
            print(
                f"  {mode}: max {result.burst_rate:,.0f} msg/s CDR-ready "
                f"({result.burst_raw_rate:,.0f} raw); at {result.offered_rate:,.0f} msg/s "
                f"p50 {result.percentile(0.5):.0f} ms, p99 {result.percentile(0.99):.0f} ms, "
                f"{result.seen}/{result.probes} seen; rss {result.peak_rss_mb:.0f} MB; "
                f"load {result.load} {result.error}",
                flush=True,
            )
    rows = [
        (
            r.mode,
            f"{r.burst_raw_rate:,.0f}",
            f"{r.burst_rate:,.0f}",
            f"{r.offered_rate:,.0f}",
            f"{r.percentile(0.5):.0f}",
            f"{r.percentile(0.99):.0f}",
            f"{max(r.latencies_ms, default=float('nan')):.0f}",
            f"{r.seen}/{r.probes}",
            f"{r.peak_rss_mb:.0f}",
            r.load,
        )
        for r in results
    ]
    print()
    print(
        table(
            (
                "mode",
                "raw msg/s",
                "CDR-ready msg/s",
                "offered msg/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "seen",
                "peak RSS MB",
                "load",
            ),
            rows,
        )
    )
    payload: dict[str, object] = {
        "settings": vars(args),
        "results": [
            {
                **{k: getattr(r, k) for k in ModeResult.__slots__ if k != "latencies_ms"},
                "p50_ms": r.percentile(0.5),
                "p99_ms": r.percentile(0.99),
                "median_ms": statistics.median(r.latencies_ms) if r.latencies_ms else None,
            }
            for r in results
        ],
    }
    print(f"\nJSON: {write_json('latency', when, payload)}")
    return 0 if all(not r.error and r.seen == r.probes for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
