"""Assembles one participant leg's events into its CDR: pure, order-independent.

The CDR uses the Management Node's participant history field names (pexip-format.md §6a),
so that reconciliation and export need no renaming.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from itertools import pairwise
from typing import Any, NamedTuple

from parsers.pexip import PARTICIPANT_ATTEMPTING, PARTICIPANT_DISCONNECTED, PARTICIPANT_JOINED


class LegState(StrEnum):
    """Where a leg stands; only `open` and `closed` legs are billable calls."""

    OPEN = "open"  # joined, no disconnect seen yet
    CLOSED = "closed"  # joined and disconnected
    FAILED = "failed"  # attempted, never joined: not billable
    EXCLUDED = "excluded"  # a BACKPLANE leg between nodes: not billable


# MN history field <- syslog keys (lower-cased), first present wins. Pexip spells
# "Signaling" with one l in logs and "signalling" with two in history.
FIELD_SOURCES: Mapping[str, tuple[str, ...]] = {
    "call_uuid": ("call-id",),
    "conversation_id": ("conversation-id",),
    "conference_name": ("conference",),
    "display_name": ("display-name", "displayname", "participant"),
    "local_alias": ("local-alias", "conferencealias", "destination-alias"),
    "remote_alias": ("remote-alias", "source-alias", "participant-alias", "participant"),
    "protocol": ("protocol",),
    "call_direction": ("direction", "call-direction"),
    "role": ("role",),
    "remote_address": ("remote-address",),
    "remote_port": ("remote-port",),
    "signalling_node": ("signaling-node", "signalling-node"),
    "media_node": ("media-node",),
    "proxy_node": ("proxy-node",),
    "system_location": ("location", "system-location", "signaling-location"),
    "vendor": ("vendor",),
    "service_type": ("service-type",),
    "service_tag": ("service-tag",),
}

_SOURCES = tuple(FIELD_SOURCES.items())

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

    A tuple in the `cdrs` table's column order: one is made per leg and batch, and a frozen
    dataclass of 27 fields cost more to build than the rest of assembly."""

    id: str
    state: LegState
    first_seen_us: int
    event_count: int
    start_us: int | None = None
    end_us: int | None = None
    duration: int | None = None
    disconnect_reason: str | None = None
    node: str | None = None
    call_uuid: str | None = None
    conversation_id: str | None = None
    conference_name: str | None = None
    display_name: str | None = None
    local_alias: str | None = None
    remote_alias: str | None = None
    protocol: str | None = None
    call_direction: str | None = None
    role: str | None = None
    remote_address: str | None = None
    remote_port: int | None = None
    signalling_node: str | None = None
    media_node: str | None = None
    proxy_node: str | None = None
    system_location: str | None = None
    vendor: str | None = None
    service_type: str | None = None
    service_tag: str | None = None

    def as_tuple(self) -> tuple[object, ...]:
        """The CDR's values in LEG_COLUMNS order (the `cdrs` table's columns); LegState is a
        StrEnum, which the drivers store as its text."""
        return tuple(self)


LEG_COLUMNS: tuple[str, ...] = Leg._fields


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


def _port(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and len(value) <= 5 else None


def assemble_leg(participant_id: str, events: Iterable[LegEvent]) -> Leg:
    """The CDR of one leg from all its events, whatever order they arrived in."""
    ordered = _sorted(events)
    if not ordered:
        raise ValueError(f"no events for participant {participant_id}")
    values: dict[str, Any] = {}
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
    node = (ordered[0].node or None) if ordered else None
    return Leg(
        id=participant_id,
        state=state,
        first_seen_us=min(e.time_us for e in ordered),
        event_count=len(ordered),
        start_us=start,
        end_us=end if start is not None or end is not None else None,
        duration=duration,
        disconnect_reason=reason,
        node=node,
        remote_port=_port(values.pop("remote_port", None)),
        **values,
    )
