"""Contention benchmark: does ingest keep its speed while HTTP requests use the database?

What it measures
    A real `cdrecon serve` on a fresh SQLite file that already holds `--cdrs` planted CDRs and
    their MN records (bench/planted.py). One TCP sender sends distinct Pexip frames
    (bench/frames.py) at `--rate` messages/s for `--seconds`, 1/100 s worth at a time. A
    reader polls the `messages` table's highest id every 20 ms from its own connection (WAL:
    it never blocks anything). A tick's store latency is from when it was due to be sent to
    the first poll that finds it stored: it includes any time the sender was held back.
    Three scenarios, each on a fresh service:

    * `idle`: ingest alone;
    * `reconcile/3s`: a forced reconciliation of the planted window (`POST
      /api/v1/reconciliations`) every 3 s during ingest, one at a time;
    * `reconcile-cli/3s` (only when named in `--scenarios`): the same with `cdrecon
      reconcile` in a process of its own (its answers are exit codes);
    * `20 exports`: twenty `POST /api/v1/exports` of the planted window (include_exported)
      sent at once, 3 s into ingest;
    * `upload`: one `POST /api/v1/history` of `--upload-records` MN records (about 1 KB each:
      60,000 make 60 MB, under the default cap; the service runs with a 512 MiB cap so that
      larger ones can be measured), 3 s into ingest.

    For each: p50/p99/max store latency, the messages/s achieved, the requests' answers
    (status counts, the longest answer, whether each 503 had Retry-After), the longest
    `GET /healthz` (one every 0.5 s) and the peak RSS of the service: the sum of VmRSS over
    `serve` and every process under it (an upload's worker), sampled every 50 ms.

    With `--reference PATH` (a `cdrecon` of another checkout, e.g. main before a change) each
    scenario runs with it first, then with this checkout's, and the table puts them side by
    side. The machine is shared: the load average is printed with each row.

Run:  .venv/bin/python -m bench.contention [--reference ../before/.venv/bin/cdrecon]
      [--rate 6000] [--seconds 20] [--cdrs 5000]
Writes bench/out/contention-<UTC timestamp>.json; the server logs go next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.commands import cdrecon_env, terminate, upgrade_database
from bench.frames import pexip_frames
from bench.loopback import free_port, wait_for
from bench.options import benchmark_parser
from bench.paths import CDRECON, OUT_DIR
from bench.planted import iso, plan_calls, plant
from bench.procfs import load_average, load_text, process_tree, rss_mb
from bench.results import stamp, table, write_json

TICKS_PER_SECOND = 100
POLL = 0.02
RECONCILE_EVERY = 3.0
EXPORTS_AT = 3.0


@dataclass(slots=True)
class Answers:
    """The HTTP requests a scenario made during ingest."""

    statuses: Counter[int] = field(default_factory=Counter)
    longest: float = 0.0
    busy_without_retry_after: int = 0

    def add(self, status: int, seconds: float, retry_after: str | None) -> None:
        self.statuses[status] += 1
        self.longest = max(self.longest, seconds)
        if status == 503 and retry_after is None:
            self.busy_without_retry_after += 1

    def describe(self) -> str:
        if not self.statuses:
            return "-"
        counts = " ".join(f"{n}x{status}" for status, n in sorted(self.statuses.items()))
        return f"{counts}, longest {self.longest:.1f} s"


@dataclass(slots=True)
class Result:
    scenario: str
    build: str
    sent: int
    seconds: float
    p50: float
    p99: float
    worst: float
    answers: Answers
    peak_rss_mb: float
    healthz_longest: float
    load: str

    def row(self) -> list[object]:
        return [
            self.scenario,
            self.build,
            f"{self.sent / self.seconds:,.0f}",
            f"{self.p50:.2f}",
            f"{self.p99:.2f}",
            f"{self.worst:.2f}",
            self.answers.describe(),
            f"{self.peak_rss_mb:,.0f}",
            f"{self.healthz_longest:.2f}",
            self.load,
        ]


class Service:
    """A `cdrecon serve` of one build on a fresh, planted SQLite file."""

    def __init__(
        self, cdrecon: str, workdir: Path, cdrs: int, seed: int, upload_records: int
    ) -> None:
        self.cdrecon = cdrecon
        self.workdir = workdir
        self.upload_records = upload_records
        self.database = workdir / "cdrecon.db"
        upgrade_database(self.database, cdrecon)
        self.window = plan_calls(cdrs, seed).window
        plant(self.database, plan_calls(cdrs, seed), seed, with_mn=True)
        self.tcp, self.http = free_port(), free_port()
        env = cdrecon_env(
            self.database,
            syslog_tcp=f"127.0.0.1:{self.tcp}",
            syslog_udp="off",
            http=f"127.0.0.1:{self.http}",
            history_upload_max_bytes=str(UPLOAD_CAP),
        )
        self.token = subprocess.run(
            [cdrecon, "token", "create", "bench", "--scope", "admin"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()[-1]
        self.log = (workdir / "serve.log").open("wb")
        self.proc = subprocess.Popen(
            [cdrecon, "serve"], env=env, cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT
        )
        if not wait_for(self._healthy, 60):
            raise RuntimeError(f"cdrecon serve did not start; see {workdir / 'serve.log'}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, float, str | None]:
        started = time.monotonic()
        try:
            response = httpx.post(
                f"{self.url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=120,
            )
        except httpx.HTTPError:
            return 0, time.monotonic() - started, None
        return response.status_code, time.monotonic() - started, response.headers.get("retry-after")

    def stop(self) -> None:
        terminate(self.proc, 60)
        self.log.close()


def _stored(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
        row = conn.execute("SELECT max(id) FROM messages").fetchone()
    return int(row[0] or 0)


def _send(port: int, rate: int, seconds: float, due: list[tuple[float, int]]) -> None:
    """Send `rate` frames/s for `seconds`; append (when each tick was due, frames so far)."""
    per_tick = rate // TICKS_PER_SECOND
    frames = pexip_frames()
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.monotonic()
        for tick in range(int(seconds * TICKS_PER_SECOND)):
            when = start + tick / TICKS_PER_SECOND
            pause = when - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sock.sendall(b"".join(next(frames) for _ in range(per_tick)))
            sent += per_tick
            due.append((when, sent))


def _latencies(due: list[tuple[float, int]], polls: list[tuple[float, int]]) -> list[float]:
    latencies, index = [], 0
    for when, count in due:
        while index < len(polls) and polls[index][1] < count:
            index += 1
        if index == len(polls):
            break
        latencies.append(max(0.0, polls[index][0] - when))
    return latencies


@dataclass(slots=True)
class Watch:
    """The service's peak RSS (all its processes) and its longest /healthz, while it runs."""

    peak_rss_mb: float = 0.0
    healthz_longest: float = 0.0

    def run(self, service: Service, stop: threading.Event) -> None:
        next_health = 0.0
        while not stop.is_set():
            tree = process_tree(service.proc.pid)
            self.peak_rss_mb = max(self.peak_rss_mb, sum(rss_mb(pid) for pid in tree))
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + 0.5
                threading.Thread(target=self._health, args=(service,), daemon=True).start()
            stop.wait(0.05)

    def _health(self, service: Service) -> None:
        started = time.monotonic()
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{service.url}/healthz", timeout=120)
        self.healthz_longest = max(self.healthz_longest, time.monotonic() - started)


def _reconcile_every(service: Service, stop: threading.Event, answers: Answers) -> None:
    start, until = service.window
    while not stop.is_set():
        began = time.monotonic()
        answers.add(
            *service.post(
                "/api/v1/reconciliations", {"from": iso(start), "until": iso(until), "force": True}
            )
        )
        stop.wait(max(0.0, RECONCILE_EVERY - (time.monotonic() - began)))


def _reconcile_cli_every(service: Service, stop: threading.Event, answers: Answers) -> None:
    """As `_reconcile_every`, with `cdrecon reconcile` in a process of its own: the run's
    work off the serving process, its writes still on the one database."""
    start, until = service.window
    argv = [service.cdrecon, "reconcile", "--from", iso(start), "--until", iso(until), "--force"]
    while not stop.is_set():
        began = time.monotonic()
        done = subprocess.run(
            argv,
            env=cdrecon_env(service.database),
            cwd=service.workdir,
            capture_output=True,
            timeout=300,
            check=False,
        )
        answers.add(done.returncode, time.monotonic() - began, None)
        stop.wait(max(0.0, RECONCILE_EVERY - (time.monotonic() - began)))


def _exports_at_once(service: Service, stop: threading.Event, answers: Answers) -> None:
    if stop.wait(EXPORTS_AT):
        return
    start, until = service.window
    body = {"from": iso(start), "until": iso(until), "include_exported": True}
    with ThreadPoolExecutor(20) as pool:
        for answer in pool.map(lambda _: service.post("/api/v1/exports", body), range(20)):
            answers.add(*answer)


def _upload(service: Service, stop: threading.Event, answers: Answers) -> None:
    if stop.wait(EXPORTS_AT):
        return
    started = time.monotonic()
    try:
        response = httpx.post(
            f"{service.url}/api/v1/history?filename=bench.json",
            content=_history_document(service.upload_records),
            headers={"Authorization": f"Bearer {service.token}"},
            timeout=600,
        )
    except httpx.HTTPError:
        answers.add(0, time.monotonic() - started, None)
        return
    answers.add(
        response.status_code, time.monotonic() - started, response.headers.get("retry-after")
    )


UPLOAD_CAP = 512 * 1024 * 1024


def _history_document(records: int) -> bytes:
    """`records` MN participant records of about 1 KB each."""
    record = {
        "call_direction": "in",
        "conference_name": "Weekly sync",
        "display_name": "Bench Caller",
        "duration": 600,
        "end_time": "2026-11-26T10:10:00.000000",
        "start_time": "2026-11-26T10:00:00.000000",
        "protocol": "SIP",
        "remote_alias": "sip:bench@example.com",
        "vendor": "x" * 700,
    }
    return json.dumps([{**record, "id": f"bench-upload-{n:08d}"} for n in range(records)]).encode()


Activity = Callable[[Service, threading.Event, Answers], None] | None
SCENARIOS: dict[str, Activity] = {
    "idle": None,
    "reconcile/3s": _reconcile_every,
    "reconcile-cli/3s": _reconcile_cli_every,
    "20 exports": _exports_at_once,
    "upload": _upload,
}


def measure(
    cdrecon: str, build: str, scenario: str, args: argparse.Namespace, logs: Path
) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix=f"contention-{build}-", dir=logs))
    service = Service(cdrecon, workdir, args.cdrs, args.seed, args.upload_records)
    due: list[tuple[float, int]] = []
    polls: list[tuple[float, int]] = []
    answers = Answers()
    stop = threading.Event()
    activity = SCENARIOS[scenario]
    before = load_average()
    watch, watched = Watch(), threading.Event()
    watching = threading.Thread(target=watch.run, args=(service, watched), daemon=True)
    watching.start()
    try:
        busy = (
            threading.Thread(target=activity, args=(service, stop, answers))
            if activity is not None
            else None
        )
        sender = threading.Thread(target=_send, args=(service.tcp, args.rate, args.seconds, due))
        sender.start()
        if busy is not None:
            busy.start()
        deadline = None
        while True:
            polls.append((time.monotonic(), _stored(service.database)))
            if not sender.is_alive():
                stop.set()
                deadline = deadline or time.monotonic() + 120
                if (due and polls[-1][1] >= due[-1][1]) or time.monotonic() > deadline:
                    break
            time.sleep(POLL)
        if busy is not None:
            busy.join()
    finally:
        stop.set()
        watched.set()
        watching.join()
        service.stop()
    latencies = _latencies(due, polls)
    if not latencies or len(latencies) < len(due):
        print(f"  {scenario} {build}: {len(due) - len(latencies)} ticks never stored")
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    sent = due[-1][1] if due else 0
    took = (due[-1][0] - due[0][0] + 1 / TICKS_PER_SECOND) if due else 1.0
    return Result(
        scenario,
        build,
        sent,
        took,
        cuts[49],
        cuts[98],
        max(latencies, default=0.0),
        answers,
        watch.peak_rss_mb,
        watch.healthz_longest,
        load_text(before, load_average()),
    )


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--reference", help="a `cdrecon` of another checkout, measured first")
    parser.add_argument("--reference-name", default="before")
    parser.add_argument("--rate", type=int, default=6000, help="messages/s (default 6000)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cdrs", type=int, default=5000, help="planted CDRs (default 5000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--scenarios", default=",".join(s for s in SCENARIOS if s != "reconcile-cli/3s")
    )
    parser.add_argument(
        "--upload-records",
        type=int,
        default=60_000,
        help="records in the upload scenario's document, about 1 KB each (default 60000)",
    )
    args = parser.parse_args()
    when = stamp()
    logs = OUT_DIR / f"contention-{when}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    builds = [(args.reference_name, args.reference)] if args.reference else []
    builds.append(("this", CDRECON))
    results: list[Result] = []
    for scenario in args.scenarios.split(","):
        for build, cdrecon in builds:
            result = measure(cdrecon, build, scenario, args, logs)
            print(table(HEADERS, [result.row()]).splitlines()[-1], flush=True)
            results.append(result)
    print()
    print(table(HEADERS, [r.row() for r in results]))
    path = write_json(
        "contention",
        when,
        {
            "settings": vars(args),
            "results": [
                {
                    **asdict(r),
                    "answers": {**asdict(r.answers), "statuses": dict(r.answers.statuses)},
                }
                for r in results
            ],
        },
    )
    print(f"\nwritten {path}")
    if any(r.answers.busy_without_retry_after for r in results if r.build == "this"):
        raise SystemExit("a 503 without Retry-After")


HEADERS = [
    "scenario",
    "build",
    "msg/s",
    "p50 s",
    "p99 s",
    "max s",
    "requests",
    "peak RSS MiB",
    "longest /healthz s",
    "load",
]

if __name__ == "__main__":
    main()
