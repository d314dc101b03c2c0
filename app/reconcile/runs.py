"""A run's state, and which process runs it: enough to tell a run in progress from one whose
process is gone."""

from __future__ import annotations

import os
import socket
from enum import StrEnum
from pathlib import Path


class RunState(StrEnum):
    """Where a run is: only a done run is shown or used (its summary and items complete)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # `failure` says why; its items are being or have been discarded


def _started(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (Linux's /proc); None where
    that cannot be read (no such process, or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces; the start time is
    # field 22, the 20th after it.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def this_process() -> str:
    """This process as a run records it: host, pid and start time. The start time tells a
    later process that reused the pid from the one that ran the run."""
    pid = os.getpid()
    return f"{socket.gethostname()} {pid} {_started(pid) or '-'}"


def has_ended(process: str | None) -> bool:
    """Whether the process a run records (`this_process` of its runner) is known to be gone:
    on this host, no process has that pid, or one started at another time has it. A process
    on another host, or one recorded unreadably, cannot be judged here: False."""
    host, _, rest = (process or "").partition(" ")
    pid_text, _, started = rest.partition(" ")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    now = _started(pid)
    if now is not None:
        return started not in ("-", now)
    if Path("/proc/self/stat").exists():  # /proc works, and has no such process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
