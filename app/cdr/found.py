"""Finding the call events in stored messages and assembling their legs: pure, shared by
the batch writer's deriving (app/cdr/deriving.py) and the deriving process's
(app/cdr/derivation.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .assembly import Leg, LegEvent, assemble_leg
from .extract import CallEvent, NotPexip, extract


@dataclass(slots=True)
class Derived:
    """What deriving one set of messages produced."""

    events: int = 0  # new call events
    duplicates: int = 0  # messages whose event was already stored
    unparsed: int = 0  # Pexip-looking messages whose body did not parse
    legs: int = 0  # CDRs created or updated
    failed: int = 0  # messages whose event the database refused (or a bug): skipped, logged

    def add(self, other: Derived) -> None:
        """Accumulate another result into this one."""
        self.events += other.events
        self.duplicates += other.duplicates
        self.unparsed += other.unparsed
        self.legs += other.legs
        self.failed += other.failed


@dataclass(slots=True)
class FoundEvents:
    """The call events found in a run of messages (a chunk, a batch), before anything is
    stored."""

    events: list[CallEvent | None]  # one per message, None where it holds none
    unparsed: list[int]  # positions of Pexip-looking messages whose body did not parse

    @classmethod
    def none(cls, count: int) -> FoundEvents:
        """`count` messages without call events."""
        return cls([None] * count, [])

    def add(self, other: FoundEvents, keep: Sequence[int] | None = None) -> None:
        """Append `other`'s messages, or only those at the positions `keep` (ascending)."""
        start = len(self.events)
        if keep is None:
            self.events += other.events
            self.unparsed += [start + i for i in other.unparsed]
            return
        self.events += [other.events[i] for i in keep]
        if other.unparsed:
            failed = set(other.unparsed)
            self.unparsed += [start + n for n, i in enumerate(keep) if i in failed]

    def part(self, start: int, stop: int) -> FoundEvents:
        """The messages at positions `start` to `stop` (exclusive)."""
        return FoundEvents(
            self.events[start:stop], [i - start for i in self.unparsed if start <= i < stop]
        )


def find_events(messages: Iterable[tuple[str | None, bytes, int]]) -> FoundEvents:
    """The call event of each (sending host, raw frame, offset of MSG) message: pure, so the
    batch writer does it before it opens a transaction."""
    found = FoundEvents([], [])
    events = found.events
    for node, raw, offset in messages:
        try:
            events.append(extract(raw, offset, node))
        except NotPexip:
            found.unparsed.append(len(events))
            events.append(None)
    return found


def firsts(
    found: Iterable[tuple[int, CallEvent]],
) -> tuple[dict[bytes, tuple[int, CallEvent]], list[tuple[bytes, int]]]:
    """The first (message id, event) of each event digest among `found`, and (digest,
    message id) of the further messages that carried one of them."""
    first: dict[bytes, tuple[int, CallEvent]] = {}
    repeats: list[tuple[bytes, int]] = []
    for message_id, call_event in found:
        if call_event.digest in first:
            repeats.append((call_event.digest, message_id))
        else:
            first[call_event.digest] = (message_id, call_event)
    return first, repeats


def assemble_legs(legs: dict[str, list[LegEvent]]) -> list[tuple[Leg, list[LegEvent]]]:
    """Each leg's CDR from all of its events, with those events, in participant id order."""
    return [(assemble_leg(pid, legs[pid]), legs[pid]) for pid in sorted(legs)]


def legs_of(events: list[tuple[int, CallEvent]]) -> dict[str, list[LegEvent]]:
    """The events of each leg among `events`, as assembly sees them."""
    legs: dict[str, list[LegEvent]] = {}
    for message_id, event in events:
        if pid := event.participant_id:
            legs.setdefault(pid, []).append(event.leg_event(message_id))
    return legs


def event_rows(events: list[tuple[int, CallEvent]]) -> list[tuple[object, ...]]:
    return [event.as_tuple(message_id) for message_id, event in events]
