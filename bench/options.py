"""The command-line options the benchmarks share, said once."""

from __future__ import annotations

import argparse


def benchmark_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of the benchmark's docstring."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])


def add_profile_options(parser: argparse.ArgumentParser, py_spy_help: str) -> None:
    """--py-spy (profile what `py_spy_help` says) and --keep."""
    parser.add_argument("--py-spy", action="store_true", help=py_spy_help)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")


def add_no_floor(parser: argparse.ArgumentParser) -> None:
    """--no-floor: skip bench.floor's reference figure."""
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip timing SQLite alone writing the same rows (bench/floor.py)",
    )


def parse_sizes(text: str) -> list[int]:
    """A comma-separated list of sizes ("100_000,1000000") as integers."""
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
