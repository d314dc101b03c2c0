"""Messages the batch writer could not commit, kept in files: one JSON object a line.

The spill file holds what a stop could not commit (the next start ingests it first); the
quarantine file holds what the database refused even raw (for a person to look at). Each line
has the message's origin, its receive time and the frame in base64, so that nothing read is
lost and a spilled message is stored as if it had just been read.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from parsers.framing import Frame

from .origin import Origin

Chunk = tuple[Origin, int, list[Frame]]


def entry(origin: Origin, received_us: int, frame: Frame, reason: str | None = None) -> Any:
    """One message as a JSON-ready object."""
    line: dict[str, Any] = {
        "received_us": received_us,
        "transport": origin.transport,
        "peer_host": origin.peer_host,
        "peer_port": origin.peer_port,
        "tls_subject": origin.tls_subject,
        "source": origin.source,
        "truncated": frame.truncated,
        "framing_error": frame.error,
        "raw": base64.b64encode(frame.data).decode("ascii"),
    }
    if reason is not None:
        line["reason"] = reason
    return line


def append(path: Path, entries: Iterable[Any]) -> None:
    """Add `entries` to the file at `path`, durably."""
    with open(path, "a", encoding="utf-8") as file:
        file.writelines(json.dumps(e) + "\n" for e in entries)
        file.flush()
        os.fsync(file.fileno())


def replace(path: Path, entries: Iterable[Any]) -> None:
    """Make `entries` the whole content of the file at `path`, durably and at once: a crash
    leaves the old file or the new one, never half of it."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8") as file:
        file.writelines(json.dumps(e) + "\n" for e in entries)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def read(path: Path) -> list[Chunk]:
    """The messages of the file at `path` as writer chunks, in their order (consecutive
    messages of one origin and receive time form one chunk)."""
    chunks: list[Chunk] = []
    with open(path, encoding="utf-8") as file:
        for text in file:
            line = json.loads(text)
            origin = Origin(
                line["transport"],
                line["peer_host"],
                line["peer_port"],
                line["tls_subject"],
                line["source"],
            )
            frame = Frame(
                base64.b64decode(line["raw"]), bool(line["truncated"]), line["framing_error"]
            )
            received_us = int(line["received_us"])
            if chunks and chunks[-1][0] == origin and chunks[-1][1] == received_us:
                chunks[-1][2].append(frame)
            else:
                chunks.append((origin, received_us, [frame]))
    return chunks
