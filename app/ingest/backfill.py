"""Backfill from syslog files (plain or gzip, or stdin) through the same batch writer."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import BinaryIO, cast

from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr import pending
from parsers.framing import Frame

from .origin import Origin
from .writer import BatchWriter

GZIP_MAGIC = b"\x1f\x8b"
LINES_PER_CHUNK = 1000
# Seconds between looks at the list of runs to derive while an import waits for it.
DERIVED_POLL = 0.05


@dataclass(slots=True)
class ImportSummary:
    """What one import did; `stored + duplicates == lines` once the writer has flushed."""

    files: int = 0
    lines: int = 0
    stored: int = 0
    duplicates: int = 0
    parse_failures: int = 0
    events: int = 0


@contextmanager
def open_source(path: str) -> Iterator[BinaryIO]:
    """A binary stream of the file's lines: `-` is stdin; gzip is detected by its magic bytes,
    not its name (rotated logs are often `.1.gz`, sometimes gzip without the suffix)."""
    with ExitStack() as stack:
        if path == "-":
            buffered = cast(io.BufferedReader, sys.stdin.buffer)
        else:
            buffered = stack.enter_context(open(path, "rb"))
        if buffered.peek(2)[:2] == GZIP_MAGIC:
            yield cast(BinaryIO, stack.enter_context(gzip.GzipFile(fileobj=buffered)))
        else:
            yield buffered


def line_chunks(stream: BinaryIO, max_frame_size: int) -> Iterator[list[Frame]]:
    """The stream's lines as frames, a chunk at a time. Files are LF-separated lines: the
    RFC 6587 framer would take a line starting with a year for an octet count."""
    chunk: list[Frame] = []
    for line in stream:
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        if len(line) > max_frame_size:
            chunk.append(Frame(line[:max_frame_size], True))
        else:
            chunk.append(Frame(line))
        if len(chunk) >= LINES_PER_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def source_name(path: str) -> str:
    """How a backfilled message records its file: the absolute path, or `stdin`."""
    return "stdin" if path == "-" else os.path.abspath(path)


async def import_files(
    writer: BatchWriter,
    paths: list[str],
    max_frame_size: int,
    progress: Callable[[str, int], None] | None = None,
) -> int:
    """Queue every line of `paths` for storage; returns the number of lines read.

    Waits for room in the writer's queue between chunks, so memory stays bounded whatever
    the file size. The caller stops the writer to flush, then reads the figures it counted.
    """
    lines = 0
    for path in paths:
        origin = Origin("file", source=source_name(path))
        with open_source(path) as stream:
            for frames in line_chunks(stream, max_frame_size):
                await writer.wait_for_room()
                writer.submit(origin, frames, time.time_ns() // 1000)
                lines += len(frames)
                if progress is not None:
                    progress(path, len(frames))
    return lines


async def until_derived(engine: AsyncEngine) -> None:
    """Wait until every run listed for deriving now has been derived: by the deriving
    process, whose derivations the writer stores meanwhile, or by the writer's own catch-up.
    Called once the writer has stored everything read, so that an import ends only when
    the CDRs of what it stored are complete. Runs listed later (by a `serve` on the same
    database) are not waited for."""
    async with engine.connect() as conn:
        waiting = await pending.listed_runs(conn)
    while waiting:
        await asyncio.sleep(DERIVED_POLL)
        async with engine.connect() as conn:
            waiting &= await pending.listed_runs(conn)
