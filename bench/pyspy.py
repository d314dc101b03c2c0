"""Sampling a process with py-spy, and where its time went."""

from __future__ import annotations

import collections
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.paths import PY_SPY

PY_SPY_RATE = 100  # samples per second and thread


def start_py_spy(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """Sample `pid` with py-spy (collapsed stacks, all threads, without pausing it)."""
    return subprocess.Popen(
        [
            *(PY_SPY, "record", "--pid", str(pid), "--format", "raw", "--rate", str(PY_SPY_RATE)),
            *("--nonblocking", "--threads", "--output", str(output)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@dataclass(slots=True)
class Profile:
    """Where a process spent its time, from py-spy samples of all its threads.

    Each entry is (frame, seconds, percent of all samples). py-spy skips a thread while it
    is idle (waiting on a lock, a queue or epoll), so the samples count time a thread was
    running Python or busy in native code; time in SQLite shows as the aiosqlite worker
    thread's own frame (`_connection_worker_thread`). `threads`: samples per thread;
    `product`: inclusive time of cdrecon's own functions (app/, parsers/); `own`: where
    the samples were on top of the stack.
    """

    samples: int
    threads: list[tuple[str, float, float]]
    product: list[tuple[str, float, float]]
    own: list[tuple[str, float, float]]


def profile_summary(path: Path, top: int = 15) -> Profile:
    """The heaviest functions of a py-spy `--format raw --threads` file (collapsed stacks)."""
    threads: collections.Counter[str] = collections.Counter()
    product: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    line_number = re.compile(r":\d+\)$")
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [line_number.sub(")", frame) for frame in stack.split(";")]
        if frames[0].startswith("thread ("):
            threads[re.sub(r"\(\d+\)", "(…)", frames[0])] += count
        for frame in set(frames):
            if "(app/" in frame or "(parsers/" in frame:
                product[frame] += count
        own[frames[-1]] += count

    def entries(counter: collections.Counter[str]) -> list[tuple[str, float, float]]:
        return [
            (frame, round(n / PY_SPY_RATE, 1), round(100 * n / total, 1))
            for frame, n in counter.most_common(top)
        ]

    return Profile(total, entries(threads), entries(product), entries(own))


def print_profile(label: str, profile: Profile) -> None:
    """Print the threads, the heaviest product functions (inclusive) and the top frames."""
    print(f"\nwhere the time goes: {label} ({profile.samples} py-spy samples)")
    for kind, rows in (
        ("per thread", profile.threads),
        ("cdrecon functions, inclusive", profile.product),
        ("on top of the stack (self)", profile.own),
    ):
        print(f"  {kind}:")
        for frame, seconds, share in rows:
            print(f"    {seconds:7.1f} s {share:5.1f}%  {frame}")
