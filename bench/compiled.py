"""mypyc benchmark: the per-message hot path, pure Python against compiled by mypyc, in one run.

What it measures
    The functions a profile of the writer (`cdrecon serve`) and of the deriving process
    (app/cdr/worker.py) spends each message in (issue 15), on the ingest benchmark's realistic
    mix (`bench.frames.pexip_frames(500, event_every=10)`: one call event in ten lines), as a
    TCP octet-counted stream read in 256 KiB pieces (asyncio's largest read):

    * framing: `Framer.feed` on each read;
    * header: `parse_syslog` on each frame;
    * rows: `add_frames` on each read's frames (packed beforehand: zstd is C already);
    * writer: the three together, read by read, as the writer does them;
    * find: `find_events` (`may_carry_call_event`, `extract`, `parse_pexip`), per run of
      5,000 messages as the deriving process reads them;
    * pexip: `parse_pexip` alone on the call events' bodies;
    * assemble: `firsts`, `legs_of`, `assemble_legs` and the rows of each run's events and legs;
    * deriving: find and assemble together.

    Two builds of the same tree: the pure one as checked out, and a temporary copy built in
    place through setup.py, which compiles pyproject.toml's `[tool.cdrecon] compiled` modules
    with mypyc as an installed wheel has them. Each round runs one child process per build (the
    order alternating), each child times every stage `--repeats` times after a warm-up pass;
    the best of all rounds is CPU time per message. The children also hash what they produced
    (rows, events, legs), and the two builds must agree. Where setup.py builds no compiled
    modules (no mypyc or C compiler, CDRECON_COMPILE=0) only the pure figures are printed,
    with its reason.

Run:  .venv/bin/python -m bench.compiled [--messages 20000] [--rounds 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from app.cdr.extract import CallEvent
from app.cdr.found import assemble_legs, event_rows, find_events, firsts, legs_of
from app.db.packing import pack
from app.ingest.origin import Origin
from app.ingest.rows import Batch, add_frames
from bench.frames import pexip_frames
from bench.options import benchmark_parser
from bench.paths import ROOT
from bench.procfs import load_average, load_text
from bench.results import stamp, table, write_json
from parsers.framing import Frame, Framer
from parsers.pexip import PexipEvent, find_pexip_body, parse_pexip
from parsers.syslog import SyslogMessage, parse_syslog

# The modules on the per-message path that mypyc compiles, as paths from the checkout.
with (ROOT / "pyproject.toml").open("rb") as _config:
    HOT_MODULES: tuple[str, ...] = tuple(tomllib.load(_config)["tool"]["cdrecon"]["compiled"])
# What setup.py says when it leaves them pure, before its reason.
PURE_NOTE = "cdrecon: the hot path installs as pure Python: "
STAGES = ("framing", "header", "rows", "writer", "find", "pexip", "assemble", "deriving")
READ_SIZE = 256 * 1024
RUN_SIZE = 5_000
ORIGIN = Origin("tcp", "10.0.1.11", 50514)
RECEIVED_US = 1_795_000_000_000_000
RECEIVED_AT = datetime.fromtimestamp(RECEIVED_US / 1_000_000, UTC)


# --- the child: one build, every stage --------------------------------------------------------


def _best(stage: Callable[[], object], repeats: int) -> tuple[float, object]:
    """The least CPU seconds of `repeats` calls of `stage`, and what the last call returned."""
    best = float("inf")
    result: object = None
    for _ in range(repeats):
        gc.collect()
        start = time.process_time()
        result = stage()
        best = min(best, time.process_time() - start)
    return best, result


def measure(stream: bytes, repeats: int) -> dict[str, object]:
    """Time every stage on `stream` in this process's build of the modules."""
    reads = [stream[i : i + READ_SIZE] for i in range(0, len(stream), READ_SIZE)]

    def framing() -> list[list[Frame]]:
        framer = Framer()
        return [framer.feed(data) for data in reads]

    framed = framing()
    frames = [frame for read in framed for frame in read]
    stored = [[pack(frame.data) for frame in read] for read in framed]

    def header() -> list[list[SyslogMessage]]:
        return [[parse_syslog(f.data, received_at=RECEIVED_AT) for f in read] for read in framed]

    parsed = header()

    def rows() -> Batch:
        batch = Batch()
        for read, messages, packed in zip(framed, parsed, stored, strict=True):
            add_frames(batch, ORIGIN, RECEIVED_US, read, messages, packed)
        return batch

    def writer() -> Batch:
        framer = Framer()
        batch = Batch()
        for data, packed in zip(reads, stored, strict=True):
            read = framer.feed(data)
            messages = [parse_syslog(f.data, received_at=RECEIVED_AT) for f in read]
            add_frames(batch, ORIGIN, RECEIVED_US, read, messages, packed)
        return batch

    triples = [
        (message.hostname or ORIGIN.peer_host, frame.data, message.msg_offset)
        for frame, message in zip(frames, itertools.chain.from_iterable(parsed), strict=True)
    ]
    runs = [triples[i : i + RUN_SIZE] for i in range(0, len(triples), RUN_SIZE)]

    def find() -> list[list[CallEvent | None]]:
        return [find_events(run).events for run in runs]

    found = find()
    bodies: list[str] = []
    for (_, raw, offset), event in zip(triples, itertools.chain.from_iterable(found), strict=True):
        if event is not None:
            text = raw[offset:].decode("utf-8", "replace")
            bodies.append(text[find_pexip_body(text) :].rstrip("\r\n\x00 "))

    def pexip() -> list[PexipEvent]:
        return [parse_pexip(body, partial=True) for body in bodies]

    def assemble_run(events: list[CallEvent | None]) -> list[tuple[object, ...]]:
        pairs = [(i, e) for i, e in enumerate(events) if e is not None]
        first, _ = firsts(pairs)
        new = list(first.values())
        legs = [leg.as_tuple() for leg, _ in assemble_legs(legs_of(new))]
        return [*event_rows(new), *legs]

    def assemble() -> list[list[tuple[object, ...]]]:
        return [assemble_run(events) for events in found]

    def deriving() -> list[list[tuple[object, ...]]]:
        return [assemble_run(find_events(run).events) for run in runs]

    stages: dict[str, Callable[[], object]] = {
        "framing": framing,
        "header": header,
        "rows": rows,
        "writer": writer,
        "find": find,
        "pexip": pexip,
        "assemble": assemble,
        "deriving": deriving,
    }
    for stage in stages.values():  # warm-up: the framer's and the Pexip parser's caches
        stage()
    seconds: dict[str, float] = {}
    results: dict[str, object] = {}
    for name, stage in stages.items():
        seconds[name], results[name] = _best(stage, repeats)
    batch = results["writer"]
    assert isinstance(batch, Batch)
    check = hashlib.sha256(repr((batch.rows, results["deriving"])).encode()).hexdigest()
    return {
        "messages": len(frames),
        "events": len(bodies),
        "seconds": seconds,
        "check": check,
        "compiled": {module: _is_compiled(module) for module in HOT_MODULES},
    }


def _is_compiled(path: str) -> bool:
    module = sys.modules.get(path.removesuffix(".py").replace("/", "."))
    return module is not None and not str(module.__file__).endswith(".py")


# --- the parent: build, alternate the children, report ----------------------------------------


def build(target: Path) -> tuple[float, str | None]:
    """Copy the tree to `target` and build it in place through setup.py: the build's seconds,
    and None, or why it compiled nothing (setup.py's reason, or the tail of a failed build)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "out")
    for package in ("app", "parsers", "bench"):
        shutil.copytree(ROOT / package, target / package, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, target)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "setup.py", "--quiet", "build_ext", "--inplace"],
        cwd=target,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        return elapsed, f"the mypyc build failed:\n{tail}"
    for line in done.stderr.splitlines():
        if line.startswith(PURE_NOTE):
            return elapsed, line.removeprefix(PURE_NOTE)
    return elapsed, None


def run_child(tree: Path, stream: Path, repeats: int) -> dict[str, object]:
    """One measuring child on `tree` (its modules shadow the installed checkout's, as
    `python -m` puts the working directory first on the path)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, "-m", "bench.compiled", "--measure", str(stream)]
    done = subprocess.run(
        [*command, "--repeats", str(repeats)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--messages", type=int, default=20_000, help="messages in the stream")
    parser.add_argument("--rounds", type=int, default=5, help="children per build")
    parser.add_argument("--repeats", type=int, default=3, help="timings per stage and child")
    parser.add_argument("--keep", action="store_true", help="keep the compiled build")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure.read_bytes(), args.repeats)))
        return 0
    when = stamp()
    work = Path(tempfile.mkdtemp(prefix="cdrecon-mypyc-"))
    try:
        stream = work / "stream.bin"
        stream.write_bytes(
            b"".join(itertools.islice(pexip_frames(500, event_every=10), args.messages))
        )
        trees = {"pure": ROOT}
        build_seconds, reason = build(work / "compiled")
        if reason is None:
            trees["compiled"] = work / "compiled"
            print(f"compiled {len(HOT_MODULES)} modules with mypyc in {build_seconds:.0f} s")
        else:
            print(f"no compiled build: {reason}; pure Python figures only")
        before = load_average()
        best: dict[str, dict[str, float]] = {name: {} for name in trees}
        children: dict[str, dict[str, object]] = {}
        for index in range(args.rounds):
            order = list(trees) if index % 2 == 0 else list(reversed(trees))
            for name in order:
                child = children[name] = run_child(trees[name], stream, args.repeats)
                seconds = child["seconds"]
                assert isinstance(seconds, dict)
                for stage, value in seconds.items():
                    best[name][stage] = min(best[name].get(stage, value), value)
        after = load_average()
        if "compiled" in children:
            compiled = children["compiled"]["compiled"]
            assert isinstance(compiled, dict)
            missing = [module for module, done in compiled.items() if not done]
            if missing:
                print(f"not compiled in the compiled build: {', '.join(missing)}")
                return 1
            if children["compiled"]["check"] != children["pure"]["check"]:
                print("the two builds produced different rows, events or legs")
                return 1
        messages = children["pure"]["messages"]
        assert isinstance(messages, int)
        print(report(best, messages, children["pure"]["events"]))
        print(f"load average {load_text(before, after)}; best of {args.rounds}x{args.repeats}")
        path = write_json(
            "compiled",
            when,
            {
                "messages": messages,
                "rounds": args.rounds,
                "repeats": args.repeats,
                "load": [before, after],
                "build_seconds": build_seconds,
                "no_compiled_build": reason,
                "seconds": best,
            },
        )
        print(f"written to {path}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def report(best: dict[str, dict[str, float]], messages: int, events: object) -> str:
    """µs of CPU per message of each stage, side by side, with pure / compiled."""
    rows = []
    for stage in STAGES:
        pure = best["pure"][stage] / messages * 1e6
        row: list[object] = [stage, f"{pure:.3f}"]
        if "compiled" in best:
            compiled = best["compiled"][stage] / messages * 1e6
            row += [f"{compiled:.3f}", f"{pure / compiled:.2f}x"]
        rows.append(row)
    headers = ["stage", "pure µs/msg"]
    if "compiled" in best:
        headers += ["compiled µs/msg", "pure/compiled"]
    return f"{messages} messages, {events} call events\n" + table(headers, rows)


if __name__ == "__main__":
    sys.exit(main())
