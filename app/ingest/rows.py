"""Turns received frames into raw-store rows and per-node tallies: the per-message hot path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.cdr.extract import may_carry_call_event
from app.cdr.pending import Fed
from parsers.framing import Frame
from parsers.syslog import SyslogFormat, SyslogMessage

from .origin import Origin

# The column order of `Row`, shared with the repository's INSERT statement.
MESSAGE_COLUMNS = (
    "received_us",
    "transport",
    "peer_host",
    "peer_port",
    "tls_subject",
    "format",
    "hostname",
    "msg_offset",
    "truncated",
    "error",
    "raw",
    "packed",
    "source",
    "digest",
)
Row = tuple[Any, ...]
MINUTE_US = 60_000_000


@dataclass(slots=True)
class NodeTally:
    """What one batch saw of one sending host."""

    last_peer: str | None
    last_transport: str
    first_seen_us: int
    last_seen_us: int
    messages: int = 0
    parse_failures: int = 0
    minuted: int = 0  # of `messages`, those already added to `Batch.minutes`


@dataclass(slots=True)
class TransportTally:
    """What one batch holds per transport, for the metrics after commit."""

    messages: int = 0
    parse_failures: int = 0
    oversize: int = 0
    framing_errors: int = 0


@dataclass(slots=True)
class Batch:
    """Rows ready for one transaction, with the tallies that go with them."""

    rows: list[Row] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)  # filled in when the rows are inserted
    # With `classify` (PostgreSQL), per row, whether it may carry a call event
    # (`may_carry_call_event`): which partition it goes to (app/db/partitions.py).
    classify: bool = False
    calls: list[bool] = field(default_factory=list)
    nodes: dict[str, NodeTally] = field(default_factory=dict)
    transports: dict[str, TransportTally] = field(default_factory=dict)
    # Messages per (minute start in µs, host). The node tallies' messages not yet in it all
    # arrived in `minute_us`: they are added when the minute changes and before storing, so
    # the per-message loop keeps counting only in the node tallies.
    minutes: dict[tuple[int, str], int] = field(default_factory=dict)
    minute_us: int | None = None

    def count_minute(self) -> None:
        """Add the messages tallied since the last call to `minutes`, under `minute_us`."""
        if self.minute_us is None:
            return
        for host, node in self.nodes.items():
            if node.messages > node.minuted:
                key = (self.minute_us, host)
                self.minutes[key] = self.minutes.get(key, 0) + node.messages - node.minuted
                node.minuted = node.messages


def add_frames(
    batch: Batch,
    origin: Origin,
    received_us: int,
    frames: Sequence[Frame],
    messages: Sequence[SyslogMessage],
    stored: Sequence[tuple[bytes, int]],
    digests: Sequence[bytes] | None = None,
) -> None:
    """Append `frames` (all read at `received_us` from `origin`), parsed as `messages` and
    packed as `stored` (`app.db.packing.pack`), to `batch`.

    `digests` (one per frame) are stored for backfilled files, so that a re-import adds nothing.
    """
    minute_us = received_us - received_us % MINUTE_US
    if minute_us != batch.minute_us:
        batch.count_minute()
        batch.minute_us = minute_us
    tally = batch.transports.get(origin.transport)
    if tally is None:
        tally = batch.transports[origin.transport] = TransportTally()
    nodes = batch.nodes
    append = batch.rows.append
    if batch.classify:
        batch.calls.extend([may_carry_call_event(frame.data) for frame in frames])
    transport = origin.transport
    peer_host, peer_port, tls_subject = origin.peer_host, origin.peer_port, origin.tls_subject
    source = origin.source
    raw_format = SyslogFormat.RAW
    for index, ((_, truncated, framing_error), message, (raw, packed)) in enumerate(
        zip(frames, messages, stored, strict=True)
    ):
        failed = message.format is raw_format
        error = message.error
        if framing_error is not None:
            error = framing_error if error is None else f"{framing_error}; {error}"
            tally.framing_errors += 1
        if truncated:
            tally.oversize += 1
        append(
            (
                received_us,
                transport,
                peer_host,
                peer_port,
                tls_subject,
                message.format.value,
                message.hostname,
                message.msg_offset,
                truncated,
                error,
                raw,
                packed,
                source,
                None if digests is None else digests[index],
            )
        )
        host = message.hostname or peer_host or "unknown"
        node = nodes.get(host)
        if node is None:
            node = nodes[host] = NodeTally(peer_host, transport, received_us, received_us)
        node.messages += 1
        node.last_seen_us = received_us
        if failed:
            node.parse_failures += 1
            tally.parse_failures += 1
    tally.messages += len(frames)


_PEER, _HOST, _OFFSET, _RAW, _PACKED = (
    MESSAGE_COLUMNS.index(name) for name in ("peer_host", "hostname", "msg_offset", "raw", "packed")
)


def copy_of(batch: Batch) -> Fed:
    """The inserted `batch` as a deriving process would read it back (`pending.Fed`): its
    rows are one run of ids (SQLite), each with its sender named as `pending` names it."""
    rows = batch.rows
    return Fed(
        batch.ids[0],
        [row[_PEER] if row[_HOST] is None else row[_HOST] for row in rows],
        [row[_OFFSET] for row in rows],
        [row[_RAW] for row in rows],
        [row[_PACKED] for row in rows],
    )
