"""The part of storing a batch that needs no database: parsing, digests, finding call events.

Pure and per chunk: the batch writer prepares a batch a chunk at a time (reading sockets in
between), then stores it in one transaction.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from app.cdr.deriving import FoundEvents, find_events
from app.db.packing import pack
from parsers.framing import Frame
from parsers.syslog import SyslogMessage, parse_syslog

from .origin import Origin

log = logging.getLogger(__name__)


# How many of a line's first bytes lead its key. Syslog files start each line with its time
# ("2026-11-26T10:00:00.090+00:00 host", "<134>1 2026-11-26T10:00:", "Nov 26 10:00:00 conf-"),
# so 24 bytes reach the minute in every layout cdrecon reads.
LINE_KEY_PREFIX = 24


def line_digest(line: bytes) -> bytes:
    """What identifies a backfilled line, so that importing a file twice adds nothing.

    The line's first bytes, then a 16-byte hash of the whole line. The hash alone would be
    unique too, but random: each new key would land on its own page of the unique index, and
    once the index outgrows the page cache every insert would read and write one. A file's
    lines start with their time, so keys led by it arrive in (nearly) ascending order and the
    index grows at its end: SQLite alone wrote a million backfilled lines in 12.6 s instead
    of 20 s (bench/floor.py).
    """
    return line[:LINE_KEY_PREFIX] + hashlib.blake2b(line, digest_size=16).digest()


@dataclass(slots=True)
class PreparedChunk:
    """Frames read together from one origin, parsed, with their call events found."""

    origin: Origin
    received_us: int
    frames: list[Frame]
    messages: list[SyslogMessage]
    stored: list[tuple[bytes, int]]  # each frame as `messages.raw` keeps it, and `packed`
    digests: list[bytes] | None  # backfilled lines only
    # None if finding the events failed (the messages still count) or was not asked for
    found: FoundEvents | None


def prepare_chunk(
    origin: Origin, received_us: int, frames: list[Frame], *, find: bool = True
) -> PreparedChunk:
    """Parse and pack `frames` (all read at `received_us` from `origin`) and, with `find`,
    find their call events (without, `found` is None: deriving them is deferred)."""
    received_at = datetime.fromtimestamp(received_us / 1_000_000, UTC)
    messages = [parse_syslog(frame.data, received_at=received_at) for frame in frames]
    # Packed here, outside the transaction, like the parsing.
    stored = [pack(frame.data) for frame in frames]
    digests = [line_digest(f.data) for f in frames] if origin.transport == "file" else None
    if not find:
        return PreparedChunk(origin, received_us, frames, messages, stored, digests, None)
    peer = origin.peer_host
    found: FoundEvents | None
    try:
        found = find_events(
            (message.hostname or peer, frame.data, message.msg_offset)
            for frame, message in zip(frames, messages, strict=True)
        )
    except Exception:
        # A bug in event extraction must never cost the raw messages their commit;
        # `cdrecon rebuild` derives them again once it is fixed.
        log.exception("finding call events in %d messages failed", len(frames))
        found = None
    return PreparedChunk(origin, received_us, frames, messages, stored, digests, found)
