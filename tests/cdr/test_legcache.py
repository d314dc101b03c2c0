"""The cache of recent legs: trusted only for exactly the stored events, bounded, LRU."""

from __future__ import annotations

from app.cdr.assembly import LegEvent
from app.cdr.legcache import LegCache


def events(*message_ids: int) -> list[LegEvent]:
    return [LegEvent(i, "Participant has joined.", "n", {}, i) for i in message_ids]


def test_a_leg_is_only_trusted_for_exactly_the_events_the_database_holds() -> None:
    cache = LegCache()
    cache.put("a", events(7, 3))
    assert cache.events("a", [3, 7]) == events(7, 3)
    assert cache.events("a", [3, 7, 9]) is None  # another writer stored one more
    assert cache.events("a", [3, 8]) is None  # ... or a different one
    assert cache.events("b", [1]) is None


def test_the_least_recently_used_leg_goes_first() -> None:
    cache = LegCache(max_legs=2)
    cache.put("a", events(1))
    cache.put("b", events(2))
    assert cache.events("a", [1]) is not None  # a is now the most recent
    cache.put("c", events(3))
    assert len(cache) == 2
    assert cache.events("b", [2]) is None
    assert cache.events("a", [1]) is not None


def test_forget_and_clear() -> None:
    cache = LegCache()
    cache.put("a", events(1))
    cache.put("b", events(2))
    cache.forget("a")
    cache.forget("missing")
    assert (cache.events("a", [1]), len(cache)) == (None, 1)
    cache.clear()
    assert len(cache) == 0
