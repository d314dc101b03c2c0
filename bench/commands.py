"""Running cdrecon and other commands from the benchmarks, and measuring one run of a command."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.paths import CDRECON, ROOT
from bench.procfs import LoadAverage, load_average, system_busy_seconds
from bench.pyspy import start_py_spy


def command_output(*argv: str) -> str:
    """stdout+stderr of a short command, or '' if it cannot run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a text file ('' if missing)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def last_line(log: Path) -> str:
    """The last non-empty line of a log: usually the error that ended a process."""
    lines = [line for line in tail(log, 40).splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(empty log)"


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code, None if killed."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return None


def git_revision(root: Path = ROOT) -> str:
    """The git revision of the product in `root` (this checkout unless a reference's), with
    `+dirty` if tracked files outside bench/ have changes (the tree is shared, and the
    product may change between two runs)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + ("+dirty" if dirty else "")


def cdrecon_env(database: Path, **extra: str) -> dict[str, str]:
    """The environment for a cdrecon command on the SQLite file `database`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRECON_")}
    env["CDRECON_DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
    env.update({f"CDRECON_{name.upper()}": value for name, value in extra.items()})
    return env


def upgrade_database(database: Path, cdrecon: str = CDRECON) -> None:
    """`cdrecon db upgrade`: the schema, created by the product itself (`cdrecon`: this
    checkout's command unless a reference's)."""
    subprocess.run(
        [cdrecon, "db", "upgrade"],
        env=cdrecon_env(database),
        cwd=database.parent,
        check=True,
        capture_output=True,
        timeout=300,
    )


@dataclass(slots=True)
class Measured:
    """One command, run to its end: how long, how much memory and CPU, under what load."""

    argv: list[str]
    returncode: int
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float  # user + system
    system_seconds: float  # of which in the kernel (I/O system calls, page faults)
    machine_busy_cpus: float  # CPUs the whole machine kept busy meanwhile (of nproc)
    load_before: LoadAverage
    load_after: LoadAverage
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)
    revision: str = ""  # the product's git revision when the command started
    profile: str | None = None


def run_measured(
    argv: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    profile: Path | None = None,
    root: Path = ROOT,
) -> Measured:
    """Run `argv` to its end; wall time, and the peak RSS and CPU of that process alone
    (os.wait4 gives the rusage of exactly this child). `root`: the checkout it runs."""
    revision = git_revision(root)  # the tree is shared: note which code this run loads
    load_before = load_average()
    busy_before = system_busy_seconds()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=out, stderr=err)
        spy = start_py_spy(proc.pid, profile) if profile is not None else None
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        busy = (system_busy_seconds() - busy_before) / seconds
        if spy is not None:
            spy.wait(timeout=60)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return Measured(
        argv=list(argv),
        returncode=proc.returncode,
        seconds=seconds,
        peak_rss_mb=usage.ru_maxrss / 1024,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        system_seconds=usage.ru_stime,
        machine_busy_cpus=busy,
        load_before=load_before,
        load_after=load_average(),
        stdout=stdout,
        stderr=stderr,
        revision=revision,
        profile=str(profile) if profile is not None and profile.exists() else None,
    )
