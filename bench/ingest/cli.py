"""The ingest benchmark's command line and the order of its runs (`python -m bench.ingest`)."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench import ingest
from bench.commands import command_output, git_revision
from bench.floor import Floor, measure_floor
from bench.ingest.measure import run_one
from bench.ingest.receivers import make_receiver
from bench.ingest.report import header, one_line, summarize, table, write_json
from bench.ingest.runs import RunResult, Scenario, ScenarioFloor, Settings
from bench.ingest.senders import StreamMaker, ensure_loggen
from bench.loopback import make_tls_files
from bench.options import add_no_floor, benchmark_parser
from bench.paths import OUT_DIR, ROOT
from bench.procfs import machine_info, wait_until_quiet

DEFAULT_RECEIVERS = ("syslog-ng", "syslog-ng-sql", "python-lean", "cdrecon", "cdrecon-2proc")


def versions(reference: Path | None = None) -> dict[str, str]:
    """syslog-ng, loggen (same Debian package) and cdrecon versions (and the reference's)."""
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
        "cdrecon": f"{cdrecon} (git {git_revision()})"
        + ("" if reference is None else f"; -ref: git {git_revision(reference)}"),
    }


def run_floor(settings: Settings, scenario: Scenario, run: int) -> Floor:
    """SQLite alone writing the design's rows for the same number of messages: nothing is
    received, so it is the same in every scenario; it is timed in each, in turn with the
    receivers, and the report takes the median of all."""
    wait_until_quiet(settings.quiet_wait)
    print(f"  {scenario.name:<7} {'sqlite alone':<13} run {run}: ", end="", flush=True)
    floor = measure_floor(settings.messages, backfill=False, event_every=settings.event_every)
    print(floor.text(), flush=True)
    return floor


def run_all(
    settings: Settings, stamp: str
) -> tuple[list[RunResult], list[ScenarioFloor], dict[str, object]]:
    """Every scenario x (floor and receivers) x run; returns the results, the floors and the
    message file facts."""
    results: list[RunResult] = []
    floors: list[ScenarioFloor] = []
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
                if settings.floor:
                    floor = run_floor(settings, scenario, run)
                    floors.append(ScenarioFloor(scenario.name, run, floor))
                for name in settings.receivers:
                    tag = f"{scenario.transport}{scenario.connections}-{name}-run{run}"
                    workdir = tmpdir / tag
                    workdir.mkdir()
                    receiver = make_receiver(name, workdir, logroot / tag, tls, settings)
                    result = RunResult(scenario.name, name, run, target)
                    busy = wait_until_quiet(settings.quiet_wait)
                    result.extra["machine_busy_before"] = round(busy, 2)
                    print(f"  {scenario.name:<7} {name:<13} run {run}: ", end="", flush=True)
                    run_one(receiver, scenario, stream, settings, result)
                    print(one_line(result), flush=True)
                    results.append(result)
                    shutil.rmtree(workdir, ignore_errors=True)
        facts = streams.facts()
    return results, floors, facts


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = benchmark_parser(ingest.__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000, help="N per scenario")
    parser.add_argument("--size", type=int, default=500, help="approximate frame bytes")
    parser.add_argument(
        "--distinct",
        type=int,
        default=0,
        help="0 (default): every message distinct, one loggen per connection; "
        "K: loggen loops over K distinct lines",
    )
    parser.add_argument(
        "--event-every",
        type=int,
        default=1,
        help="1 (default): every line a call event; K: one in K, the rest support-log lines",
    )
    parser.add_argument("--connections", default="1,4", help="TCP connection counts")
    parser.add_argument("--tls-connections", type=int, default=1)
    parser.add_argument("--skip-tls", action="store_true")
    parser.add_argument(
        "--receivers",
        default=",".join(DEFAULT_RECEIVERS),
        help=f"comma-separated (default {','.join(DEFAULT_RECEIVERS)}): "
        "syslog-ng: into a file; syslog-ng-sql: kv-parser into sql() SQLite; "
        "python-lean: bench/lean_receiver.py, the leanest CPython raw store; "
        "cdrecon: CDRECON_DERIVE_PROCESS=false; cdrecon-2proc: =true (the default of "
        "`cdrecon serve`); cdrecon-ref, cdrecon-2proc-ref: the same from the --reference "
        "checkout",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="another checkout of cdrecon with its own .venv, for the -ref receivers",
    )
    add_no_floor(parser)
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="repeat each measurement (the floor too, once per scenario and run)",
    )
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
    known = {"syslog-ng", "syslog-ng-sql", "python-lean", "cdrecon", "cdrecon-2proc"}
    if args.reference is not None:
        if not (args.reference / ".venv" / "bin" / "cdrecon").exists():
            parser.error(f"--reference {args.reference}: no .venv/bin/cdrecon there")
        known |= {"cdrecon-ref", "cdrecon-2proc-ref"}
    unknown = set(receivers) - known
    if unknown or not receivers:
        parser.error(f"unknown receivers: {sorted(unknown)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
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
        reference=None if args.reference is None else args.reference.resolve(),
        floor=not args.no_floor,
        event_every=max(args.event_every, 1),
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    ensure_loggen(settings.receivers)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    machine, vers = machine_info(), versions(settings.reference)
    print(header(settings, machine, vers), flush=True)
    results, floors, facts = run_all(settings, stamp)
    print(f"\nmessages: mean frame {facts['mean_frame_bytes']} B; e.g. {facts['sample_frame']}\n")
    print(table(summarize(results), floors))
    out = OUT_DIR / f"ingest-{stamp}.json"
    context: dict[str, object] = {"started": stamp, "machine": machine, "versions": vers}
    write_json(out, settings, results, facts, context, floors)
    print(f"\nJSON: {out.relative_to(ROOT)}; logs: bench/out/ingest-{stamp}-logs/")
    return 0 if all(r.complete and not r.error for r in results) else 1
