"""What the processes and the machine are doing, read from /proc and getrusage."""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and all its live descendants (via /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process (all its threads), 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    # After the ")" the fields start at `state` (field 3): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _status_mb(pid: int, key: str) -> float:
    """A size line of /proc/<pid>/status (`VmRSS`, `VmHWM`) in MiB, 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb(pid: int) -> float:
    """VmRSS (current resident set) of the process in MiB, 0 if it is gone."""
    return _status_mb(pid, "VmRSS")


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of the process in MiB, 0 if it is gone."""
    return _status_mb(pid, "VmHWM")


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux clear_refs 5); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process and its live descendants."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


def tree_peak_rss_mb(pid: int) -> float:
    """Sum of VmHWM of the process and its live descendants, in MiB."""
    return sum(peak_rss_mb(p) for p in process_tree(pid))


TCP_COUNTERS = ("TcpExt:TCPAbortOnClose", "TcpExt:TCPAbortOnData", "Tcp:EstabResets", "Tcp:OutRsts")


def tcp_counters() -> dict[str, int]:
    """Kernel TCP counters of this network namespace that reveal connections reset.

    TCPAbortOnClose counts sockets closed with unread received data: Linux then sends a RST
    instead of a FIN, and the peer's kernel drops whatever it had not yet handed to its
    application.
    """
    values: dict[str, int] = {}
    for table in ("/proc/net/netstat", "/proc/net/snmp"):
        rows = Path(table).read_text().splitlines()
        for names, numbers in zip(rows[::2], rows[1::2], strict=False):
            prefix, *keys = names.split()
            for key, number in zip(keys, numbers.split()[1:], strict=False):
                if f"{prefix}{key}" in TCP_COUNTERS:
                    values[f"{prefix}{key}"] = int(number)
    return values


def system_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy (not idle or waiting for I/O) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def wait_until_quiet(max_wait: float, threshold: float = 0.15, window: float = 1.0) -> float:
    """Wait until the machine is nearly idle (under `threshold` CPU-s busy per `window`), at
    most `max_wait` seconds. Returns the busy CPU fraction of the last window."""
    deadline = time.monotonic() + max_wait
    while True:
        before = system_busy_seconds()
        time.sleep(window)
        busy = (system_busy_seconds() - before) / window
        if busy < threshold or time.monotonic() >= deadline:
            return busy


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_seconds() -> float:
    """CPU seconds of this process (the benchmark driver itself)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


LoadAverage = tuple[float, float, float]


def load_average() -> LoadAverage:
    """The 1, 5 and 15 minute load averages."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def load_text(before: LoadAverage, after: LoadAverage) -> str:
    """`4.1→4.6`: the 1-minute load average before and after a measurement."""
    return f"{before[0]:.1f}→{after[0]:.1f}"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, object]:
    """What the figures were measured on."""
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
