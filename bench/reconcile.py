"""Reconciliation benchmark: `cdrecon reconcile` over N syslog CDRs and N MN records.

What it measures
    For each N (`--sizes`, default 100k, 300k, 1M), a fresh SQLite database holds:

    * N closed participant CDRs (`cdrs`) spread over 30 days, as the product derives them
      from syslog: id (Participant-id), call_uuid, conference, display name and aliases,
      protocol, direction, nodes, start/end in microseconds, floored duration, state
      'closed', event_count 2;
    * the Management Node's records of the same calls (`mn_participants`, same ids, start
      and end each shifted by less than 1 s, duration floored again, `record` '{}'), except:
      5% of them lost in one contiguous run by end time (the MN writes a record when the
      call ends, so a restore loses one run of end times), 0.1% with a duration 600 s off
      (mismatched), and a few MN-only records (no CDR) at the start of the window.

    Then `cdrecon reconcile --from … --until …` runs over a window holding all of them, and
    the figures are: wall time of the whole command (start-up, loading both sides, matching,
    writing N items, commit, exit), its peak RSS (ru_maxrss of that child, via os.wait4), its
    CPU seconds, and the load average before and after. Its JSON summary is checked: the
    counts add up to N plus the MN-only records, matched/mismatched/missing_in_mn/
    missing_in_syslog are exactly as planted, and there is one gap holding exactly the lost
    records, bounded by their first and last end time.

    The growth ratio is (seconds per record at the largest N) / (seconds per record at the
    smallest): n log n allows log(N_max)/log(N_min) (1.2 for 1M against 100k). Targets: 1M
    in under 30 s and under 1 GB.

How
    `cdrecon db upgrade` creates the schema; the rows are then inserted with sqlite3
    executemany in chunks (not timed) and the WAL is checkpointed, so that the measured
    command starts from a settled file. `--py-spy` samples the reconcile with py-spy.

    With `--reference DIR --runs R` (bench/reference.py), each size is planted once for this
    tree and once for the reference checkout (each schema made by its own `cdrecon db
    upgrade`, the same calls in both), and each run reconciles a fresh copy of each, the two
    in turn; a table then gives the medians side by side.

Run:  .venv/bin/python -m bench.reconcile [--sizes 100000,300000,1000000] [--py-spy]
          [--reference DIR --runs R]
Writes bench/out/reconcile-<UTC timestamp>.json. The rows are planted by bench/planted.py, which
bench.export uses too.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.commands import Measured, cdrecon_env, run_measured, upgrade_database
from bench.options import add_profile_options, benchmark_parser, parse_sizes
from bench.paths import OUT_DIR, ROOT
from bench.planted import LOST_FRACTION, MISMATCHED_FRACTION, MN_ONLY, Plan, iso, plan_calls, plant
from bench.procfs import load_average, load_text, machine_info
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

TARGET_SECONDS_1M = 30.0
TARGET_RSS_MB = 1024.0


# --------------------------------------------------------------------------------------------
# The measurement
# --------------------------------------------------------------------------------------------


def expected_counts(plan: Plan) -> dict[str, int]:
    """The counts a correct run reports for the plan."""
    lost, mismatched = len(plan.lost), len(plan.mismatched)
    return {
        "matched": plan.n - lost - mismatched,
        "missing_in_mn": lost,
        "missing_in_syslog": plan.mn_only,
        "mismatched": mismatched,
        "outside_retention": 0,
        "open": 0,
        "excluded": 0,
    }


def check_summary(plan: Plan, summary: dict[str, Any] | None) -> list[str]:
    """What is wrong with the run's JSON summary."""
    if summary is None:
        return ["no JSON summary on stdout"]
    problems = []
    counts = summary.get("counts", {})
    if sum(counts.values()) != plan.n + plan.mn_only:
        problems.append(f"counts add up to {sum(counts.values())}, not {plan.n + plan.mn_only}")
    for key, value in expected_counts(plan).items():
        if counts.get(key) != value:
            problems.append(f"{key} = {counts.get(key)}, expected {value}")
    gaps = summary.get("gaps", [])
    if len(gaps) != 1:
        problems.append(f"{len(gaps)} gaps, expected 1")
    else:
        low, high = plan.gap_bounds()
        gap = gaps[0]
        if gap.get("count") != len(plan.lost):
            problems.append(f"the gap holds {gap.get('count')}, expected {len(plan.lost)}")
        if (gap.get("from"), gap.get("until")) != (iso(low), iso(high)):
            problems.append(
                f"gap {gap.get('from')}..{gap.get('until')}, expected {iso(low)}..{iso(high)}"
            )
    inputs = summary.get("inputs", {})
    if inputs.get("cdrs") != plan.n:
        problems.append(f"inputs.cdrs = {inputs.get('cdrs')}, expected {plan.n}")
    return problems


def parse_json(stdout: str) -> dict[str, Any] | None:
    """The JSON object the command printed, if any."""
    start = stdout.find("{")
    if start < 0:
        return None
    try:
        value = json.loads(stdout[start:])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(slots=True)
class SizeResult:
    """One reconciliation of N records."""

    n: int
    checkout: str  # Checkout.label
    run: int  # 1-based
    setup_seconds: float
    database_mb: float
    measured: Measured
    summary: dict[str, Any] | None
    expected: dict[str, int]
    problems: list[str]

    @property
    def us_per_record(self) -> float:
        """Wall microseconds per CDR."""
        return self.measured.seconds / self.n * 1_000_000


def run_size(
    args: argparse.Namespace, n: int, when: str, products: Sequence[Checkout]
) -> list[SizeResult]:
    """Plant N records in a fresh database per checkout, and time `args.runs` reconciles
    over a fresh copy of each, the checkouts in turn."""
    workdir = Path(tempfile.mkdtemp(prefix=f"cdrecon-reconcile-{n}-"))
    results = []
    try:
        plan = plan_calls(n, args.seed, lost=LOST_FRACTION, mismatched=MISMATCHED_FRACTION)
        plan.mn_only = MN_ONLY
        planted: dict[str, tuple[Path, float, float]] = {}
        for product in products:
            database = workdir / f"{products.index(product)}-planted.db"
            upgrade_database(database, product.cdrecon)
            setup = plant(database, plan, args.seed, with_mn=True)
            size_mb = database.stat().st_size / 1e6
            print(f"[{n:,}] {product.label}: planted in {setup:.0f} s ({size_mb:.0f} MB)")
            planted[product.label] = database, setup, size_mb
        low, high = plan.window
        for run in range(args.runs):
            for product in in_turn(products, run):
                source, setup, size_mb = planted[product.label]
                database = workdir / "bench.db"
                _copy_database(source, database)
                name = f"{n}" if product is THIS_TREE else f"{n}-reference"
                profile = OUT_DIR / f"reconcile-{when}-{name}.pyspy.txt" if args.py_spy else None
                measured = run_measured(
                    [product.cdrecon, "reconcile", *_window(product, low, high)],
                    cdrecon_env(database),
                    workdir,
                    profile,
                    product.root,
                )
                summary = parse_json(measured.stdout)
                problems = check_summary(plan, summary)
                if measured.returncode != 0:
                    problems.append(f"exit {measured.returncode}: {measured.stderr[-2000:]}")
                print(
                    f"[{n:,}] {product.label}, run {run + 1}: {measured.seconds:.1f} s, "
                    f"{measured.cpu_seconds:.2f} CPU-s, peak RSS {measured.peak_rss_mb:.0f} MB, "
                    f"load {load_text(measured.load_before, measured.load_after)}"
                    + (f", PROBLEMS: {problems}" if problems else ""),
                    flush=True,
                )
                results.append(
                    SizeResult(
                        *(n, product.label, run + 1, setup, size_mb, measured, summary),
                        *(expected_counts(plan), problems),
                    )
                )
        return results
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _window(product: Checkout, low: int, high: int) -> list[str]:
    """The reconcile options for [low, high): `--force`, since the planted history has no
    "as of", where the checkout knows history coverage at all."""
    force = ["--force"] if product.takes("reconcile", "--force") else []
    return ["--from", iso(low), "--until", iso(high), *force]


def _copy_database(source: Path, target: Path) -> None:
    """A fresh copy of a planted (checkpointed) database, so every run starts the same."""
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, target)


def fixed_cost(product: Checkout = THIS_TREE) -> Measured:
    """`cdrecon reconcile` on an empty database: start-up, migration check, exit."""
    workdir = Path(tempfile.mkdtemp(prefix="cdrecon-reconcile-empty-"))
    try:
        database = workdir / "bench.db"
        upgrade_database(database, product.cdrecon)
        low, high = Plan(0, [], []).window
        return run_measured(
            [product.cdrecon, "reconcile", *_window(product, low, high)],
            cdrecon_env(database),
            workdir,
            root=product.root,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def growth(results: Sequence[SizeResult], empty: Measured) -> dict[str, float] | None:
    """Time (and CPU) per record at the largest N over the smallest, whole and less the
    empty run's fixed cost, next to what n log n allows."""
    results = [r for r in results if r.checkout == THIS_TREE.label and r.run == 1]
    if len(results) < 2:
        return None
    small, large = min(results, key=lambda r: r.n), max(results, key=lambda r: r.n)

    def ratio(seconds: Callable[[Measured], float], fixed: float) -> float:
        return ((seconds(large.measured) - fixed) / large.n) / (
            (seconds(small.measured) - fixed) / small.n
        )

    def wall(m: Measured) -> float:
        return m.seconds

    def cpu(m: Measured) -> float:
        return m.cpu_seconds

    return {
        "from_n": small.n,
        "to_n": large.n,
        "wall_per_record_ratio": ratio(wall, 0.0),
        "cpu_per_record_ratio": ratio(cpu, 0.0),
        "wall_per_record_ratio_less_fixed": ratio(wall, empty.seconds),
        "cpu_per_record_ratio_less_fixed": ratio(cpu, empty.cpu_seconds),
        "n_log_n_allows": math.log(large.n) / math.log(small.n),
    }


def _compared(
    results: Sequence[SizeResult], empties: dict[str, Measured]
) -> list[tuple[str, dict[str, list[Figures]]]]:
    """The side-by-side rows: the empty database, then each N."""

    def figures(m: Measured) -> Figures:
        return Figures(m.seconds, m.cpu_seconds, m.peak_rss_mb)

    rows = [("empty database", {k: [figures(m)] for k, m in empties.items()})]
    for n in dict.fromkeys(r.n for r in results):
        runs: dict[str, list[Figures]] = {}
        for r in results:
            if r.n == n:
                runs.setdefault(r.checkout, []).append(figures(r.measured))
        rows.append((f"reconcile {n:,}", runs))
    return rows


def report(results: Sequence[SizeResult]) -> str:
    """The figures table."""
    rows = []
    for r in results:
        m, counts = r.measured, (r.summary or {}).get("counts", {})
        gaps = (r.summary or {}).get("gaps", [])
        rows.append(
            (
                f"{r.n:,}",
                r.checkout,
                r.run,
                f"{m.seconds:.1f}",
                f"{r.us_per_record:.1f}",
                f"{m.cpu_seconds:.1f}",
                f"{m.peak_rss_mb:.0f}",
                f"{m.machine_busy_cpus:.2f}",
                load_text(m.load_before, m.load_after),
                f"{counts.get('matched', '?')}/{counts.get('mismatched', '?')}/"
                f"{counts.get('missing_in_mn', '?')}/{counts.get('missing_in_syslog', '?')}",
                f"{len(gaps)} ({gaps[0]['count'] if gaps else 0})",
                "ok" if not r.problems else "FAIL",
                m.revision,
            )
        )
    headers = (
        "N",
        "checkout",
        "run",
        "wall s",
        "µs/record",
        "CPU-s",
        "peak RSS MB",
        "busy CPUs",
        "load 1m",
        "matched/mism/miss_mn/miss_sl",
        "gaps (count)",
        "checks",
        "revision",
    )
    return table(headers, rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line options."""
    parser = benchmark_parser(__doc__)
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default="100000,300000,1000000",
        help="comma-separated N (CDRs per run)",
    )
    parser.add_argument("--seed", type=int, default=5424, help="seed of the planted data")
    add_profile_options(parser, "profile each reconcile")
    add_reference_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every size, print the table, write the JSON; 0 only if every check passed."""
    args = parse_args(argv)
    when = stamp()
    print(f"machine: {machine_info()}; load average {load_average()}", flush=True)
    products = checkouts(args)
    empties = {product.label: fixed_cost(product) for product in products}
    for label, measured in empties.items():
        print(
            f"[empty database] {label}: {measured.seconds:.1f} s, {measured.cpu_seconds:.2f} "
            f"CPU-s, peak RSS {measured.peak_rss_mb:.0f} MB, "
            f"load {load_text(measured.load_before, measured.load_after)}",
            flush=True,
        )
    empty = empties[THIS_TREE.label]
    results = [r for n in args.sizes for r in run_size(args, n, when, products)]
    print()
    print(report(results))
    if len(products) > 1 or args.runs > 1:
        print()
        print(side_by_side(_compared(results, empties)))
    ratio = growth(results, empty)
    if ratio is not None:
        print(
            f"\ngrowth {ratio['from_n']:,} → {ratio['to_n']:,} per record: wall x"
            f"{ratio['wall_per_record_ratio']:.2f}, CPU x{ratio['cpu_per_record_ratio']:.2f}; "
            f"less the empty run: wall x{ratio['wall_per_record_ratio_less_fixed']:.2f}, CPU x"
            f"{ratio['cpu_per_record_ratio_less_fixed']:.2f} "
            f"(n log n allows x{ratio['n_log_n_allows']:.2f})"
        )
    for r in results:
        if r.n >= 1_000_000 and r.checkout == THIS_TREE.label:
            verdict = (
                "meets"
                if r.measured.seconds < TARGET_SECONDS_1M and r.measured.peak_rss_mb < TARGET_RSS_MB
                else "MISSES"
            )
            print(
                f"{r.n:,}: {verdict} the target (< {TARGET_SECONDS_1M:.0f} s and "
                f"< {TARGET_RSS_MB:.0f} MB)"
            )
        if r.measured.profile:
            print_profile(f"reconcile of {r.n:,}", profile_summary(Path(r.measured.profile)))
    problems = [f"{r.n}: {p}" for r in results for p in r.problems]
    for problem in problems:
        print(f"PROBLEM: {problem}")
    path = write_json(
        "reconcile",
        when,
        {
            "settings": vars(args),
            "targets": {"seconds_at_1m": TARGET_SECONDS_1M, "peak_rss_mb": TARGET_RSS_MB},
            "empty_database": asdict(empty),
            "empty_database_by_checkout": {k: asdict(v) for k, v in empties.items()},
            "checkouts": {p.label: str(p.root) for p in products},
            "results": [asdict(r) for r in results],
            "growth": ratio,
            "profiles": {
                str(r.n): asdict(profile_summary(Path(r.measured.profile), 40))
                for r in results
                if r.measured.profile
            },
            "problems": problems,
        },
    )
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
