"""Assembles one participant leg's events into its CDR: pure, order-independent.

The CDR uses the Management Node's participant history field names (pexip-format.md §6a),
so that reconciliation and export need no renaming.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from itertools import pairwise
from operator import itemgetter
from typing import NamedTuple

from parsers.mn_record import (
    COMPARED_COLUMN,
    COMPARED_FIELDS,
    PARTICIPANT_FIELDS,
    Kind,
    compared_text,
)
from parsers.pexip import PARTICIPANT_ATTEMPTING, PARTICIPANT_DISCONNECTED, PARTICIPANT_JOINED


class LegState(StrEnum):
    """Where a leg stands; only `open` and `closed` legs are billable calls."""

    OPEN = "open"  # joined, no disconnect seen yet
    CLOSED = "closed"  # joined and disconnected
    FAILED = "failed"  # attempted, never joined: not billable
    EXCLUDED = "excluded"  # a BACKPLANE leg between nodes: not billable


# MN history field <- syslog keys (lower-cased), first present wins, as parsers/mn_record.py
# declares them: the fields a CDR copies from its events, in declaration order.
FIELD_SOURCES: Mapping[str, tuple[str, ...]] = {
    f.name: f.spec.syslog for f in PARTICIPANT_FIELDS if f.spec.syslog
}
COPIED: tuple[str, ...] = tuple(FIELD_SOURCES)

_SOURCES = tuple(FIELD_SOURCES.items())
# Copied integers (the remote port): (position in COPIED, largest value).
_WHOLE = tuple(
    (COPIED.index(f.name), f.spec.maximum)
    for f in PARTICIPANT_FIELDS
    if f.spec.syslog and f.spec.kind is Kind.INTEGER
)
# Copied text of a bounded column: (position in COPIED, longest value).
_BOUNDED = tuple(
    (COPIED.index(f.name), f.spec.length)
    for f in PARTICIPANT_FIELDS
    if f.spec.syslog and f.spec.kind is Kind.TEXT and f.spec.length is not None
)
_DURATION_MAX = next(f.spec.maximum for f in PARTICIPANT_FIELDS if f.name == "duration")

# Which event's values win when several carry a key: the join describes the call best.
_RANK = {PARTICIPANT_JOINED: 0, PARTICIPANT_DISCONNECTED: 1, PARTICIPANT_ATTEMPTING: 2}


class LegEvent(NamedTuple):
    """One call event of a leg, as assembly needs it (a tuple: one is made per message)."""

    time_us: int
    message: str | None
    node: str | None
    fields: Mapping[str, str]
    message_id: int = 0  # the raw message it was first seen in (0: not stored)


class Leg(NamedTuple):
    """A participant CDR, in MN history field names (times in epoch microseconds, UTC).

    A tuple, since one is made per leg and batch: what assembly works out from the events
    by name, then the fields copied from their keys (COPIED order). `as_tuple` is the
    `cdrs` row, in LEG_COLUMNS order."""

    id: str
    state: LegState
    first_seen_us: int
    event_count: int
    start_us: int | None
    end_us: int | None
    duration: int | None
    disconnect_reason: str | None
    node: str | None
    copied: tuple[str | int | None, ...]

    def as_tuple(self) -> tuple[object, ...]:
        """The CDR's values in LEG_COLUMNS order (the `cdrs` table's columns); LegState is a
        StrEnum, which the drivers store as its text."""
        values = (*self[:-1], *self.copied)
        return (*values, compared_text(_compared_of(values)))

    def value(self, name: str) -> object:
        """The value of one column of LEG_COLUMNS."""
        return self.as_tuple()[LEG_COLUMNS.index(name)]


_FIELD_COLUMNS = (*Leg._fields[:-1], *COPIED)
LEG_COLUMNS: tuple[str, ...] = (*_FIELD_COLUMNS, COMPARED_COLUMN)
_compared_of = itemgetter(*(_FIELD_COLUMNS.index(f.name) for f in COMPARED_FIELDS))


def _order(event: LegEvent) -> tuple[int, int, str]:
    return (_RANK.get(event.message or "", 3), event.time_us, event.node or "")


def _content(event: LegEvent) -> tuple[int, int, str, tuple[tuple[str, str], ...]]:
    return (*_order(event), tuple(sorted(event.fields.items())))


def _sorted(events: Iterable[LegEvent]) -> list[LegEvent]:
    """Events in a total order on their content, so that arrival order never changes the
    result. The full content is only compared when two events tie on the cheap key."""
    ordered = sorted(events, key=_order)
    keys = [_order(e) for e in ordered]
    if any(a == b for a, b in pairwise(keys)):
        ordered.sort(key=_content)
    return ordered


def _whole(value: str | int | None, maximum: int) -> int | None:
    # isdigit() alone admits "²" and other digits int() refuses.
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= len(str(maximum))
    ):
        return int(value)
    return None


def assemble_leg(participant_id: str, events: Iterable[LegEvent]) -> Leg:
    """The CDR of one leg from all its events, whatever order they arrived in."""
    ordered = _sorted(events)
    if not ordered:
        raise ValueError(f"no events for participant {participant_id}")
    values: dict[str, str] = {}
    for event in ordered:
        # Within one event the first non-empty key listed in FIELD_SOURCES wins; across
        # events, the first event in order does.
        fields = event.fields
        for name, keys in _SOURCES:
            if name in values:
                continue
            for key in keys:
                if value := fields.get(key):
                    values[name] = value
                    break
    joins = [e.time_us for e in ordered if e.message == PARTICIPANT_JOINED]
    ends = [e for e in ordered if e.message == PARTICIPANT_DISCONNECTED]
    start = min(joins) if joins else None
    last_end = max(ends, key=lambda e: e.time_us) if ends else None
    end = last_end.time_us if last_end else None
    reason = None
    if last_end is not None:
        reason = last_end.fields.get("detail") or last_end.fields.get("disconnect-reason")
    if (values.get("protocol") or "").upper() == "BACKPLANE":
        state = LegState.EXCLUDED
    elif start is None:
        state = LegState.FAILED
    elif end is None:
        state = LegState.OPEN
    else:
        state = LegState.CLOSED
    duration = None
    if start is not None and end is not None:
        # The MN floors durations to whole seconds; a clock step never makes one negative.
        duration = max(0, (end - start) // 1_000_000)
        if duration > _DURATION_MAX:
            duration = None  # times decades apart: no call lasts that long
    node = (ordered[0].node or None) if ordered else None
    copied: list[str | int | None] = [values.get(name) for name in COPIED]
    for index, maximum in _WHOLE:
        copied[index] = _whole(copied[index], maximum)
    for index, length in _BOUNDED:
        text = copied[index]
        if isinstance(text, str) and len(text) > length:
            # Left out, not cut: a cut value could pass for another (a protocol, a node).
            copied[index] = None
    return Leg(
        participant_id,
        state,
        min(e.time_us for e in ordered),
        len(ordered),
        start,
        end if start is not None or end is not None else None,
        duration,
        reason,
        node,
        tuple(copied),
    )
