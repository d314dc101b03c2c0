"""Deriving call events and CDRs from stored messages, the one owner of when and how.

A batch writer hands each batch it stores to its `Deriver`, which derives it at once or,
while the database is behind, lists it for later and catches up when the writer has time;
it keeps the leg cache of the writer's transactions. With a deriving process
(app/cdr/worker.py) it lists every batch for that process instead. Whoever reads CDRs
that must be complete (reconciliation, exports of a window) calls `derive_pending` first.
`rebuild` derives everything again from the raw store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.models import messages
from app.db.packing import unpack
from app.metrics import Metrics

from . import pending
from .assembly import LegEvent, assemble_leg
from .extract import CallEvent, NotPexip, extract
from .legcache import LegCache
from .pending import StoredMessage
from .repository import CdrRepository

log = logging.getLogger(__name__)

# How long the writer's queue must stay empty before deferred deriving resumes: within a
# burst the next frames arrive sooner than this.
CATCH_UP_AFTER_IDLE = 0.05
# The share of the writer's time the catch-up may take while frames keep arriving: steady
# traffic never pauses that long, and its deferred work must still be derived.
CATCH_UP_SHARE = 0.25
# Messages one catch-up derives while frames keep arriving: a few milliseconds of work,
# so that reading the sockets never waits long for it.
CATCH_UP_SLICE = 500
# Messages a deriving process takes at once, over as many listed runs as that holds: under
# steady traffic each of the writer's small batches is a run, and a transaction per run
# costs more than the runs' deriving.
CATCH_UP_RUNS = 5000


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
    created = sum(1 for leg in assembled if leg.id not in stored)
    await repository.upsert_legs(conn, ((leg, legs[leg.id]) for leg in assembled), created)
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
    """Extract the call events of `stored` messages and bring their legs' CDRs up to date,
    skipping the messages whose event cannot be stored (see `derive_isolating`)."""
    found = find_events((node, raw, offset) for _, node, raw, offset in stored)
    return await derive_isolating(conn, [message[0] for message in stored], found, cache)


async def derive_isolating(
    conn: AsyncConnection,
    message_ids: Sequence[int],
    found: FoundEvents,
    cache: LegCache | None = None,
) -> Derived:
    """`derive_found` in a savepoint; if the database refuses it (a value no column takes, a
    constraint, a bug), the messages are halved and each half derived the same way, until
    the messages whose events cannot be stored are alone. Those are skipped (logged, counted
    in `failed`: their raw messages stay, `cdrecon rebuild` derives them after a fix); every
    other event and CDR is stored. A healthy set costs one savepoint.

    A lost connection is no message's fault: it is raised, for the caller to retry."""
    try:
        async with conn.begin_nested():
            return await derive_found(conn, message_ids, found, cache)
    except Exception as exc:
        if cache is not None:
            # It may hold legs as the savepoint wrote them.
            cache.clear()
        if _connection_lost(conn, exc):
            raise
        carrying = [i for i, event in enumerate(found.events) if event is not None]
        if len(carrying) <= 1:
            log.exception(
                "deriving message %s failed; skipped (its raw message is stored)",
                message_ids[carrying[0]] if carrying else "-",
            )
            return Derived(unparsed=len(found.unparsed), failed=len(carrying))
    # Halve at the middle message that carries an event: messages without one cost nothing.
    middle = carrying[len(carrying) // 2]
    result = await derive_isolating(conn, message_ids[:middle], found.part(0, middle), cache)
    result.add(
        await derive_isolating(
            conn, message_ids[middle:], found.part(middle, len(message_ids)), cache
        )
    )
    return result


def _connection_lost(conn: AsyncConnection, exc: Exception) -> bool:
    """Whether `exc` says the connection itself is gone, rather than the statement refused."""
    if conn.invalidated or conn.closed:
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


async def derive_found(
    conn: AsyncConnection,
    message_ids: Sequence[int],
    found: FoundEvents,
    cache: LegCache | None = None,
) -> Derived:
    """Store the call events `found` in the messages `message_ids` (one each, in order) and
    bring their legs' CDRs up to date."""
    pairs = [
        (message_id, event)
        for message_id, event in zip(message_ids, found.events, strict=True)
        if event is not None
    ]
    result = await store_events(conn, pairs, cache)
    result.unparsed = len(found.unparsed)
    return result


async def catch_up(
    conn: AsyncConnection, cache: LegCache | None = None, limit: int | None = None
) -> tuple[int | None, Derived]:
    """Derive the oldest run of messages whose deriving was deferred (a batch's worth), or
    its first `limit` messages, and strike them off: how many messages that was (None: no
    run is left), and what deriving produced.

    Messages whose events cannot be stored are skipped and struck off with the rest
    (`derive_isolating`); `cdrecon rebuild` derives them again once the cause is fixed.
    """
    run, stored = await pending.take(conn, limit)
    if run is None:
        return None, Derived()
    derived = await derive(conn, stored, cache)
    await pending.done(conn, run)
    return len(stored), derived


async def catch_up_found_first(
    engine: AsyncEngine, cache: LegCache | None = None
) -> tuple[int | None, Derived]:
    """`catch_up` for a deriving process of its own, over the oldest runs that hold at most
    `CATCH_UP_RUNS` messages: on SQLite it finds their events (the parsing, most of the
    work) before it takes the write lock, so the batch writer stores meanwhile; the lock is
    then held only to store them. On PostgreSQL, where writers do not exclude each other,
    it is `catch_up`. Returns 0 taken when another deriver took or cut a run meanwhile
    (look again)."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            return await catch_up(conn, cache)
    async with engine.connect() as conn:
        runs, stored = await pending.peek(conn, CATCH_UP_RUNS)
    if not runs:
        return None, Derived()
    found = find_events((node, raw, offset) for _, node, raw, offset in stored)
    async with engine.begin() as conn:
        if not await pending.claim(conn, runs):
            return 0, Derived()
        derived = await derive_isolating(conn, [message[0] for message in stored], found, cache)
        await pending.done_runs(conn, runs)
    return len(stored), derived


async def derive_pending(engine: AsyncEngine) -> Derived:
    """Derive every message whose deriving was deferred, one transaction per listed run:
    before reading CDRs that must be complete (reconciliation, exports of a window).

    Only reads when nothing is listed, so that a caller whose own transaction already
    writes (SQLite's one write lock) is not kept waiting for nothing."""
    total = Derived()
    async with engine.connect() as conn:
        if not await pending.count(conn):
            return total
    cache = LegCache()
    while True:
        async with engine.begin() as conn:
            taken, derived = await catch_up(conn, cache)
        if taken is None:
            return total
        total.add(derived)


async def rebuild(engine: AsyncEngine, chunk: int = 5000) -> Derived:
    """Recreate every event and CDR from the raw store, one transaction per chunk. A message
    whose event cannot be stored is skipped and counted in `failed` (`derive_isolating`)."""
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
                        messages.c.packed,
                        messages.c.msg_offset,
                    )
                    .where(messages.c.id > last_id)
                    .order_by(messages.c.id)
                    .limit(chunk)
                )
            ).all()
            if not rows:
                return total
            messages_ = [(r[0], r[1], unpack(bytes(r[2]), r[3]), r[4]) for r in rows]
            total.add(await derive(conn, messages_, cache))
            last_id = rows[-1][0]


class Elsewhere(Protocol):
    """A deriving process of its own (app/cdr/worker.py) that derives what is listed."""

    async def start(self, derived: Callable[[int, Derived], None]) -> None:
        """Start it; `derived(listed, result)` is called for each run it derives, with the
        messages still listed."""

    def notify(self) -> None:
        """Say that a run was listed."""

    async def stop(self) -> None:
        """Stop it (what it has not derived stays listed)."""


class Deriver:
    """Derives what one batch writer stores: at once while the database keeps up, else
    later, in the writer's idle time; or, with a deriving process (`elsewhere`), always
    there: the writer then only stores raw and lists, and that process derives.

    While more than `defer_backlog` messages wait in the writer's queue (None: never),
    batches are stored raw only and their messages listed in `pending_derivations`, in the
    same transaction. The catch-up derives them oldest first: a listed run at a time once
    the senders pause for `CATCH_UP_AFTER_IDLE`, and under steady traffic `CATCH_UP_SLICE`
    messages at a time, taking at most `CATCH_UP_SHARE` of the writer's time. The durable
    store keeps up with a burst three times as fast, and the CDRs catch up after it; once
    nothing deferred is left, batches are derived as they are stored again.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        metrics: Metrics,
        defer_backlog: int | None = 5000,
        elsewhere: Elsewhere | None = None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self.defer_backlog = defer_backlog
        self._elsewhere = elsewhere
        self._legs = LegCache()
        # Whether deferred messages may wait to be derived: looked up at `start` (an earlier
        # run may have left some), set whenever a batch is deferred.
        self._catch_up_due = True
        # How many messages are listed for the catch-up; None until first counted.
        self._deferred: int | None = None
        self._deferring = False  # store raw until nothing deferred is left
        self._catch_up_not_before = 0.0  # time.monotonic(): keeps the catch-up's share

    @property
    def catch_up_due(self) -> bool:
        """Whether deferred messages may be waiting for the writer to derive them."""
        return self._catch_up_due and self._elsewhere is None

    async def start(self) -> None:
        """Count what an earlier run left listed for the catch-up, for the gauge; start the
        deriving process if there is one (it resumes what is listed)."""
        if self._elsewhere is not None:
            await self._elsewhere.start(self._derived_elsewhere)
        try:
            async with self._engine.connect() as conn:
                self._deferred = await pending.count(conn)
        except Exception:
            # Counted again at the first catch-up; storing must not wait on this.
            log.exception("counting deferred messages failed")
            return
        self._metrics.derive_pending.set(self._deferred)
        self._catch_up_due = self._deferred > 0

    async def stop(self, finish: bool) -> None:
        """The writer has stored everything: stop the deriving process, and with `finish`
        derive here what is still listed."""
        if self._elsewhere is None:
            return  # the writer's own catch-up has finished, if asked to
        await self._elsewhere.stop()
        if finish:
            self._count(await derive_pending(self._engine))

    def _derived_elsewhere(self, listed: int, derived: Derived) -> None:
        """The deriving process derived a run; `listed` messages are still listed."""
        self._deferred = listed
        self._metrics.derive_pending.set(listed)
        self._count(derived)

    def defers(self, queued: int) -> bool:
        """Whether the next batch is stored raw only, with `queued` messages waiting.

        More than `defer_backlog` waiting (by default, more than a batch): the senders are
        ahead, so store raw until the catch-up has derived everything deferred. Deciding
        batch by batch instead would derive every batch that happens to find the queue
        short, and a slow reader (TLS) would seldom defer at all."""
        if self._elsewhere is not None:
            return True
        if self.defer_backlog is not None and queued > self.defer_backlog:
            self._deferring = True
        return self._deferring

    def catch_up_wait(self, last_frames: float) -> float:
        """Seconds to wait for more frames before catching up, given when frames last
        arrived (time.monotonic()): none once the senders are quiet, or once the catch-up
        has had less than its share lately."""
        now = time.monotonic()
        return min(CATCH_UP_AFTER_IDLE - (now - last_frames), self._catch_up_not_before - now)

    async def catch_up(self, last_frames: float, *, whole_run: bool = False) -> None:
        """Derive some deferred messages: a whole listed run if the senders are quiet (or
        `whole_run`), else a slice."""
        started = time.monotonic()
        quiet = whole_run or started - last_frames >= CATCH_UP_AFTER_IDLE
        await self._catch_up(None if quiet else CATCH_UP_SLICE)
        took = time.monotonic() - started
        self._catch_up_not_before = started + took / CATCH_UP_SHARE

    async def store(
        self,
        conn: AsyncConnection,
        message_ids: Sequence[int],
        found: FoundEvents | None,
        defer: bool,
    ) -> Derived | None:
        """In the writer's transaction, which has just stored `message_ids`: list them for
        the catch-up (`defer`), or store the events `found` in them and update CDRs.

        A message whose event cannot be stored is skipped, the rest derived
        (`derive_isolating`); it never costs the raw messages their commit."""
        if defer:
            await pending.defer(conn, message_ids)
            return None
        return await derive_isolating(
            conn, message_ids, found or FoundEvents.none(len(message_ids)), self._legs
        )

    def committed(self, message_ids: Sequence[int], derived: Derived | None, defer: bool) -> None:
        """The transaction of `store` committed: count what it derived or deferred."""
        if derived is not None:
            self._count(derived)
        if defer and message_ids:
            self._catch_up_due = True
            if self._deferred is not None:
                self._deferred += len(message_ids)
                self._metrics.derive_pending.set(self._deferred)
            if self._elsewhere is not None:
                self._elsewhere.notify()

    def rolled_back(self) -> None:
        """The transaction of `store` did not commit: the leg cache may hold what it wrote."""
        self._legs.clear()

    async def _catch_up(self, limit: int | None) -> None:
        """Derive one run of deferred messages (at most `limit`); note when none are left."""
        try:
            async with self._engine.begin() as conn:
                if self._deferred is None:
                    # An earlier run may have left messages listed.
                    self._deferred = await pending.count(conn)
                taken, derived = await catch_up(conn, self._legs, limit)
        except Exception:
            # The database failed, not the deriving: keep the list and come back later.
            self._legs.clear()
            self._metrics.write_errors.inc()
            log.exception("catching up on deferred messages failed; retrying")
            await asyncio.sleep(1.0)
            return
        self._deferred = 0 if taken is None else max(0, self._deferred - taken)
        self._metrics.derive_pending.set(self._deferred)
        if taken is None:
            self._catch_up_due = False
            self._deferring = False  # nothing deferred is left: derive as we store again
            return
        self._count(derived)

    def _count(self, derived: Derived) -> None:
        if derived.failed:
            self._metrics.derive_errors.inc(derived.failed)
        self._metrics.events.inc(derived.events)
        self._metrics.event_duplicates.inc(derived.duplicates)
        self._metrics.pexip_failures.inc(derived.unparsed)
