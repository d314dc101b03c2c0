"""One measurement: send a stream to a started receiver, poll it, and account for the CPU."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.ingest.receivers import Receiver
from bench.ingest.runs import RunResult, Scenario, Settings, add_error
from bench.ingest.senders import Stream, loggen_commands, start_senders, stop_senders
from bench.procfs import (
    children_cpu_seconds,
    self_cpu_seconds,
    system_busy_seconds,
    tcp_counters,
    tree_cpu_seconds,
    tree_peak_rss_mb,
)


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
