"""Export benchmark: create a billing batch of N CDRs over HTTP and stream it down.

What it measures
    For each N (`--sizes`, default 100k and 1M), a fresh SQLite database holds N closed
    participant CDRs (the same rows as bench.reconcile plants: bench/planted.py), and a real
    `cdrecon serve` runs on it (syslog listeners off, HTTP on a free loopback port). With an
    admin token from `cdrecon token create bench --scope admin`:

    * batch creation: `POST /api/v1/exports {"from": …, "until": …}` (the server freezes
      all N records into the batch in that request): the time to its 201, and the time until
      `GET /api/v1/exports/{id}` finds the batch (polled every 20 ms right after the 201;
      the step's wall time is this one). The manifest's record_count must be N, and the
      batch must be there as soon as the 201 has arrived;
    * CSV download: `GET /api/v1/exports/{id}/download?format=csv`, streamed with httpx
      (`client.stream`) into nothing while hashing: rows/s = N / (request sent → last byte),
      the time to the first byte, and the sha256, which must equal the manifest's
      `sha256.csv`; the body must have N rows plus the header;
    * the same for JSON lines (`format=jsonl`, `sha256.jsonl`);
    * memory: the server's VmHWM (/proc/<pid>/status) after creating the batch, and during
      each download alone (the peak is reset by writing 5 to /proc/<pid>/clear_refs just
      before it, so that the creation's peak does not hide it). The point is that a
      download's peak does not grow with N. Also the server's CPU seconds per step.

    Targets: a download of at least 100,000 rows/s, and the download's peak RSS flat between
    100k and 1M. Next to every figure: the load average before and after the step.

How
    `cdrecon db upgrade` creates the schema; the CDRs are inserted with sqlite3 executemany
    (not timed). The server is ready when GET /healthz answers 200, and is stopped with
    SIGTERM after the downloads. `--py-spy` samples the server during each step.

    With `--reference DIR --runs R` (bench/reference.py), each size is planted once for this
    tree and once for the reference checkout (each schema made by its own `cdrecon db
    upgrade`), and each run serves a fresh copy of each with that checkout's own `cdrecon
    serve`, the two in turn; a table then gives the medians of the server's CPU seconds per
    step side by side.

Run:  .venv/bin/python -m bench.export [--sizes 100000,1000000] [--py-spy]
          [--reference DIR --runs R]
Writes bench/out/export-<UTC timestamp>.json; the server logs go next to it.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.commands import cdrecon_env, git_revision, upgrade_database
from bench.loopback import free_port, wait_for
from bench.options import add_profile_options, benchmark_parser, parse_sizes
from bench.paths import OUT_DIR, ROOT
from bench.planted import Plan, iso, plan_calls, plant
from bench.procfs import (
    LoadAverage,
    cpu_seconds,
    load_average,
    load_text,
    machine_info,
    peak_rss_mb,
    reset_peak,
    rss_mb,
)
from bench.pyspy import print_profile, profile_summary, start_py_spy
from bench.reference import (
    THIS_TREE,
    Checkout,
    Figures,
    add_reference_options,
    checkouts,
    in_turn,
    side_by_side,
)
from bench.results import stamp, table, write_json

TARGET_ROWS_PER_S = 100_000
TIMEOUT = httpx.Timeout(3600.0, connect=10.0)


@dataclass(slots=True)
class Server:
    """A running `cdrecon serve` and how to reach it."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path


def start_server(
    database: Path, log: Path, timeout: float, product: Checkout = THIS_TREE
) -> Server:
    """Start `cdrecon serve` on `database`, HTTP only; wait until /healthz says 200."""
    port = free_port()
    env = cdrecon_env(
        database, syslog_tcp="off", syslog_udp="off", http=f"127.0.0.1:{port}", log_level="WARNING"
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [product.cdrecon, "serve"],
            env=env,
            cwd=database.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"cdrecon serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    if not wait_for(healthy, timeout, interval=0.1):
        stop_server(server)
        raise RuntimeError(f"cdrecon serve not healthy after {timeout} s")
    return server


def stop_server(server: Server) -> int | None:
    """SIGTERM, then wait (SIGKILL after 60 s); the exit status."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return server.proc.returncode


def create_token(database: Path, product: Checkout = THIS_TREE) -> str:
    """`cdrecon token create bench --scope admin`: the token is the last stdout line."""
    done = subprocess.run(
        [product.cdrecon, "token", "create", "bench", "--scope", "admin"],
        env=cdrecon_env(database),
        cwd=database.parent,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1].strip()


@contextmanager
def sampled(pid: int, output: Path | None) -> Iterator[None]:
    """Sample `pid` with py-spy while the block runs (nothing when `output` is None)."""
    if output is None:
        yield
        return
    spy = start_py_spy(pid, output)
    time.sleep(0.5)  # let py-spy attach before the work starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


@dataclass(slots=True)
class Step:
    """One HTTP step against the server, with the server's cost and the load around it."""

    name: str
    seconds: float
    server_cpu_seconds: float
    server_peak_rss_mb: float  # VmHWM after the step (since the reset before it, if any)
    server_rss_before_mb: float
    peak_was_reset: bool
    load_before: LoadAverage
    load_after: LoadAverage
    details: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None


@dataclass(slots=True)
class Created:
    """A batch creation: the POST's answer, and when a GET of the batch first found it."""

    status: int
    manifest: dict[str, Any]
    post_seconds: float  # request sent -> 201 received
    visible_seconds: float  # request sent -> GET /api/v1/exports/{id} answered 200
    first_get_status: int  # what a GET right after the 201 said
    not_found: int  # GETs that said 404 before the batch was there


def create_batch(client: httpx.Client, start: str, until: str, timeout: float) -> Created:
    """POST /api/v1/exports for [start, until), then GET the batch until it is there."""
    started = time.perf_counter()
    response = client.post("/api/v1/exports", json={"from": start, "until": until})
    post_seconds = time.perf_counter() - started
    manifest: dict[str, Any] = response.json()
    if response.status_code != 201:
        return Created(response.status_code, manifest, post_seconds, post_seconds, 0, 0)
    first_status = 0
    not_found = 0
    deadline = started + post_seconds + timeout
    while True:
        status = client.get(f"/api/v1/exports/{manifest['id']}").status_code
        first_status = first_status or status
        if status == 200 or time.perf_counter() > deadline:
            break
        not_found += 1
        time.sleep(0.02)
    visible = time.perf_counter() - started
    return Created(response.status_code, manifest, post_seconds, visible, first_status, not_found)


@dataclass(slots=True)
class Download:
    """What came down: bytes, rows, hash, and when the first byte arrived."""

    status: int
    bytes: int
    rows: int
    sha256: str
    first_byte_seconds: float


def stream_download(client: httpx.Client, url: str, fmt: str) -> Download:
    """GET the batch in `fmt`, hashing and counting as it streams; the body is not kept."""
    digest = hashlib.sha256()
    size = newlines = 0
    first: float | None = None
    started = time.perf_counter()
    with client.stream("GET", url, params={"format": fmt}) as response:
        for chunk in response.iter_raw(1 << 16):
            if first is None:
                first = time.perf_counter() - started
            digest.update(chunk)
            size += len(chunk)
            newlines += chunk.count(b"\n")
        status = response.status_code
    rows = max(newlines - (1 if fmt == "csv" else 0), 0) if status == 200 else 0
    return Download(status, size, rows, digest.hexdigest(), first or 0.0)


def measure_step(
    name: str, pid: int, profile: Path | None, work: Any, *, reset: bool
) -> tuple[Step, Any]:
    """Run `work()` and record its wall time, the server's CPU and peak RSS, and the load."""
    was_reset = reset_peak(pid) if reset else False
    rss_before = rss_mb(pid)
    load_before = load_average()
    cpu_before = cpu_seconds(pid)
    with sampled(pid, profile):
        started = time.perf_counter()
        value = work()
        seconds = time.perf_counter() - started
    step = Step(
        name=name,
        seconds=seconds,
        server_cpu_seconds=cpu_seconds(pid) - cpu_before,
        server_peak_rss_mb=peak_rss_mb(pid),
        server_rss_before_mb=rss_before,
        peak_was_reset=was_reset,
        load_before=load_before,
        load_after=load_average(),
        profile=str(profile) if profile is not None and profile.exists() else None,
    )
    return step, value


@dataclass(slots=True)
class SizeResult:
    """One batch of N records: its creation and downloads."""

    n: int
    checkout: str  # Checkout.label
    run: int  # 1-based
    revision: str  # the product's git revision when the server started
    setup_seconds: float
    startup_rss_mb: float
    manifest: dict[str, Any]
    steps: list[Step]
    server_exit: int | None
    problems: list[str]


def run_size(
    args: argparse.Namespace, n: int, when: str, products: Sequence[Checkout]
) -> list[SizeResult]:
    """Plant N CDRs once per checkout; then, `args.runs` times and for each checkout in
    turn, start its server on a fresh copy, create a batch, download it twice."""
    workdir = Path(tempfile.mkdtemp(prefix=f"cdrecon-export-{n}-"))
    try:
        plan = plan_calls(n, args.seed)
        planted: dict[str, tuple[Path, float]] = {}
        for product in products:
            source = workdir / f"{products.index(product)}-planted.db"
            upgrade_database(source, product.cdrecon)
            setup = plant(source, plan, args.seed, with_mn=False)
            print(f"[{n:,}] {product.label}: planted {n:,} CDRs in {setup:.0f} s", flush=True)
            planted[product.label] = source, setup
        results = []
        for number in range(args.runs):
            for product in in_turn(products, number):
                source, setup = planted[product.label]
                database = workdir / "bench.db"
                for old in workdir.glob("bench.db*"):
                    old.unlink()
                shutil.copyfile(source, database)
                result = measure_batch(args, plan, when, database, product, number + 1)
                result.setup_seconds = setup
                results.append(result)
        return results
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def measure_batch(
    args: argparse.Namespace, plan: Plan, when: str, database: Path, product: Checkout, run: int
) -> SizeResult:
    """Start `product`'s server on the planted `database`, create a batch of all its CDRs,
    download it in each format."""
    n = plan.n
    logdir = OUT_DIR / f"export-{when}-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    name = f"{n}" if product is THIS_TREE else f"{n}-reference"
    token = create_token(database, product)
    revision = git_revision(product.root)
    server = start_server(database, logdir / f"serve-{name}-{run}.log", args.start_timeout, product)
    pid = server.proc.pid
    startup_rss = peak_rss_mb(pid)
    steps: list[Step] = []
    low, high = plan.window
    manifest: dict[str, Any] = {}

    def profile_for(step: str) -> Path | None:
        return OUT_DIR / f"export-{when}-{name}-{step}.pyspy.txt" if args.py_spy else None

    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=TIMEOUT) as client:

            def create() -> Created:
                return create_batch(client, iso(low), iso(high), args.visible_timeout)

            step, created = measure_step("create", pid, profile_for("create"), create, reset=False)
            manifest = created.manifest
            step.details = asdict(created)
            steps.append(step)
            if created.status != 201:
                raise RuntimeError(f"POST /api/v1/exports: {created.status} {manifest}")
            if manifest["record_count"] != n:
                problems.append(f"record_count {manifest['record_count']}, expected {n}")
            if created.first_get_status != 200:
                problems.append(
                    f"POST /api/v1/exports answered 201 after {created.post_seconds:.2f} s, "
                    f"but GET of the batch said {created.first_get_status} until "
                    f"{created.visible_seconds:.2f} s ({created.not_found} tries): the batch "
                    "is committed after the response is sent"
                )
            print(
                f"[{n:,}] batch {manifest['id']}: 201 after {created.post_seconds:.1f} s, "
                f"visible after {created.visible_seconds:.1f} s (first GET: "
                f"{created.first_get_status})",
                flush=True,
            )
            url = f"/api/v1/exports/{manifest['id']}/download"
            for fmt in args.formats.split(","):
                step, got = measure_step(
                    fmt,
                    pid,
                    profile_for(fmt),
                    lambda fmt=fmt: stream_download(client, url, fmt),
                    reset=True,
                )
                step.details = asdict(got)
                step.details["rows_per_s"] = got.rows / step.seconds
                steps.append(step)
                expected = manifest["sha256"][fmt]
                if got.status != 200:
                    problems.append(f"{fmt}: HTTP {got.status}")
                if got.sha256 != expected:
                    problems.append(f"{fmt}: sha256 {got.sha256} != manifest {expected}")
                if got.rows != n:
                    problems.append(f"{fmt}: {got.rows} rows, expected {n}")
                print(
                    f"[{n:,}] {fmt}: {step.seconds:.1f} s, {got.rows / step.seconds:,.0f} "
                    f"rows/s, peak RSS {step.server_peak_rss_mb:.0f} MB, load "
                    f"{load_text(step.load_before, step.load_after)}",
                    flush=True,
                )
    finally:
        exit_status = stop_server(server)
    if exit_status != 0:
        problems.append(f"cdrecon serve exited {exit_status}")
    return SizeResult(
        n, product.label, run, revision, 0.0, startup_rss, manifest, steps, exit_status, problems
    )


def _compared(results: Sequence[SizeResult]) -> list[tuple[str, dict[str, list[Figures]]]]:
    """The side-by-side rows: each size's steps (the server's CPU, the step's wall time, the
    server's peak RSS)."""
    rows = []
    for n in dict.fromkeys(r.n for r in results):
        names = dict.fromkeys(s.name for r in results if r.n == n for s in r.steps)
        for name in names:
            runs: dict[str, list[Figures]] = {}
            for r in results:
                for s in r.steps:
                    if r.n == n and s.name == name:
                        runs.setdefault(r.checkout, []).append(
                            Figures(s.seconds, s.server_cpu_seconds, s.server_peak_rss_mb)
                        )
            rows.append((f"{name} {n:,}", runs))
    return rows


def report(results: list[SizeResult]) -> str:
    """The figures table: one row per step."""
    rows = []
    for r in results:
        for s in r.steps:
            rate = s.details.get("rows_per_s")
            rows.append(
                (
                    f"{r.n:,}",
                    f"{s.name} ({r.checkout}, run {r.run})",
                    f"{s.seconds:.1f}",
                    f"{rate:,.0f}" if rate else "-",
                    f"{rate / TARGET_ROWS_PER_S:.2f}x" if rate else "-",
                    f"{s.details['first_byte_seconds']:.2f}" if rate else "-",
                    f"{s.details['bytes'] / 1e6:.0f}" if rate else "-",
                    f"{s.server_cpu_seconds:.1f}",
                    f"{s.server_rss_before_mb:.0f}",
                    f"{s.server_peak_rss_mb:.0f}" + ("" if s.peak_was_reset or not rate else "*"),
                    load_text(s.load_before, s.load_after),
                )
            )
    headers = (
        "N",
        "step",
        "wall s",
        "rows/s",
        "vs 100k/s",
        "1st byte s",
        "MB",
        "server CPU-s",
        "RSS before MB",
        "peak RSS MB",
        "load 1m",
    )
    return table(headers, rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line options."""
    parser = benchmark_parser(__doc__)
    parser.add_argument(
        "--sizes", type=parse_sizes, default="100000,1000000", help="comma-separated N"
    )
    parser.add_argument("--formats", default="csv,jsonl", help="download formats, in order")
    parser.add_argument("--seed", type=int, default=5424, help="seed of the planted CDRs")
    parser.add_argument("--start-timeout", type=float, default=120, help="serve start-up limit")
    parser.add_argument(
        "--visible-timeout", type=float, default=600, help="wait this long for a batch after 201"
    )
    add_profile_options(parser, "profile the server per step")
    add_reference_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every size, print the table, write the JSON; 0 only if every check passed."""
    args = parse_args(argv)
    when = stamp()
    print(f"machine: {machine_info()}; load average {load_average()}", flush=True)
    products = checkouts(args)
    results = [r for n in args.sizes for r in run_size(args, n, when, products)]
    print()
    print(report(results))
    if len(products) > 1 or args.runs > 1:
        print("\nthe server's CPU seconds per step:")
        print(side_by_side(_compared(results)))
    print("(peak RSS of a download: VmHWM since a reset just before it; * = not reset)")
    for r in results:
        print(
            f"{r.n:,}: revision {r.revision}; server RSS after start-up {r.startup_rss_mb:.0f} MB"
        )
        for s in r.steps:
            if s.name == "create":
                print(
                    f"{r.n:,}: POST answered {s.details['status']} after "
                    f"{s.details['post_seconds']:.1f} s; the batch was visible after "
                    f"{s.details['visible_seconds']:.1f} s (first GET after the 201: "
                    f"{s.details['first_get_status']}, {s.details['not_found']} GETs said 404)"
                )
        for s in r.steps:
            if s.profile:
                print_profile(f"{r.n:,} {s.name} (server)", profile_summary(Path(s.profile)))
    problems = [f"{r.n}: {p}" for r in results for p in r.problems]
    for problem in problems:
        print(f"PROBLEM: {problem}")
    path = write_json(
        "export",
        when,
        {
            "settings": vars(args),
            "checkouts": {p.label: str(p.root) for p in products},
            "target_rows_per_s": TARGET_ROWS_PER_S,
            "results": [asdict(r) for r in results],
            "profiles": {
                f"{r.n}-{s.name}": asdict(profile_summary(Path(s.profile), 40))
                for r in results
                for s in r.steps
                if s.profile
            },
            "problems": problems,
        },
    )
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
