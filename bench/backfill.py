"""Backfill benchmark: how fast `cdrecon import-syslog` takes an rsyslog file of Pexip lines.

What it measures
    For each size N (`--lines`, default 1,000,000): one gzip file of N distinct Pexip
    Infinity conference log lines as rsyslog writes them,

        2026-11-26T10:00:00.090+00:00 conf-node-08 pexip: 2026-11-26 10:00:00,090
        Level="INFO" Name="administrator.conference" Message="Participant has joined." ...

    (one line each; the bodies are `bench.frames.pexip_frames`: calls attempt, join and
    disconnect, so about a third of the lines are each; every line has its own time and
    Participant-id, so all N are distinct), imported twice into a fresh SQLite database:

    * first import: wall time of the whole `cdrecon import-syslog FILE.gz` process (start-up,
      migration check, gunzip, parse, store, derive call events and CDRs, commit, exit),
      lines/s = N / that time, the summary line it prints, its CPU seconds (user + system,
      and the system part: SQLite reading and writing pages through the kernel shows there;
      from os.wait4, which counts the deriving process the import started and reaped too),
      and the peak RSS of the import's processes together: each one's VmHWM, sampled every
      0.1 s while it runs, summed (ru_maxrss would give only the larger of the two), and
      each one's own CPU seconds as last sampled;
    * second import of the same file: everything must be a duplicate (stored 0), timed the
      same way.

    The target is 100,000 lines/s. Next to every figure: the load average before and after
    the command, and how many CPUs the whole machine kept busy during it (/proc/stat), since
    the machine is shared.

How
    The file and the database live in a temporary directory; `cdrecon db upgrade` creates the
    schema first (not timed). After both imports, sqlite3 counts the rows (messages, events,
    CDRs by state) to check the summary. `--py-spy` samples the first import with
    `py-spy record --nonblocking` and prints where its time goes.

    With `--reference DIR --runs R` (bench/reference.py), the same file is imported by this
    tree and by the reference checkout in turn, each into its own fresh database made by its
    own `cdrecon db upgrade`, R times; a table then gives the medians side by side. With
    `--one-process-reference` instead of `--reference DIR`, the reference is this tree with
    `CDRECON_DERIVE_PROCESS=false`: the deriving process against one process, same code.

Run:  .venv/bin/python -m bench.backfill [--lines 1000000] [--lines 100000,1000000] [--py-spy]
          [--reference DIR | --one-process-reference] [--runs R]
Writes bench/out/backfill-<UTC timestamp>.json. The helpers that run and measure a command
(bench/commands.py) are shared with bench.reconcile and bench.export.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.commands import Measured, cdrecon_env, run_measured, upgrade_database
from bench.floor import measure_floor
from bench.frames import pexip_frames
from bench.options import add_no_floor, add_profile_options, benchmark_parser, parse_sizes
from bench.paths import OUT_DIR, ROOT
from bench.procfs import (
    cpu_seconds,
    load_average,
    load_text,
    machine_info,
    peak_rss_mb,
    process_tree,
)
from bench.pyspy import print_profile, profile_summary
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

TARGET_LINES_PER_S = 100_000
# This tree deriving in the import's own process (`--one-process-reference`).
ONE_PROCESS = Checkout("reference", ROOT)
SUMMARY = re.compile(
    r"files (?P<files>\d+), lines (?P<lines>\d+), stored (?P<stored>\d+), "
    r"duplicates (?P<duplicates>\d+), parse failures (?P<parse_failures>\d+), "
    r"new call events (?P<events>\d+)"
)

# --------------------------------------------------------------------------------------------
# The syslog file
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SyslogFile:
    """The generated file: how many lines, its size plain and gzipped, and how long it took."""

    path: str
    lines: int
    plain_bytes: int
    gzip_bytes: int
    seconds: float


def rsyslog_lines(count: int, size: int, seed: int) -> Iterator[bytes]:
    """`count` distinct Pexip lines as rsyslog's default file template writes them:
    `ISO-TIME HOST pexip: BODY` (from the octet-counted RFC 5424 frames of bench/frames.py)."""
    for frame in itertools.islice(pexip_frames(size, seed), count):
        # b"LEN <134>1 ISO HOST pexip - - - BODY\n"
        _length, _pri, when, host, _app, _procid, _msgid, _sd, body = frame.split(b" ", 8)
        yield when + b" " + host + b" pexip: " + body


def write_syslog_file(path: Path, count: int, size: int, seed: int, level: int) -> SyslogFile:
    """Write `count` lines gzipped to `path`."""
    started = time.perf_counter()
    plain = 0
    lines = rsyslog_lines(count, size, seed)
    with gzip.open(path, "wb", compresslevel=level) as out:
        while chunk := list(itertools.islice(lines, 10_000)):
            data = b"".join(chunk)
            plain += len(data)
            out.write(data)
    return SyslogFile(str(path), count, plain, path.stat().st_size, time.perf_counter() - started)


# --------------------------------------------------------------------------------------------
# The measurement
# --------------------------------------------------------------------------------------------


def parse_summary(stdout: str) -> dict[str, int] | None:
    """The figures of import-syslog's summary line, if it printed one."""
    found = SUMMARY.search(stdout)
    return None if found is None else {k: int(v) for k, v in found.groupdict().items()}


def database_counts(database: Path) -> dict[str, int]:
    """Rows in the raw store and the derived tables, CDRs by state."""
    with sqlite3.connect(database) as conn:
        counts = {
            "messages": conn.execute("SELECT count(*) FROM messages").fetchone()[0],
            "events": conn.execute("SELECT count(*) FROM events").fetchone()[0],
        }
        for state, number in conn.execute("SELECT state, count(*) FROM cdrs GROUP BY state"):
            counts[f"cdrs_{state}"] = number
    conn.close()
    return counts


@dataclass(slots=True)
class ImportRun:
    """One import of the file, with its figures and the checks of its summary line."""

    label: str
    measured: Measured
    summary: dict[str, int] | None
    lines_per_s: float
    problems: list[str]
    # The import process and its deriving process together: each one's peak, summed.
    all_rss_mb: float = 0.0
    # Each process's peak: "import-syslog", "app.cdr.worker" (a second one if restarted).
    rss_by_process: dict[str, float] = field(default_factory=dict)
    # Each process's CPU seconds, as last sampled (up to `RSS_SAMPLE` before it ended): on
    # two free cores the import takes at least the larger.
    cpu_by_process: dict[str, float] = field(default_factory=dict)


# Seconds between two looks at the import's processes' peak resident sets.
RSS_SAMPLE = 0.1
# What names an import's processes in /proc/<pid>/cmdline: the command and its deriving
# process (not py-spy, which samples it).
IMPORT_PROCESSES = (b"import-syslog", b"app.cdr.worker")


class ImportPeaks:
    """While a command runs: the peak resident set (VmHWM) of each of this process's
    descendants that is an import or its deriving process, sampled every `RSS_SAMPLE`."""

    def __init__(self) -> None:
        self.peaks: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.cpu: dict[int, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ImportPeaks:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def total_mb(self) -> float:
        """The processes' peaks summed."""
        return sum(self.peaks.values())

    def by_process(self, figures: dict[int, float]) -> dict[str, float]:
        """`figures` (`peaks` or `cpu`) by what each process runs (`name pid` if two ran
        the same)."""
        named: dict[str, float] = {}
        for pid, figure in figures.items():
            name = self.names[pid]
            named[f"{name} {pid}" if name in named else name] = round(figure, 1)
        return named

    def _sample(self) -> None:
        own = os.getpid()
        while not self._done.wait(RSS_SAMPLE):
            for pid in process_tree(own):
                if pid == own:
                    continue
                try:
                    command = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                for name in IMPORT_PROCESSES:
                    if name in command:
                        peak = peak_rss_mb(pid)  # 0 once gone: the last sample stands
                        self.peaks[pid] = max(self.peaks.get(pid, 0.0), peak)
                        self.cpu[pid] = max(self.cpu.get(pid, 0.0), cpu_seconds(pid))
                        self.names[pid] = name.decode()
                        break


def check_import(label: str, summary: dict[str, int] | None, lines: int) -> list[str]:
    """What is wrong with an import's summary: the first stores all, the second none."""
    if summary is None:
        return [f"{label}: no summary line"]
    first = label == "first"
    wanted = {
        "lines": lines,
        "stored": lines if first else 0,
        "duplicates": 0 if first else lines,
        "parse_failures": 0,
        "events": lines if first else 0,
    }
    return [
        f"{label}: {key} = {summary[key]}, expected {value}"
        for key, value in wanted.items()
        if summary[key] != value
    ]


def import_once(
    label: str,
    database: Path,
    source: Path,
    lines: int,
    profile: Path | None,
    product: Checkout = THIS_TREE,
) -> ImportRun:
    """Time one `cdrecon import-syslog` of `source`."""
    with ImportPeaks() as peaks:
        measured = run_measured(
            [product.cdrecon, "import-syslog", str(source)],
            cdrecon_env(
                database, **({"derive_process": "false"} if product is ONE_PROCESS else {})
            ),
            database.parent,
            profile,
            product.root,
        )
    summary = parse_summary(measured.stdout)
    problems = check_import(label, summary, lines)
    if measured.returncode != 0:
        problems.append(f"{label}: exit {measured.returncode}: {measured.stderr[-2000:]}")
    # A command too short to be sampled: its own peak.
    all_rss = peaks.total_mb or measured.peak_rss_mb
    return ImportRun(
        label,
        measured,
        summary,
        lines / measured.seconds,
        problems,
        all_rss,
        peaks.by_process(peaks.peaks),
        peaks.by_process(peaks.cpu),
    )


@dataclass(slots=True)
class SizeResult:
    """Both imports of one file size."""

    lines: int
    checkout: str  # Checkout.label
    run: int  # 1-based
    file: SyslogFile
    imports: list[ImportRun]
    database: dict[str, int]
    database_bytes: int
    problems: list[str]
    # SQLite alone writing the same lines' rows (bench/floor.py), measured after the imports.
    sqlite_alone: Measured | None = None
    # Its lines per second of writing alone (bench/floor.py's figure): the "vs floor" basis.
    floor_per_second: float | None = None


def run_size(
    args: argparse.Namespace, lines: int, when: str, products: Sequence[Checkout]
) -> list[SizeResult]:
    """Generate the file; then, `args.runs` times and for each checkout in turn: create the
    schema, import twice, count the rows."""
    workdir = Path(tempfile.mkdtemp(prefix=f"cdrecon-backfill-{lines}-"))
    try:
        source = workdir / "pexip.log.gz"
        print(f"[{lines:,} lines] writing {source.name} ...", flush=True)
        made = write_syslog_file(source, lines, args.size, args.seed, args.compresslevel)
        print(
            f"[{lines:,} lines] {made.plain_bytes / 1e6:.0f} MB plain, "
            f"{made.gzip_bytes / 1e6:.0f} MB gzip, written in {made.seconds:.0f} s",
            flush=True,
        )
        results = []
        for number in range(args.runs):
            for product in in_turn(products, number):
                results.append(_import_twice(args, when, workdir, made, product, number + 1))
        if not args.no_floor:
            floor = measure_floor(lines, backfill=True)
            print(f"[{lines:,} lines] {floor.text()}", flush=True)
            results[0].sqlite_alone = floor.measured
            results[0].floor_per_second = floor.per_second
        return results
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _import_twice(
    args: argparse.Namespace,
    when: str,
    workdir: Path,
    made: SyslogFile,
    product: Checkout,
    number: int,
) -> SizeResult:
    """Both imports of the file by `product` into a fresh database, and its rows counted."""
    source, lines = Path(made.path), made.lines
    for old in workdir.glob("bench.db*"):
        old.unlink()
    database = workdir / "bench.db"
    upgrade_database(database, product.cdrecon)
    runs = []
    for label in ("first", "second"):
        profile = None
        if args.py_spy:
            name = f"{lines}-{label}" if product is THIS_TREE else f"{lines}-{label}-reference"
            profile = OUT_DIR / f"backfill-{when}-{name}.pyspy.txt"
        run = import_once(label, database, source, lines, profile, product)
        print(
            f"[{lines:,} lines] {product.label}: {label} import: {run.measured.seconds:.1f} s, "
            f"{run.measured.cpu_seconds:.1f} CPU-s, {run.lines_per_s:,.0f} lines/s, load "
            f"{load_text(run.measured.load_before, run.measured.load_after)}",
            flush=True,
        )
        runs.append(run)
    counts = database_counts(database)
    problems = [p for run in runs for p in run.problems]
    if counts["messages"] != lines:
        problems.append(f"messages table has {counts['messages']} rows, expected {lines}")
    size = sum(p.stat().st_size for p in workdir.glob("bench.db*"))
    return SizeResult(lines, product.label, number, made, runs, counts, size, problems)


def _compared(results: Sequence[SizeResult]) -> list[tuple[str, dict[str, list[Figures]]]]:
    """The side-by-side rows: each size's first and second import."""
    rows = []
    for lines in dict.fromkeys(r.lines for r in results):
        for index, label in enumerate(("first", "second")):
            runs: dict[str, list[Figures]] = {}
            for r in results:
                if r.lines == lines:
                    run = r.imports[index]
                    m = run.measured
                    runs.setdefault(r.checkout, []).append(
                        Figures(m.seconds, m.cpu_seconds, run.all_rss_mb)
                    )
            rows.append((f"{label} import, {lines:,} lines", runs))
    return rows


def summary_text(summary: dict[str, int] | None) -> str:
    """The summary line, shortened for the table."""
    if summary is None:
        return "(none)"
    return (
        f"stored {summary['stored']:,}, dup {summary['duplicates']:,}, "
        f"fail {summary['parse_failures']}, events {summary['events']:,}"
    )


def report(results: Sequence[SizeResult]) -> str:
    """The figures table; each import's lines/s also against the floor of its size."""
    floors = {r.lines: r.floor_per_second for r in results if r.floor_per_second is not None}
    rows = []
    for result in results:
        floor = floors.get(result.lines)
        for run in result.imports:
            m = run.measured
            rows.append(
                (
                    f"{result.lines:,}",
                    f"{run.label} ({result.checkout}, run {result.run})",
                    f"{m.seconds:.1f}",
                    f"{run.lines_per_s:,.0f}",
                    f"{run.lines_per_s / TARGET_LINES_PER_S:.2f}x",
                    "-" if floor is None else f"{run.lines_per_s / floor:.2f}x",
                    f"{run.all_rss_mb:.0f}",
                    f"{m.cpu_seconds:.1f}",
                    f"{m.system_seconds:.1f}",
                    f"{m.machine_busy_cpus:.2f}",
                    load_text(m.load_before, m.load_after),
                    summary_text(run.summary),
                    m.revision,
                )
            )
        if result.sqlite_alone is not None:
            m = result.sqlite_alone
            rate = result.lines / m.seconds
            rows.append(
                (
                    f"{result.lines:,}",
                    "SQLite alone",
                    f"{m.seconds:.1f}",
                    f"{rate:,.0f}",
                    f"{rate / TARGET_LINES_PER_S:.2f}x",
                    "-" if floor is None else f"{rate / floor:.2f}x",
                    f"{m.peak_rss_mb:.0f}",
                    f"{m.cpu_seconds:.1f}",
                    f"{m.system_seconds:.1f}",
                    f"{m.machine_busy_cpus:.2f}",
                    load_text(m.load_before, m.load_after),
                    "the same rows, no Python in the loop (bench/floor.py)",
                    m.revision,
                )
            )
    headers = (
        "lines",
        "import",
        "wall s",
        "lines/s",
        "vs 100k/s",
        "vs floor",
        "peak RSS MB, all processes",
        "CPU-s",
        "of which sys",
        "busy CPUs",
        "load 1m",
        "summary",
        "revision",
    )
    return table(headers, rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line options."""
    parser = benchmark_parser(__doc__)
    parser.add_argument(
        "--lines",
        type=parse_sizes,
        default="1000000",
        help="lines in the file; a comma-separated list runs each size (default 1000000)",
    )
    parser.add_argument("--size", type=int, default=500, help="approximate bytes per line")
    parser.add_argument("--seed", type=int, default=5424, help="seed of the line generator")
    parser.add_argument("--compresslevel", type=int, default=6, help="gzip level of the file")
    add_profile_options(parser, "profile each import with py-spy")
    add_no_floor(parser)
    add_reference_options(parser)
    parser.add_argument(
        "--one-process-reference",
        action="store_true",
        help="the reference is this tree with CDRECON_DERIVE_PROCESS=false (instead of DIR)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every size, print the table, write the JSON; 0 only if every check passed."""
    args = parse_args(argv)
    when = stamp()
    machine = machine_info()
    print(f"machine: {machine}; load average {load_average()}", flush=True)
    products = checkouts(args)
    if args.one_process_reference:
        if len(products) > 1:
            raise SystemExit("--one-process-reference and --reference: one or the other")
        products.append(ONE_PROCESS)
    results = [r for lines in args.lines for r in run_size(args, lines, when, products)]
    print()
    print(report(results))
    if len(products) > 1 or args.runs > 1:
        print()
        print(side_by_side(_compared(results)))
    for result in results:
        for run in result.imports:
            print(f"{result.lines:,} {run.label}: {run.measured.stdout.strip()}")
            each = ", ".join(
                f"{name} {mb:.0f} MB, {run.cpu_by_process.get(name, 0):.1f} CPU-s"
                for name, mb in run.rss_by_process.items()
            )
            print(f"{result.lines:,} {run.label} ({result.checkout}): peak RSS and CPU: {each}")
        print(
            f"{result.lines:,} database after both: {result.database}, "
            f"{result.database_bytes / 1e6:.0f} MB"
        )
        for run in result.imports:
            if run.measured.profile:
                print_profile(
                    f"{result.lines:,} lines, {run.label} import",
                    profile_summary(Path(run.measured.profile)),
                )
    problems = [p for result in results for p in result.problems]
    for problem in problems:
        print(f"PROBLEM: {problem}")
    path = write_json(
        "backfill",
        when,
        {
            "settings": vars(args),
            "checkouts": {p.label: str(p.root) for p in products},
            "target_lines_per_s": TARGET_LINES_PER_S,
            "results": [asdict(result) for result in results],
            "profiles": {
                f"{r.lines}-{run.label}": asdict(profile_summary(Path(run.measured.profile), 40))
                for r in results
                for run in r.imports
                if run.measured.profile
            },
            "problems": problems,
        },
    )
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
