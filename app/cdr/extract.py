"""Finds the Pexip call event in a stored syslog message: pure, one message at a time."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from app.cdr.assembly import LegEvent
from parsers.pexip import PexipEvent, PexipParseError, find_pexip_body, parse_pexip

EVENT_COLUMNS = ("digest", "time_us", "participant_id", "truncated", "message_id")


class CallEvent(NamedTuple):
    """A call event found in a message: the parsed body, its digest, and its sending node.

    The `events` row keeps only what queries select on; the keys stay in the raw message
    (`message_id`) and are parsed from it again when a stored event is needed whole. A
    tuple, not a dataclass: one is made for nearly every message received."""

    digest: bytes
    event: PexipEvent
    node: str | None
    time_us: int  # the event's originating time in epoch microseconds

    @property
    def participant_id(self) -> str | None:
        """The leg this event belongs to, if any."""
        return self.event.fields.get("participant-id")

    def leg_event(self, message_id: int) -> LegEvent:
        """The event as leg assembly sees it, first seen in `message_id`."""
        event = self.event
        return LegEvent(self.time_us, event.message, self.node, event.fields, message_id)

    def as_tuple(self, message_id: int) -> tuple[object, ...]:
        """The `events` row, in EVENT_COLUMNS order, as first seen in `message_id`."""
        event = self.event
        return (
            self.digest,
            self.time_us,
            event.fields.get("participant-id"),
            event.truncated,
            message_id,
        )


def may_carry_call_event(raw: bytes) -> bool:
    """Whether a stored frame may hold a call event, told from its bytes alone: a
    participant-id key (any case) or the Name of a participant or conference lifecycle
    event (`is_call_event`). What the raw store decides when it stores a message (PostgreSQL
    keeps the two kinds in partitions of their own, with their own retention:
    app/db/partitions.py); `extract` finds no event in a message without them, so it only
    errs towards "may". (Plain `in` tests: a case-insensitive regex cost ten times more.)"""
    return (
        b"administrator.conference" in raw
        or b"administrator.participant" in raw
        or b"participant-id" in raw.lower()
    )


def time_us(event: PexipEvent) -> int:
    """The event's originating time in epoch microseconds."""
    return round(event.time.timestamp() * 1000) * 1000


def is_call_event(event: PexipEvent) -> bool:
    """Participant and conference lifecycle events: what CDRs are built from."""
    if event.get("participant-id"):
        return True
    name = event.name or ""
    return name.startswith(("administrator.conference", "administrator.participant"))


class NotPexip(Exception):
    """The message has no parseable Pexip body (kept raw; counted by the caller)."""


def extract(raw: bytes, msg_offset: int, node: str | None) -> CallEvent | None:
    """The call event in a stored message; None when it holds none.

    Raises NotPexip when the message looks like a Pexip body that may carry a call event
    but does not parse.
    """
    # Cheap byte tests before decoding: every Pexip body carries a quoted Level or Name key,
    # and a call event's body its participant id or lifecycle Name, so support-log lines
    # (most of a node's log) are never parsed only to be dropped.
    # (Spelled out: a generator over the two markers cost a microsecond per message.)
    if b'Level="' not in raw and b'Name="' not in raw:
        return None
    if not may_carry_call_event(raw):
        return None
    text = raw[msg_offset:].decode("utf-8", "replace")
    start = find_pexip_body(text)
    if start < 0:
        return None
    body = text[start:].rstrip("\r\n\x00 ")
    try:
        event = parse_pexip(body, partial=True)
    except PexipParseError as exc:
        raise NotPexip(str(exc)) from exc
    if not is_call_event(event):
        return None
    # The body alone identifies an event: the same line live and from a file differs only
    # in its syslog header.
    digest = hashlib.blake2b(body.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return CallEvent(digest, event, node, time_us(event))
