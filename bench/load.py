"""Load test on loopback: normal senders alone, then beside one hostile sender, in one run.

Normal senders are TLS connections sending Pexip lines at a fixed rate each, as nodes do; a
hostile sender sends 64 KB garbage frames over TCP (`garbage`), holds thousands of TLS
connections that never handshake (`idle-tls`), or floods UDP (`udp-flood`). Each phase gets a
fresh `cdrecon serve`. For each it prints the normal senders' messages stored per second,
their p50/p99 send-to-stored latency and the service's peak RSS; the first phase (alone) is
the reference. `--memory` measures instead how far RSS grows under four senders of 64 KB
frames and under thousands of idle TLS connections; `--cdrecon` picks the build to measure
(another checkout's `.venv/bin/cdrecon` for a before/after).

    python -m bench.load                          # alone, then each hostile sender
    python -m bench.load --hostile garbage --seconds 30
    python -m bench.load --memory --cdrecon ../before/.venv/bin/cdrecon
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import socket
import sqlite3
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from app.db.packing import unpack
from bench.commands import cdrecon_env, terminate
from bench.frames import pexip_frames
from bench.loopback import TlsFiles, free_port, make_tls_files, wait_for
from bench.options import benchmark_parser
from bench.paths import CDRECON
from bench.procfs import peak_rss_mb, reset_peak, rss_mb
from bench.results import stamp, table, write_json

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

HOSTILE = ("garbage", "idle-tls", "udp-flood")
GARBAGE_FRAME = 64_000
POLL = 0.02  # seconds between looks at the database: the latency figures' resolution
SPAWN = multiprocessing.get_context("spawn")


@dataclass
class Server:
    """One `cdrecon serve` on free loopback ports with its own database."""

    process: subprocess.Popen[bytes]
    directory: Path
    tcp: int
    tls: int
    udp: int
    http: int
    tls_files: TlsFiles

    @property
    def database(self) -> Path:
        return self.directory / "load.db"

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels`."""
        text = httpx.get(f"http://127.0.0.1:{self.http}/metrics", timeout=30).text
        total = 0.0
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] == name and all(
                f'{k}="{v}"' in series for k, v in labels.items()
            ):
                total += float(value)
        return total


@contextlib.contextmanager
def serving(cdrecon: str, **settings: str) -> Iterator[Server]:
    """A fresh `cdrecon serve` in a temporary directory, stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="cdrecon-load-") as tmp:
        directory = Path(tmp)
        files = make_tls_files(directory)
        ports = {name: free_port() for name in ("tcp", "tls", "udp", "http")}
        env = cdrecon_env(
            directory / "load.db",
            syslog_tcp=f"127.0.0.1:{ports['tcp']}",
            syslog_tls=f"127.0.0.1:{ports['tls']}",
            syslog_udp=f"127.0.0.1:{ports['udp']}",
            http=f"127.0.0.1:{ports['http']}",
            tls_cert=str(files.cert),
            tls_key=str(files.key),
            log_level="WARNING",
            **settings,
        )
        with open(directory / "serve.log", "wb") as log:
            process = subprocess.Popen(
                [cdrecon, "serve"], env=env, cwd=directory, stdout=log, stderr=subprocess.STDOUT
            )
        server = Server(process, directory, **ports, tls_files=files)
        try:
            if not wait_for(lambda: healthy(server), timeout=120, interval=0.1):
                raise RuntimeError(
                    f"cdrecon serve did not start: {(directory / 'serve.log').read_text()}"
                )
            yield server
        finally:
            terminate(process, timeout=60)


def healthy(server: Server) -> bool:
    """Whether the server answers /healthz with 200; an error if it has exited."""
    if server.process.poll() is not None:
        raise RuntimeError(f"cdrecon serve exited: {(server.directory / 'serve.log').read_text()}")
    try:
        return httpx.get(f"http://127.0.0.1:{server.http}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --- senders (each in its own process, so that the driver's GIL does not pace them) ---


def client_context(ca: Path) -> ssl.SSLContext:
    """A TLS client trusting the throw-away CA (the certificate names 127.0.0.1)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    return context


def normal_sender(
    port: int, ca: Path, index: int, rate: float, stop: Event, sent: Synchronized[int]
) -> None:
    """Send Pexip lines over TLS at `rate` messages a second until `stop`, reconnecting as a
    node would if the connection fails; each line's PROCID is its send time in microseconds,
    for the latency."""
    frames = pexip_frames(seed=index + 1)
    started = time.monotonic()
    count = 0
    while not stop.is_set():
        try:
            with (
                socket.create_connection(("127.0.0.1", port)) as raw,
                client_context(ca).wrap_socket(raw) as sock,
            ):
                while not stop.is_set():
                    due = int((time.monotonic() - started) * rate) - count
                    if due <= 0:
                        time.sleep(0.005)
                        continue
                    sock.sendall(_stamped(frames, due))
                    count += due
                    sent.value = count
        except OSError:
            stop.wait(0.1)


def _stamped(frames: Iterator[bytes], count: int) -> bytes:
    """`count` frames with the send time as PROCID."""
    now_us = b"%d" % (time.time_ns() // 1000)
    parts = []
    for _ in range(count):
        message = next(frames).split(b" ", 1)[1].replace(b" pexip - ", b" pexip %s " % now_us, 1)
        parts.append(b"%d %s" % (len(message), message))
    return b"".join(parts)


def garbage_sender(port: int, stop: Event) -> None:
    """64 KB frames of random bytes over TCP, as fast as they are taken (a paused connection
    still sees `stop` within a second)."""
    junk = random.Random(12).randbytes(GARBAGE_FRAME)
    batch = memoryview(b"%d %s" % (len(junk), junk) * 16)
    offset = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(1.0)
        while not stop.is_set():
            try:
                offset = (offset + sock.send(batch[offset:])) % len(batch)
            except TimeoutError:
                continue


def idle_tls_sender(port: int, stop: Event, connections: int) -> None:
    """Keep `connections` TCP connections open to the TLS port without ever handshaking;
    reopen those the server closes, once a second."""
    held: list[socket.socket] = []
    while not stop.is_set():
        alive = []
        for sock in held:
            try:
                if sock.recv(1, socket.MSG_DONTWAIT) == b"":
                    sock.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                sock.close()
                continue
            alive.append(sock)
        held = alive
        while len(held) < connections and not stop.is_set():
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        stop.wait(1.0)
    for sock in held:
        sock.close()


def udp_flooder(port: int, stop: Event) -> None:
    """1,400-byte garbage datagrams, as fast as the socket takes them."""
    junk = random.Random(13).randbytes(1400)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while not stop.is_set():
            for _ in range(100):
                with contextlib.suppress(OSError):
                    sock.sendto(junk, ("127.0.0.1", port))


def niced(increment: int, target: Callable[..., None], *args: object) -> None:
    """Run `target(*args)` at a lower priority: on a machine of two cores the hostile
    sender's own CPU would otherwise come out of the service's share, which a remote
    attacker's does not."""
    os.nice(increment)
    target(*args)


# --- measuring ---


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    seconds: float
    sent: int = 0
    stored: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    peak_rss_mb: float = 0.0
    counters: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.stored / self.seconds

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def watch_stored(database: Path, until: threading.Event, phase: Phase) -> None:
    """Look at the database every POLL seconds for the normal senders' new messages: each
    one's latency is when it was first seen less the send time in its PROCID (the fifth
    field of its RFC 5424 header)."""
    last = 0
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        while not until.is_set():
            rows = db.execute(
                "select id, raw, packed from messages where id > ? and transport = 'tls'", (last,)
            ).fetchall()
            seen_us = time.time_ns() // 1000
            for row_id, raw, packed in rows:
                last = row_id
                header = unpack(raw, packed).split(b" ", 5)
                procid = header[4] if len(header) > 4 else b""
                if procid.isdigit():
                    phase.latencies_ms.append((seen_us - int(procid)) / 1000)
            phase.stored += len(rows)
            until.wait(POLL)
    finally:
        db.close()


# Figures read from /metrics at the end of a phase: key -> (metric, labels).
COUNTERS: dict[str, tuple[str, dict[str, str]]] = {
    "stored": ("cdrecon_messages_stored_total", {}),
    "dropped": ("cdrecon_messages_dropped_total", {}),
    "tls_refused": ("cdrecon_connections_rejected_total", {"transport": "tls"}),
    "tcp_received": ("cdrecon_messages_received_total", {"transport": "tcp"}),
    "udp_received": ("cdrecon_messages_received_total", {"transport": "udp"}),
    "udp_kernel_drops": ("cdrecon_udp_kernel_drops_total", {}),
}


def hostile_volume(phase: Phase) -> float:
    """What the hostile sender got into the service per second: garbage frames read, UDP
    datagrams read or dropped, TLS connections given up or refused."""
    counters = phase.counters
    count = {
        "garbage": counters["tcp_received"],
        "idle-tls": counters["tls_refused"],
        "udp-flood": counters["udp_received"] + counters["dropped"] + counters["udp_kernel_drops"],
    }.get(phase.name, 0.0)
    return count / (phase.seconds + 1)


def run_phase(args: argparse.Namespace, hostile: str | None) -> Phase:
    """Normal senders for `args.seconds`, with `hostile` beside them if given."""
    phase = Phase(hostile or "alone", args.seconds)
    with serving(args.cdrecon) as server:
        stop = SPAWN.Event()
        sent = [SPAWN.Value("q", 0) for _ in range(args.senders)]
        processes = [
            SPAWN.Process(
                target=normal_sender,
                args=(server.tls, server.tls_files.ca, i, args.rate, stop, sent[i]),
            )
            for i in range(args.senders)
        ]
        if hostile is not None:
            target, port, more = {
                "garbage": (garbage_sender, server.tcp, ()),
                "idle-tls": (idle_tls_sender, server.tls, (args.idle,)),
                "udp-flood": (udp_flooder, server.udp, ()),
            }[hostile]
            processes.append(
                SPAWN.Process(target=niced, args=(args.hostile_nice, target, port, stop, *more))
            )
        until = threading.Event()
        watcher = threading.Thread(target=watch_stored, args=(server.database, until, phase))
        watcher.start()
        for process in processes[: args.senders]:
            process.start()
        # The normal senders are connected and sending when the hostile one starts, as
        # nodes would be; what was stored before the window opens does not count.
        wait_for(lambda: all(value.value for value in sent), timeout=120)
        for process in processes[args.senders :]:
            process.start()
        time.sleep(1)
        reset_peak(server.process.pid)
        stored, seen, sent_before = (
            phase.stored,
            len(phase.latencies_ms),
            sum(v.value for v in sent),
        )
        time.sleep(args.seconds)
        phase.stored -= stored
        del phase.latencies_ms[:seen]
        phase.sent = sum(value.value for value in sent) - sent_before
        phase.peak_rss_mb = peak_rss_mb(server.process.pid)
        until.set()
        watcher.join()
        stop.set()
        for key, (name, labels) in COUNTERS.items():
            phase.counters[key] = server.metric(name, **labels)
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return phase


def memory_big_frames(args: argparse.Namespace) -> dict[str, float]:
    """RSS growth while four senders send 64 KB frames over TCP as fast as they are taken."""
    with serving(args.cdrecon) as server:
        time.sleep(2)
        pid = server.process.pid
        base = rss_mb(pid)
        reset_peak(pid)
        stop = SPAWN.Event()
        senders = [SPAWN.Process(target=garbage_sender, args=(server.tcp, stop)) for _ in range(4)]
        for process in senders:
            process.start()
        time.sleep(args.seconds)
        peak = peak_rss_mb(pid)
        queued = server.metric("cdrecon_ingest_queue_messages")
        stop.set()
        for process in senders:
            process.join(timeout=60)
        wait_for(
            lambda: server.metric("cdrecon_ingest_queue_messages") == 0, timeout=120, interval=1
        )
        return {
            "base_mb": base,
            "peak_mb": peak,
            "growth_mb": peak - base,
            "queued_at_peak": queued,
            "after_mb": rss_mb(pid),
        }


def memory_idle_tls(args: argparse.Namespace) -> dict[str, float]:
    """RSS growth while `args.idle` TLS connections are open that never handshake."""
    with serving(args.cdrecon) as server:
        time.sleep(2)
        pid = server.process.pid
        base = rss_mb(pid)
        reset_peak(pid)
        held = []
        try:
            for _ in range(args.idle):
                with contextlib.suppress(OSError):
                    held.append(socket.create_connection(("127.0.0.1", server.tls), timeout=5))
            time.sleep(5)  # let the server take every connection in
            peak = peak_rss_mb(pid)
        finally:
            for sock in held:
                sock.close()
        return {"base_mb": base, "peak_mb": peak, "growth_mb": peak - base, "connected": len(held)}


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--cdrecon", default=CDRECON, help="the cdrecon command to measure")
    parser.add_argument("--senders", type=int, default=4, help="normal TLS senders")
    parser.add_argument("--rate", type=float, default=500, help="messages/s per normal sender")
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument(
        "--hostile", default=",".join(HOSTILE), help=f"phases after 'alone': {', '.join(HOSTILE)}"
    )
    parser.add_argument("--idle", type=int, default=3000, help="idle TLS connections")
    parser.add_argument("--runs", type=int, default=1, help="rounds of every phase, interleaved")
    parser.add_argument(
        "--hostile-nice", type=int, default=10, help="niceness of the hostile sender (0: none)"
    )
    parser.add_argument("--memory", action="store_true", help="the RSS growth scenarios instead")
    args = parser.parse_args()
    when = stamp()
    if args.memory:
        results = {
            "64KB frames, 4 senders": memory_big_frames(args),
            f"{args.idle} idle TLS": memory_idle_tls(args),
        }
        print(f"cdrecon: {args.cdrecon}")
        print(
            table(
                ["scenario", "RSS before MiB", "peak MiB", "growth MiB"],
                [
                    [name, f"{r['base_mb']:.0f}", f"{r['peak_mb']:.0f}", f"+{r['growth_mb']:.0f}"]
                    for name, r in results.items()
                ],
            )
        )
        print(
            write_json(
                "load-memory",
                when,
                {"cdrecon": args.cdrecon, "settings": vars(args), "results": results},
            )
        )
        return
    hostiles = [h.strip() for h in args.hostile.split(",") if h.strip()]
    unknown = set(hostiles) - set(HOSTILE)
    if unknown:
        parser.error(
            f"unknown hostile sender {', '.join(sorted(unknown))}: use {', '.join(HOSTILE)}"
        )
    rounds = [[run_phase(args, name) for name in [None, *hostiles]] for _ in range(args.runs)]
    print(
        f"cdrecon: {args.cdrecon}; {args.senders} TLS senders at {args.rate:.0f} msg/s each, "
        f"{args.seconds:.0f} s a phase, {args.runs} run(s), medians"
    )
    print(report(rounds))
    document = [
        [
            asdict(p) | {"rate": p.rate, "p50_ms": p.percentile(50), "p99_ms": p.percentile(99)}
            for p in phases
        ]
        for phases in rounds
    ]
    for phases in document:
        for entry in phases:
            del entry["latencies_ms"]
    print(
        write_json(
            "load", when, {"cdrecon": args.cdrecon, "settings": vars(args), "runs": document}
        )
    )


def report(rounds: list[list[Phase]]) -> str:
    """One row a phase: medians over the rounds; latencies pooled over them."""
    rows = []
    alone_rate = 0.0
    for column in zip(*rounds, strict=True):
        pooled = Phase(column[0].name, column[0].seconds)
        pooled.latencies_ms = [ms for phase in column for ms in phase.latencies_ms]
        rate = statistics.median(phase.rate for phase in column)
        alone_rate = alone_rate or rate
        rows.append(
            [
                pooled.name,
                f"{rate:.0f}",
                f"{rate / alone_rate:.0%}" if alone_rate else "-",
                f"{pooled.percentile(50):.0f}",
                f"{pooled.percentile(99):.0f}",
                f"{max(phase.peak_rss_mb for phase in column):.0f}",
                f"{statistics.median(hostile_volume(phase) for phase in column):.0f}",
                f"{sum(phase.counters['dropped'] for phase in column):.0f}",
            ]
        )
    headers = ["phase", "normal msg/s", "of alone", "p50 ms", "p99 ms", "peak RSS MiB"]
    return table([*headers, "hostile in/s", "dropped"], rows)


if __name__ == "__main__":
    main()
