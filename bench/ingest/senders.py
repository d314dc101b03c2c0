"""The sender: loggen, and the frame files it sends."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.commands import command_output, terminate
from bench.frames import pexip_frames, write_frames
from bench.ingest.runs import RunResult, Scenario, Settings, add_error
from bench.paths import BENCH_DIR

SETUP_SCRIPT = BENCH_DIR / "setup-syslog-ng.sh"

LOGGEN_RATE = 1_000_000_000  # msg/s per connection: far above anything reached, i.e. unthrottled


@dataclass(frozen=True, slots=True)
class Stream:
    """What loggen sends in one scenario: one loggen process per file."""

    files: tuple[Path, ...]
    per_connection: int  # messages each connection sends
    connections_per_file: int  # loggen --active-connections
    loop: bool  # loop over a few distinct lines instead of sending each line once


class StreamMaker:
    """Writes the frame files: by default N distinct frames, split between the connections."""

    def __init__(self, directory: Path, settings: Settings) -> None:
        self.directory = directory
        self.settings = settings
        self._master: Path | None = None
        self._splits: dict[int, tuple[Path, ...]] = {}
        self.frames = 0
        self.bytes = 0

    def master(self) -> Path:
        """The file with all distinct frames (N of them, or --distinct K to loop over)."""
        if self._master is None:
            count = self.settings.distinct or self.settings.messages
            self._master = self.directory / "pexip-frames.txt"
            frames = pexip_frames(self.settings.size, event_every=self.settings.event_every)
            self.frames, self.bytes = write_frames([self._master], count, frames)
        return self._master

    def split(self, parts: int, per_part: int) -> tuple[Path, ...]:
        """The master's first parts x per_part lines, cut into `parts` consecutive files."""
        if parts == 1:
            return (self.master(),)
        if parts not in self._splits:
            paths = tuple(self.directory / f"pexip-frames-{parts}-{i}.txt" for i in range(parts))
            with self.master().open("rb") as lines:
                for path in paths:
                    path.write_bytes(b"".join(itertools.islice(lines, per_part)))
            self._splits[parts] = paths
        return self._splits[parts]

    def for_scenario(self, scenario: Scenario) -> Stream:
        per_connection = self.settings.messages // scenario.connections
        if self.settings.distinct:
            return Stream((self.master(),), per_connection, scenario.connections, loop=True)
        files = self.split(scenario.connections, per_connection)
        return Stream(files, per_connection, 1, loop=False)

    def facts(self) -> dict[str, object]:
        with self.master().open("rb") as lines:
            sample = lines.readline().decode().rstrip("\n")
        return {
            "distinct_frames": self.frames,
            "mean_frame_bytes": round(self.bytes / max(self.frames, 1), 1),
            "looped": bool(self.settings.distinct),
            "sample_frame": sample,
        }


def loggen_commands(scenario: Scenario, port: int, stream: Stream) -> list[list[str]]:
    """One loggen per frame file, sending its framed lines as they are."""
    transport = ["--use-ssl"] if scenario.transport == "tls" else ["--inet", "--stream"]
    return [
        [
            "loggen",
            *transport,
            f"--rate={LOGGEN_RATE}",
            "--permanent",
            f"--number={stream.per_connection}",
            f"--active-connections={stream.connections_per_file}",
            "--quiet",
            f"--read-file={path}",
            "--dont-parse",
            *(["--loop-reading"] if stream.loop else []),
            "127.0.0.1",
            str(port),
        ]
        for path in stream.files
    ]


def loggen_count(stderr: str) -> int | None:
    """The message count loggen reports on exit."""
    found = re.findall(r"count\s*=\s*(\d+)", stderr)
    return int(found[-1]) if found else None


def start_senders(
    commands: list[list[str]], logdir: Path
) -> tuple[float, list[subprocess.Popen[bytes]], list[Path]]:
    """Start the loggen processes together; return the start time, processes and logs."""
    logs = [logdir / f"loggen-{i}.log" for i in range(len(commands))]
    handles = [log.open("wb") for log in logs]
    started = time.perf_counter()
    try:
        senders = [
            subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            for argv, out in zip(commands, handles, strict=True)
        ]
    finally:
        for out in handles:
            out.close()
    return started, senders, logs


def stop_senders(
    senders: list[subprocess.Popen[bytes]], logs: list[Path], result: RunResult
) -> None:
    """Let each loggen finish (they should have), or end it; record what they say they sent."""
    counts: list[int] = []
    times: list[float] = []
    for sender, log in zip(senders, logs, strict=True):
        try:
            sender.wait(timeout=10)
        except subprocess.TimeoutExpired:
            terminate(sender, timeout=5)
            add_error(result, "loggen still running at the end")
        text = log.read_text(errors="replace")
        counts.append(loggen_count(text) or 0)
        found = re.findall(r"time\s*=\s*([0-9.e+-]+)", text)
        times.extend(float(t) for t in found[-1:])
    result.sender_exit = max((abs(p.returncode or 0) for p in senders), default=0)
    result.sender_reported_count = sum(counts)
    result.sender_reported_seconds = max(times, default=None)


# Debian's packages for the syslog-ng-sql receiver: the sql() destination and libdbi's
# SQLite 3 driver (bench/setup-syslog-ng.sh installs them).
SQL_PACKAGES = ("syslog-ng-mod-sql", "libdbd-sqlite3")


def missing(receivers: tuple[str, ...]) -> list[str]:
    """What bench/setup-syslog-ng.sh would install for these receivers."""
    gone = [tool for tool in ("loggen", "syslog-ng") if not shutil.which(tool)]
    if "syslog-ng-sql" in receivers:
        status = command_output("dpkg-query", "-W", "-f", "${Package} ${Status}\n", *SQL_PACKAGES)
        installed = {line.split()[0] for line in status.splitlines() if "ok installed" in line}
        gone += [package for package in SQL_PACKAGES if package not in installed]
    return gone


def ensure_loggen(receivers: tuple[str, ...] = ()) -> None:
    """Run bench/setup-syslog-ng.sh if loggen, syslog-ng or, for syslog-ng-sql, its SQL
    destination and SQLite driver are missing."""
    gone = missing(receivers)
    if not gone:
        return
    print(f"missing {', '.join(gone)}: running bench/setup-syslog-ng.sh", flush=True)
    subprocess.run(["bash", str(SETUP_SCRIPT)], check=True, timeout=900)
    if gone := missing(receivers):
        sys.exit(f"{', '.join(gone)} still missing after bench/setup-syslog-ng.sh")
