"""Pexip parsing benchmark: `parse_pexip` with each way of building a line's event, in one run.

What it measures
    `parsers.pexip` gives each shape of simple line (its keys, in order) seen twice an event
    builder. Two ways of writing that builder are compared on the same lines in one process:

    * `exec`: the product's `_compile_builder`, a function written out as source for the shape
      and compiled with `exec`, the way collections.namedtuple writes code;
    * `plain`: plain code, the fastest we found: the fields filled into a copy of a dict that
      already holds the shape's keys.

    Over two sets of lines: the real samples in tests/fixtures/pexip/lines.txt (their Pexip
    bodies, repeated), and the ingest benchmark's generated conference lines
    (`bench.frames.pexip_frames`). Each variant parses every line twice to learn its shapes,
    then `--passes` times more; the rounds alternate between the variants and the best round
    of each is reported, in ns per line. The machine is shared: `--callgrind` also counts
    CPU instructions per line with valgrind (one child per variant and line set, run once with
    one timed pass and once with two: the difference is one pass, start-up excluded).

Run:  .venv/bin/python -m bench.pexip_builders [--lines 100000] [--rounds 7] [--callgrind]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from types import MappingProxyType

from bench.frames import pexip_frames
from bench.paths import ROOT
from parsers import pexip
from parsers.pexip import PexipEvent, find_pexip_body, parse_pexip

FIXTURE = ROOT / "tests" / "fixtures" / "pexip" / "lines.txt"
Builder = Callable[[datetime, list[str]], PexipEvent]


# The product's own slot setters, as module globals here too.
_new = object.__new__
_set_time, _set_level, _set_name = pexip._set_time, pexip._set_level, pexip._set_name
_set_message, _set_fields = pexip._set_message, pexip._set_fields
_set_truncated = pexip._set_truncated


def plain_builder(keys: list[str]) -> Builder:
    """The event builder for one shape in plain code: the fields filled into a copy of a dict
    that already holds the keys (so it never resizes), Level/Name/Message looked up."""
    template = dict.fromkeys(keys, "")
    if len(template) < len(keys):
        return partial(pexip._build_event, keys)
    return partial(_build_distinct, template, tuple(keys))


def _build_distinct(
    template: dict[str, str], keys: tuple[str, ...], time: datetime, values: list[str]
) -> PexipEvent:
    fields = template.copy()
    fields.update(zip(keys, values, strict=False))  # the shape gave as many values as keys
    event = _new(PexipEvent)
    _set_time(event, time)
    _set_level(event, fields.get("level"))
    _set_name(event, fields.get("name"))
    _set_message(event, fields.get("message"))
    _set_fields(event, MappingProxyType(fields))
    _set_truncated(event, False)
    return event


VARIANTS: dict[str, Callable[[list[str]], Builder]] = {
    "exec": pexip._compile_builder,
    "plain": plain_builder,
}


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """`parsers.pexip` building events the `name` way, from an empty shape cache."""
    product: Callable[[list[str]], Builder] = pexip._compile_builder
    pexip._compile_builder = VARIANTS[name]  # type: ignore[assignment]
    pexip._builders.clear()
    pexip._seen.clear()
    try:
        yield
    finally:
        pexip._compile_builder = product  # type: ignore[assignment]
        pexip._builders.clear()
        pexip._seen.clear()


def fixture_bodies() -> list[str]:
    """The Pexip bodies of the real sample lines."""
    bodies = []
    for row in FIXTURE.read_text().splitlines():
        line = row.partition("\t")[2]
        start = find_pexip_body(line)
        if start >= 0:
            bodies.append(line[start:])
    return bodies


def generated_bodies(count: int) -> list[str]:
    """The Pexip bodies of the ingest benchmark's first `count` frames."""
    bodies = []
    for frame, _ in zip(pexip_frames(), range(count), strict=False):
        text = frame.decode().rstrip("\n")
        bodies.append(text[find_pexip_body(text) :])
    return bodies


def line_sets(count: int) -> dict[str, list[str]]:
    """Each set of lines by name, `count` lines each (the samples repeated)."""
    samples = fixture_bodies()
    return {
        "fixtures": (samples * (count // len(samples) + 1))[:count],
        "generated": generated_bodies(count),
    }


def parse_all(bodies: list[str], passes: int) -> float:
    """Parse every body twice (learning the shapes), then `passes` times; seconds of those."""
    for body in bodies + bodies:
        parse_pexip(body, partial=True)
    gc.collect()
    started = time.perf_counter()
    for _ in range(passes):
        for body in bodies:
            parse_pexip(body, partial=True)
    return time.perf_counter() - started


def check_same_events(bodies: list[str]) -> None:
    """Both variants give equal events for every line (else the comparison means nothing)."""
    events: dict[str, list[PexipEvent]] = {}
    for name in VARIANTS:
        with variant(name):
            # Twice: the second time every shape has its builder.
            events[name] = [parse_pexip(body, partial=True) for body in bodies + bodies]
    first, *others = events.values()
    for other in others:
        if other != first:
            sys.exit("the variants disagree on some line")


def timed(sets: dict[str, list[str]], rounds: int, passes: int) -> dict[tuple[str, str], float]:
    """Best ns per line of each (line set, variant), the variants alternating round by round."""
    best: dict[tuple[str, str], float] = {}
    for set_name, bodies in sets.items():
        for _ in range(rounds):
            for name in VARIANTS:
                with variant(name):
                    ns = parse_all(bodies, passes) / (passes * len(bodies)) * 1e9
                key = (set_name, name)
                best[key] = min(best.get(key, ns), ns)
    return best


CALLGRIND_TOTAL = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def instructions(set_name: str, name: str, count: int, passes: int) -> int:
    """Instructions valgrind counts for a child that parses the line set `passes` times."""
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        argv += [sys.executable, "-m", "bench.pexip_builders", "--child", set_name, name]
        argv += ["--lines", str(count), "--passes", str(passes)]
        subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, timeout=1800)
        found = CALLGRIND_TOTAL.search(out.read_text(errors="replace"))
        if found is None:
            sys.exit(f"no instruction total in {out}")
        return int(found.group(1))


def counted(sets: dict[str, list[str]], count: int) -> dict[tuple[str, str], float]:
    """Instructions per line of one pass, for each (line set, variant)."""
    per_line: dict[tuple[str, str], float] = {}
    for set_name in sets:
        for name in VARIANTS:
            one = instructions(set_name, name, count, 1)
            two = instructions(set_name, name, count, 2)
            per_line[(set_name, name)] = (two - one) / count
    return per_line


def report(
    sets: dict[str, list[str]],
    ns: dict[tuple[str, str], float],
    ins: dict[tuple[str, str], float],
) -> str:
    """One row per line set: each variant's figures and exec's over plain."""
    head = f"{'lines':<10} {'variant':<7} {'ns/line':>9} {'instr/line':>11}"
    rows = [head, "-" * len(head)]
    for set_name in sets:
        for name in VARIANTS:
            count = ins.get((set_name, name))
            text = f"{count:>11,.0f}" if count is not None else f"{'-':>11}"
            rows.append(f"{set_name:<10} {name:<7} {ns[(set_name, name)]:>9,.0f} {text}")
        ratio = ns[(set_name, "exec")] / ns[(set_name, "plain")]
        line = f"{set_name:<10} {'exec/plain':<10} {ratio:>6.3f}x"
        if (set_name, "exec") in ins:
            line += f" {ins[(set_name, 'exec')] / ins[(set_name, 'plain')]:>10.3f}x"
        rows.append(line)
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000, help="lines per set")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per variant; best kept")
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the lines")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions")
    parser.add_argument("--callgrind-lines", type=int, default=5_000, help="lines per set there")
    parser.add_argument("--child", nargs=2, metavar=("SET", "VARIANT"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        set_name, name = args.child
        with variant(name):
            parse_all(line_sets(args.lines)[set_name], args.passes)
        return 0
    if args.callgrind and shutil.which("valgrind") is None:
        sys.exit("--callgrind needs valgrind")
    sets = line_sets(args.lines)
    for bodies in sets.values():
        check_same_events(bodies)
    print(f"parse_pexip, {args.lines:,} lines a set, best of {args.rounds} rounds", flush=True)
    ns = timed(sets, args.rounds, args.passes)
    ins = counted(sets, args.callgrind_lines) if args.callgrind else {}
    print(report(sets, ns, ins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
