"""Call events and CDRs: derivation from stored messages, rebuild, and read queries."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.models import messages
from app.paging import cut_page, decode_cursor

from . import pending
from .assembly import LegEvent, assemble_leg
from .conferences import ConferenceInstance, group_instances
from .extract import CallEvent, NotPexip, extract
from .legcache import LegCache
from .pending import StoredMessage
from .repository import CdrRepository

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Derived:
    """What deriving one set of messages produced."""

    events: int = 0  # new call events
    duplicates: int = 0  # messages whose event was already stored
    unparsed: int = 0  # Pexip-looking messages whose body did not parse
    legs: int = 0  # CDRs created or updated

    def add(self, other: Derived) -> None:
        """Accumulate another result into this one."""
        self.events += other.events
        self.duplicates += other.duplicates
        self.unparsed += other.unparsed
        self.legs += other.legs


@dataclass(slots=True)
class FoundEvents:
    """The call events found in a run of messages, before anything is stored."""

    events: list[CallEvent | None]  # one per message, None where it holds none
    unparsed: list[int]  # positions of Pexip-looking messages whose body did not parse


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


async def store_events(
    conn: AsyncConnection,
    found: Iterable[tuple[int, CallEvent]],
    cache: LegCache | None = None,
) -> Derived:
    """Store the call events of messages (message id, event) and bring their legs' CDRs up
    to date.

    Idempotent: an event already stored only gains a link to the new message, and a leg is
    reassembled from all of its events, so arrival order never matters. `cache` keeps the
    events of legs assembled before, so that their stored events need not be read again; the
    caller clears it when the transaction does not commit.
    """
    result = Derived()
    first: dict[bytes, tuple[int, CallEvent]] = {}
    repeats: list[tuple[bytes, int]] = []  # further messages of an event seen in this batch
    for message_id, call_event in found:
        if call_event.digest in first:
            repeats.append((call_event.digest, message_id))
        else:
            first[call_event.digest] = (message_id, call_event)
    if not first:
        return result
    repository = CdrRepository.for_connection(conn)
    # Optimistically, every event is new (a healthy live feed); only when the insert meets
    # a stored one is it undone and the stored ones looked up.
    new = list(first.values())
    fresh = _legs_of(new)
    participant_ids = sorted(fresh)
    await repository.lock_legs(conn, participant_ids)
    stored = await repository.stored_legs(conn, participant_ids)
    links = repeats
    if not await repository.insert_new_events(conn, _event_rows(new)):
        known = await repository.existing_event_digests(conn, [e for _, e in first.values()])
        new = [pair for digest, pair in first.items() if digest not in known]
        # The first message of a new event is its `message_id`; every other one is a link.
        links = [(d, message_id) for d, (message_id, _) in first.items() if d in known]
        links += repeats
        fresh = _legs_of(new)
        await repository.insert_events(conn, _event_rows(new))
    await repository.link_messages(conn, links)
    result.duplicates = len(links)
    result.events = len(new)
    if fresh:
        if cache is None:
            cache = LegCache()
        result.legs = await _update_legs(conn, repository, fresh, stored, cache)
    return result


async def _update_legs(
    conn: AsyncConnection,
    repository: CdrRepository,
    fresh: dict[str, list[LegEvent]],
    stored: dict[str, list[int]],
    cache: LegCache,
) -> int:
    """Reassemble and store the CDRs of legs with `fresh` events, given the messages of
    their `stored` ones; returns how many legs."""
    legs: dict[str, list[LegEvent]] = {}
    unknown: list[str] = []
    for pid, events in fresh.items():
        message_ids = stored.get(pid)
        before = cache.events(pid, message_ids) if message_ids else []
        if before is None:
            unknown.append(pid)
        else:
            legs[pid] = before + events
    reread = await repository.leg_events(conn, {pid: stored[pid] for pid in unknown})
    for pid, before in reread.items():
        legs[pid] = before + fresh[pid]
    assembled = [assemble_leg(pid, legs[pid]) for pid in sorted(legs)]
    for leg in assembled:
        # A leg that has ended rarely hears more: keep the cache for calls in progress.
        if leg.end_us is None:
            cache.put(leg.id, legs[leg.id])
        else:
            cache.forget(leg.id)
    await repository.upsert_legs(conn, ((leg, legs[leg.id]) for leg in assembled))
    return len(legs)


def _legs_of(events: list[tuple[int, CallEvent]]) -> dict[str, list[LegEvent]]:
    """The events of each leg among `events`, as assembly sees them."""
    legs: dict[str, list[LegEvent]] = {}
    for message_id, event in events:
        if pid := event.participant_id:
            legs.setdefault(pid, []).append(event.leg_event(message_id))
    return legs


def _event_rows(events: list[tuple[int, CallEvent]]) -> list[tuple[object, ...]]:
    return [event.as_tuple(message_id) for message_id, event in events]


async def derive(
    conn: AsyncConnection, stored: Sequence[StoredMessage], cache: LegCache | None = None
) -> Derived:
    """Extract the call events of `stored` messages and bring their legs' CDRs up to date."""
    found = find_events((node, raw, offset) for _, node, raw, offset in stored)
    pairs = [
        (message[0], event)
        for message, event in zip(stored, found.events, strict=True)
        if event is not None
    ]
    result = await store_events(conn, pairs, cache)
    result.unparsed = len(found.unparsed)
    return result


async def catch_up(
    conn: AsyncConnection, cache: LegCache | None = None, limit: int | None = None
) -> tuple[int | None, Derived | None]:
    """Derive the oldest run of messages whose deriving was deferred (a batch's worth), or
    its first `limit` messages, and strike them off: how many messages that was (None: no
    run is left), and what deriving produced.

    Deriving happens in a savepoint: if it fails (a bug), the messages are struck off all the
    same, as the batch writer skips a batch it cannot derive; `cdrecon rebuild` derives them
    again once the bug is fixed. None then stands for the result.
    """
    run, stored = await pending.take(conn, limit)
    if run is None:
        return None, Derived()
    derived: Derived | None
    try:
        async with conn.begin_nested():
            derived = await derive(conn, stored, cache)
    except Exception:
        if cache is not None:
            cache.clear()
        log.exception("deriving %d deferred messages failed; run `cdrecon rebuild`", len(stored))
        derived = None
    await pending.done(conn, run)
    return len(stored), derived


async def derive_pending(engine: AsyncEngine) -> Derived:
    """Derive every message whose deriving was deferred, one transaction per listed run:
    before reading CDRs that must be complete (reconciliation, the end of an import)."""
    total = Derived()
    cache = LegCache()
    while True:
        async with engine.begin() as conn:
            taken, derived = await catch_up(conn, cache)
        if taken is None:
            return total
        if derived is not None:
            total.add(derived)


async def rebuild(engine: AsyncEngine, chunk: int = 5000) -> Derived:
    """Recreate every event and CDR from the raw store, one transaction per chunk."""
    total = Derived()
    cache = LegCache()
    async with engine.begin() as conn:
        await CdrRepository.for_connection(conn).clear(conn)
        # Every message is derived below, so nothing stays deferred.
        await pending.clear(conn)
    last_id = 0
    while True:
        async with engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(
                        messages.c.id,
                        # The sending node as the writer names it: HOSTNAME, else the peer.
                        func.coalesce(messages.c.hostname, messages.c.peer_host),
                        messages.c.raw,
                        messages.c.msg_offset,
                    )
                    .where(messages.c.id > last_id)
                    .order_by(messages.c.id)
                    .limit(chunk)
                )
            ).all()
            if not rows:
                return total
            messages_ = [(r[0], r[1], bytes(r[2]), r[3]) for r in rows]
            total.add(await derive(conn, messages_, cache))
            last_id = rows[-1][0]


async def page_cdrs(
    conn: AsyncConnection,
    *,
    limit: int,
    cursor: str | None,
    from_us: int | None = None,
    until_us: int | None = None,
    conference: str | None = None,
    protocol: str | None = None,
    state: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of CDRs and the cursor of the next page (None on the last)."""
    rows = await CdrRepository.for_connection(conn).page_legs(
        conn,
        limit=limit + 1,
        after=decode_cursor(cursor, int, str) if cursor else None,
        from_us=from_us,
        until_us=until_us,
        conference=conference,
        protocol=protocol,
        state=state,
    )
    return cut_page(rows, limit, lambda row: (row["first_seen_us"], row["id"]))


async def get_cdr(
    conn: AsyncConnection, participant_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """One CDR with its events, or None."""
    repository = CdrRepository.for_connection(conn)
    leg = await repository.get_leg(conn, participant_id)
    if leg is None:
        return None
    return leg, await repository.events_of_leg(conn, participant_id)


async def list_conferences(
    conn: AsyncConnection, from_us: int | None, until_us: int | None
) -> list[ConferenceInstance]:
    """Conference instances whose first leg started in the window."""
    legs = await CdrRepository.for_connection(conn).legs_between(conn, from_us, until_us)
    return group_instances(legs)


async def counts(conn: AsyncConnection) -> tuple[int, int]:
    """(events, CDRs) stored."""
    repository = CdrRepository.for_connection(conn)
    return await repository.count_events(conn), await repository.count_cdrs(conn)
