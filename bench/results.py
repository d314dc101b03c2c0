"""Where the benchmarks' figures go: timestamped JSON files in bench/out/, and plain tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.commands import git_revision
from bench.paths import OUT_DIR
from bench.procfs import machine_info


def stamp() -> str:
    """A UTC timestamp for file names."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def write_json(name: str, when: str, payload: dict[str, object]) -> Path:
    """bench/out/<name>-<when>.json, with the machine and revision added."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}-{when}.json"
    document: dict[str, object] = {"benchmark": name, "started": when}
    document |= {"revision": git_revision(), "machine": machine_info(), **payload}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table, columns padded to fit."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
