"""Trains the zstd dictionary raw messages are packed with (app/db/packing.py) and writes it.

The dictionary is frozen once written: a row packed with it can only be read with it, so a
better one becomes the next version (a new file and number in `app.db.packing.DICTIONARIES`)
and the old one stays. Version 1 was made by this script as it stands:

    .venv/bin/python -m bench.raw_dictionary app/db/raw-1.zdict

Its samples are lines of the benchmarks' generators (call events, the realistic mix, support
lines) with seeds that no benchmark measures, and the verbatim Pexip lines of
tests/fixtures/pexip. What it holds is mostly what every Pexip line repeats: the keys, the
levels, names and messages, the syslog header's shape. The generators draw names, aliases
and conferences from small pools, which the dictionary learns too, so a real estate's lines
pack less well than the benchmark's: bench/README.md ("Smaller rows") gives both bounds.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import zstandard

from bench.frames import pexip_frames
from bench.options import benchmark_parser
from bench.paths import ROOT
from bench.storage import message_bytes, support_frames

# 8 KiB: 16 KiB packed the benchmark's call lines 8% smaller and its support lines 4%
# larger, by learning more of the generators' pools (which real lines do not share).
SIZE = 8192


def samples() -> Iterator[bytes]:
    """The lines the dictionary is trained on, as stored (without the octet count)."""
    for frames, count in (
        (pexip_frames(seed=90001), 3000),
        (pexip_frames(seed=90002, event_every=4), 3000),
        (support_frames(seed=90003), 2000),
    ):
        yield from (message_bytes(frame) for frame in itertools.islice(frames, count))
    fixtures = ROOT / "tests" / "fixtures" / "pexip" / "lines.txt"
    for line in fixtures.read_bytes().splitlines():
        yield line.split(b"\t", 1)[1]


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("path", type=Path, help="where to write the dictionary")
    args = parser.parse_args(argv)
    dictionary = zstandard.train_dictionary(SIZE, list(samples()), level=1)
    args.path.write_bytes(dictionary.as_bytes())
    print(f"wrote {args.path}: {len(dictionary.as_bytes())} bytes, id {dictionary.dict_id()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
