"""A reference checkout measured beside this tree in the same run, and the side-by-side table.

`--reference DIR` names another checkout of cdrecon that has its own virtual environment,
for example the commit before a refactoring:

    git worktree add /work/ref-3b09748 3b09748 && make -C /work/ref-3b09748 .venv/.installed

The benchmarks that take it run each measurement on this tree and on the reference in turn
(the order swapped every run, so neither always goes first), `--runs` times, on data planted
the same way for both, and print the medians side by side with their ratio.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.commands import command_output
from bench.paths import ROOT
from bench.results import table


@dataclass(frozen=True, slots=True)
class Checkout:
    """A checkout of cdrecon whose own `cdrecon` command a benchmark runs."""

    label: str  # "this tree" or "reference"
    root: Path

    @property
    def cdrecon(self) -> str:
        """Its command, from its own virtual environment."""
        return str(self.root / ".venv" / "bin" / "cdrecon")

    def takes(self, command: str, option: str) -> bool:
        """Whether its `cdrecon <command>` has `option` (an older checkout may lack one)."""
        return option in command_output(self.cdrecon, command, "--help")


THIS_TREE = Checkout("this tree", ROOT)


def add_reference_options(parser: argparse.ArgumentParser) -> None:
    """--reference DIR and --runs R."""
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="DIR",
        help="another checkout (with its own .venv) to measure beside this tree in the same run",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="measure each size this many times (medians shown)"
    )


def checkouts(args: argparse.Namespace) -> list[Checkout]:
    """This tree, then the reference if one is named; exits with a clear line if it is not
    a usable checkout."""
    if args.runs < 1:
        raise SystemExit("--runs must be 1 or more")
    found = [THIS_TREE]
    if args.reference is not None:
        reference = Checkout("reference", args.reference.resolve())
        if not Path(reference.cdrecon).exists():
            raise SystemExit(
                f"--reference {args.reference}: no {reference.cdrecon}; "
                f"run `make .venv/.installed` in that checkout first"
            )
        found.append(reference)
    return found


def in_turn(items: Sequence[Checkout], run: int) -> list[Checkout]:
    """The checkouts in the order of run number `run` (0-based): reversed every other run."""
    return list(items) if run % 2 == 0 else list(reversed(items))


@dataclass(frozen=True, slots=True)
class Figures:
    """One measured run of one checkout."""

    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float


def _spread(values: Sequence[float], digits: int) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def side_by_side(rows: Iterable[tuple[str, dict[str, list[Figures]]]]) -> str:
    """The medians (lowest..highest) per measurement and checkout, and this tree's median CPU
    and wall time over the reference's. `rows`: (what was measured, runs by checkout label)."""
    lines = []
    for what, runs in rows:
        ours, theirs = runs.get(THIS_TREE.label, []), runs.get("reference", [])
        cells = [what, str(max(len(ours), len(theirs)))]
        for figures in (ours, theirs):
            cells += (
                [
                    _spread([f.cpu_seconds for f in figures], 2),
                    _spread([f.wall_seconds for f in figures], 1),
                    f"{statistics.median(f.peak_rss_mb for f in figures):.0f}",
                ]
                if figures
                else ["", "", ""]
            )
        for attribute in ("cpu_seconds", "wall_seconds"):
            if ours and theirs:
                ratio = statistics.median(getattr(f, attribute) for f in ours) / statistics.median(
                    getattr(f, attribute) for f in theirs
                )
                cells.append(f"x{ratio:.2f}")
            else:
                cells.append("")
        lines.append(tuple(cells))
    headers = (
        "measured",
        "runs",
        "CPU-s",
        "wall s",
        "RSS MB",
        "ref CPU-s",
        "ref wall s",
        "ref RSS MB",
        "CPU ÷ ref",
        "wall ÷ ref",
    )
    return table(headers, lines)
