"""The ingest benchmark's report: progress lines, medians, the table and the JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.ingest.runs import RunResult, ScenarioFloor, Settings


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
DERIVED_2PROC = "cdrecon-2proc+CDRs"


def derived_view(r: RunResult) -> RunResult:
    """cdrecon's run seen up to the last CDR derived, as a receiver of its own."""
    assert r.derived_seconds is not None
    return replace(
        r,
        receiver=f"{r.receiver}+CDRs",
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
        f"{s.scenario:<8} {s.receiver + flag:<20} {rate:>11} "
        f"{f'{s.delivered:,}/{s.target:,}':>21} {s.peak_rss_mb:>11.1f} "
        f"{s.cpu_seconds:>7.2f} {s.seconds:>7.2f} {db:>11}"
    )


def floor_rate(floors: list[ScenarioFloor]) -> float:
    """The floor of the run: the median of every time it was measured, in every scenario."""
    return statistics.median(f.floor.per_second for f in floors) if floors else 0.0


def floor_row(scenario: str, floors: list[ScenarioFloor]) -> list[str]:
    """The SQLite-alone row of a scenario: the run's median (the floor receives nothing, so
    every scenario's measurements are of the same thing)."""
    if not floors:
        return []
    measured = [f.floor for f in floors]
    return [
        f"{scenario:<8} {'sqlite alone':<20} {floor_rate(floors):>11,.0f} {'(rows only)':>21} "
        f"{statistics.median(f.measured.peak_rss_mb for f in measured):>11.1f} "
        f"{statistics.median(f.cpu_seconds for f in measured):>7.2f} "
        f"{statistics.median(f.seconds for f in measured):>7.2f}"
    ]


def ratio_table(by_scenario: dict[str, dict[str, Summary]], floors: list[ScenarioFloor]) -> str:
    """The issue's ratios, one row each, one column per scenario: CDR-ready and raw against
    the floor and against syslog-ng's kv-parser into SQLite, and TLS against plain TCP."""
    scenarios = list(by_scenario)
    floor = floor_rate(floors)

    def rate(scenario: str, receiver: str) -> float:
        found = by_scenario.get(scenario, {}).get(receiver)
        return found.rate if found and found.delivered else 0.0

    rows: list[tuple[str, list[str]]] = []
    for name in ("cdrecon", "cdrecon-2proc"):
        ready = f"{name}+CDRs"
        rows += [
            (f"{name} CDR-ready / sqlite alone", [ratio(rate(s, ready), floor) for s in scenarios]),
            (
                f"{name} CDR-ready / syslog-ng-sql",
                [ratio(rate(s, ready), rate(s, "syslog-ng-sql")) for s in scenarios],
            ),
            (f"{name} raw / sqlite alone", [ratio(rate(s, name), floor) for s in scenarios]),
        ]
    rows.append(
        (
            "syslog-ng-sql / sqlite alone",
            [ratio(rate(s, "syslog-ng-sql"), floor) for s in scenarios],
        )
    )
    for name in ("cdrecon", "cdrecon-2proc", "syslog-ng", "syslog-ng-sql"):
        # Each TLS scenario against plain TCP with as many connections.
        values = [
            ratio(rate(s, name), rate(s.replace("TLS", "TCP"), name)) if s.startswith("TLS") else ""
            for s in scenarios
        ]
        stored = "raw " if name.startswith("cdrecon") else ""
        rows.append((f"{name} {stored}TLS / TCP", values))
    rows = [(label, values) for label, values in rows if any(v not in ("", "-") for v in values)]
    if not rows:
        return ""
    width = max(len(label) for label, _ in rows)
    head = f"{'ratio (messages/s)':<{width}} " + " ".join(f"{s:>8}" for s in scenarios)
    lines = [head, "-" * len(head)]
    lines += [f"{label:<{width}} " + " ".join(f"{v:>8}" for v in values) for label, values in rows]
    if floors:
        spread = sorted(f.floor.per_second for f in floors)
        lines.append(
            f"sqlite alone: median {floor:,.0f} msg/s of {len(floors)} measurement(s), "
            f"{spread[0]:,.0f}-{spread[-1]:,.0f}"
        )
    return "\n".join(lines)


def table(summaries: list[Summary], floors: list[ScenarioFloor] | None = None) -> str:
    """Plain-text table: each scenario's receivers, the cdrecon/syslog-ng ratio, and SQLite
    alone writing the same rows; then the table of the issue's ratios."""
    floors = floors or []
    head = (
        f"{'scenario':<8} {'receiver':<20} {'messages/s':>11} {'delivered':>21} "
        f"{'peak RSS MB':>11} {'CPU-s':>7} {'time s':>7} {'db rows':>11}"
    )
    lines = [head, "-" * len(head)]
    by_scenario: dict[str, dict[str, Summary]] = {}
    for s in summaries:
        by_scenario.setdefault(s.scenario, {})[s.receiver] = s
    for scenario, receivers in by_scenario.items():
        lines.extend(table_row(s) for s in receivers.values())
        lines.extend(floor_row(scenario, floors))
        ours, ref = receivers.get("cdrecon"), receivers.get("syslog-ng")
        if ours and ref:
            lines.append(
                f"{scenario:<8} {'cdrecon/syslog-ng':<20} {ratio(ours.rate, ref.rate):>11} "
                f"{'':>21} {ratio(ours.peak_rss_mb, ref.peak_rss_mb):>11} "
                f"{ratio(ours.cpu_seconds, ref.cpu_seconds):>7}"
            )
        lean = receivers.get("python-lean")
        if lean and ref:
            lines.append(
                f"{scenario:<8} {'lean/syslog-ng':<20} {ratio(lean.rate, ref.rate):>11} "
                f"{'':>21} {ratio(lean.peak_rss_mb, ref.peak_rss_mb):>11} "
                f"{ratio(lean.cpu_seconds, ref.cpu_seconds):>7}"
            )
        with_cdrs = receivers.get(DERIVED)
        if with_cdrs and ref:
            lines.append(
                f"{scenario:<8} {'+CDRs/syslog-ng':<20} {ratio(with_cdrs.rate, ref.rate):>11}"
            )
        two, two_raw = receivers.get(DERIVED_2PROC), receivers.get("cdrecon-2proc")
        if two and with_cdrs:
            lines.append(
                f"{scenario:<8} {'+CDRs 2proc/1proc':<20} {ratio(two.rate, with_cdrs.rate):>11}"
                f"{'':>22} {ratio(two.peak_rss_mb, with_cdrs.peak_rss_mb):>11} "
                f"{ratio(two.cpu_seconds, with_cdrs.cpu_seconds):>7}"
            )
        if two_raw and ours:
            lines.append(
                f"{scenario:<8} {'raw 2proc/1proc':<20} {ratio(two_raw.rate, ours.rate):>11}"
            )
        for name in ("cdrecon", "cdrecon-2proc"):
            # This tree against the --reference checkout, raw and to the last CDR.
            for view in (name, f"{name}+CDRs"):
                new, old = receivers.get(view), receivers.get(view.replace(name, f"{name}-ref"))
                if new and old:
                    lines.append(
                        f"{scenario:<8} {f'{view} new/ref':<20} {ratio(new.rate, old.rate):>11}"
                        f"{'':>22} {ratio(new.peak_rss_mb, old.peak_rss_mb):>11} "
                        f"{ratio(new.cpu_seconds, old.cpu_seconds):>7}"
                    )
        lines.append("")
    lines.append(
        "messages/s = delivered / seconds from loggen start to the last message stored "
        "(median of runs);\nCPU-s = receiver CPU in that time; ! = incomplete or an error "
        "in some run; ~ = other processes loaded the machine meanwhile (see above and the JSON);\n"
        "syslog-ng = into a file; syslog-ng-sql = its kv-parser into sql() SQLite, a row of "
        "parsed Pexip fields and the frame per message;\n"
        "python-lean = bench/lean_receiver.py: frames, parses the header and stores the raw row, "
        "nothing else;\n"
        "cdrecon = raw messages stored; cdrecon+CDRs = until their call events and CDRs are "
        "derived too;\ncdrecon-2proc = the same with CDRECON_DERIVE_PROCESS=true (RSS and CPU of "
        "both processes);\n"
        "sqlite alone = SQLite's own C code writing the rows cdrecon keeps for as many messages"
        "\n(raw, event, CDR; bench/floor.py): nothing received or parsed, no Python in the loop; "
        "timed once per scenario and run, the median of all shown"
    )
    ratios = ratio_table(by_scenario, floors)
    if ratios:
        lines += ["", ratios]
    return "\n".join(lines)


def lines_text(settings: Settings) -> str:
    mix = (
        f"; one call event in {settings.event_every}, the rest support-log lines"
        if settings.event_every > 1
        else ""
    )
    if settings.distinct:
        return f"{settings.distinct:,} distinct lines looped{mix}"
    return f"every one distinct, one loggen process per connection{mix}"


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
    floors: list[ScenarioFloor],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        **context,
        "settings": {**asdict(settings), "scenarios": [s.name for s in settings.scenarios]},
        "messages_file": facts,
        "summary": [asdict(s) for s in summarize(results)],
        "results": [asdict(r) for r in results],
        "sqlite_alone": [
            {
                "scenario": f.scenario,
                "run": f.run,
                "messages": f.floor.messages,
                "per_second": f.floor.per_second,
                "seconds": f.floor.seconds,
                "cpu_seconds": f.floor.cpu_seconds,
                "process": asdict(f.floor.measured),
            }
            for f in floors
        ],
        "sqlite_alone_median_per_second": floor_rate(floors),
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
