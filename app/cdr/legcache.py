"""The events of recently assembled legs, kept so that the next event of a leg does not have
to read and parse all of the leg's stored events again.

A leg's events arrive over its whole call (attempt, join, disconnect: minutes to hours
apart), so nearly every batch of a live feed touches legs assembled before. Legs that have
ended are dropped: late events for them are rare, and are read from the database. An entry
is only trusted when the database holds exactly its events (the CDR lists the messages they
were first seen in): another writer (a second receiver on PostgreSQL, an `import-syslog`
next to `serve`) or a rolled-back batch then shows up as a difference, and the leg is read
from the database instead.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from .assembly import Leg, LegEvent

# Enough for every leg in progress on a large deployment (a few thousand calls at once;
# ended legs are not kept), and at most about 25 MB: each event keeps its parsed keys.
DEFAULT_LEGS = 5_000


class LegCache:
    """A bounded, least-recently-used map of participant id to the leg's stored events."""

    def __init__(self, max_legs: int = DEFAULT_LEGS) -> None:
        self.max_legs = max_legs
        self._legs: OrderedDict[str, list[LegEvent]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._legs)

    def events(self, participant_id: str, stored: Sequence[int]) -> list[LegEvent] | None:
        """The leg's events if the cache holds exactly those first seen in the `stored`
        message ids (ascending), else None."""
        events = self._legs.get(participant_id)
        if events is None or sorted(e.message_id for e in events) != stored:
            return None
        self._legs.move_to_end(participant_id)
        return events

    def put(self, participant_id: str, events: list[LegEvent]) -> None:
        """Remember all of the leg's events, as they will be once the batch commits."""
        self._legs[participant_id] = events
        self._legs.move_to_end(participant_id)
        while len(self._legs) > self.max_legs:
            self._legs.popitem(last=False)

    def keep(self, leg: Leg, events: list[LegEvent]) -> None:
        """Remember a leg just assembled from `events` while its call is in progress; a leg
        that has ended rarely hears more, and is dropped."""
        if leg.end_us is None:
            self.put(leg.id, events)
        else:
            self.forget(leg.id)

    def forget(self, participant_id: str) -> None:
        """Drop one leg, if held."""
        self._legs.pop(participant_id, None)

    def clear(self) -> None:
        """Forget everything: after a batch that did not commit."""
        self._legs.clear()
