"""The ingest benchmark's report: progress lines, medians, the table and the JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.floor import Floor
from bench.ingest.runs import RunResult, Settings


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
        two, two_raw = receivers.get(DERIVED_2PROC), receivers.get("cdrecon-2proc")
        if two and floors:
            floor_rate = statistics.median(f.per_second for f in floors)
            lines.append(
                f"{scenario:<8} {'2proc+CDRs/sqlite':<17} {ratio(two.rate, floor_rate):>11}"
            )
        if two and with_cdrs:
            lines.append(
                f"{scenario:<8} {'+CDRs 2proc/1proc':<17} {ratio(two.rate, with_cdrs.rate):>11}"
                f"{'':>22} {ratio(two.peak_rss_mb, with_cdrs.peak_rss_mb):>11} "
                f"{ratio(two.cpu_seconds, with_cdrs.cpu_seconds):>7}"
            )
        if two_raw and ours:
            lines.append(
                f"{scenario:<8} {'raw 2proc/1proc':<17} {ratio(two_raw.rate, ours.rate):>11}"
            )
        for name in ("cdrecon", "cdrecon-2proc"):
            # This tree against the --reference checkout, raw and to the last CDR.
            for view in (name, f"{name}+CDRs"):
                new, old = receivers.get(view), receivers.get(view.replace(name, f"{name}-ref"))
                if new and old:
                    lines.append(
                        f"{scenario:<8} {f'{view} new/ref':<17} {ratio(new.rate, old.rate):>11}"
                        f"{'':>22} {ratio(new.peak_rss_mb, old.peak_rss_mb):>11} "
                        f"{ratio(new.cpu_seconds, old.cpu_seconds):>7}"
                    )
        lines.append("")
    lines.append(
        "messages/s = delivered / seconds from loggen start to the last message stored "
        "(median of runs);\nCPU-s = receiver CPU in that time; ! = incomplete or an error "
        "in some run; ~ = other processes loaded the machine meanwhile (see above and the JSON);\n"
        "python-lean = bench/lean_receiver.py: frames, parses the header and stores the raw row, "
        "nothing else;\n"
        "cdrecon = raw messages stored; cdrecon+CDRs = until their call events and CDRs are "
        "derived too;\ncdrecon-2proc = the same with CDRECON_DERIVE_PROCESS=true (RSS and CPU of "
        "both processes);\n"
        "sqlite alone = SQLite's own C code writing the rows cdrecon keeps for as many messages"
        "\n(raw, event, CDR; bench/floor.py): nothing received or parsed, no Python in the loop"
    )
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
