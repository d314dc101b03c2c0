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
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.engine import is_busy
from app.db.models import messages
from app.db.packing import unpack
from app.db.partitions import partitioned

from . import pending
from .assembly import LegEvent
from .derivation import Derivation, Stale
from .derivation import store as store_derivation
from .extract import CallEvent
from .found import Derived as Derived
from .found import FoundEvents as FoundEvents
from .found import assemble_legs, event_rows, firsts, legs_of
from .found import find_events as find_events
from .legcache import LegCache
from .pending import Fed, StoredMessage
from .repository import CdrRepository

if TYPE_CHECKING:
    # Only the service's writer counts: the deriving process imports this module, and
    # not prometheus_client.
    from app.metrics import Metrics

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
    first, repeats = firsts(found)
    if not first:
        return result
    repository = CdrRepository.for_connection(conn)
    # Optimistically, every event is new (a healthy live feed); only when the insert meets
    # a stored one is it undone and the stored ones looked up.
    new = list(first.values())
    fresh = legs_of(new)
    participant_ids = sorted(fresh)
    await repository.lock_legs(conn, participant_ids)
    stored = await repository.stored_legs(conn, participant_ids)
    links = repeats
    if not await repository.insert_new_events(conn, event_rows(new)):
        known = await repository.existing_event_digests(conn, [e for _, e in first.values()])
        new = [pair for digest, pair in first.items() if digest not in known]
        # The first message of a new event is its `message_id`; every other one is a link.
        links = [(d, message_id) for d, (message_id, _) in first.items() if d in known]
        links += repeats
        fresh = legs_of(new)
        await repository.insert_events(conn, event_rows(new))
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
    assembled = assemble_legs(legs)
    for leg, events in assembled:
        cache.keep(leg, events)
    created = sum(1 for leg, _ in assembled if leg.id not in stored)
    await repository.upsert_legs(conn, assembled, created)
    return len(legs)


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


async def derive_runs(
    conn: AsyncConnection, runs: list[tuple[int, int]], cache: LegCache | None = None
) -> Derived | None:
    """Derive the listed `runs` and strike them off, if they are still listed whole (None if
    not): where a deriving process's derivation of them was stale."""
    if not await pending.claim(conn, runs):
        return None
    derived = await derive(conn, await pending.messages_of(conn, runs), cache)
    await pending.done_runs(conn, runs)
    return derived


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
    """A deriving process of its own (app/cdr/worker.py) that derives what is listed and
    hands its derivations back (app/cdr/derivation.py)."""

    @property
    def pid(self) -> int | None:
        """The running process's id, if one runs."""

    async def start(self, handed: Callable[[Derivation], None]) -> None:
        """Start it; `handed(derivation)` is called for each derivation it hands back, in
        the order it built them."""

    def notify(self) -> None:
        """Say that a run was listed."""

    def feed(self, fed: Fed) -> None:
        """Hand it the messages of a run just listed (it may read them back instead)."""

    def heard(self, sequence: int, stored: bool) -> None:
        """Say that its derivation `sequence` was stored (or, not `stored`, was stale)."""

    async def stop(self) -> None:
        """Stop it (what it has not handed back stays listed)."""


class Deriver:
    """Derives what one batch writer stores: at once while the database keeps up, else
    later, in the writer's idle time; or, with a deriving process (`elsewhere`), always
    there: the writer then stores raw and lists, the process finds the events and assembles
    the legs, and the writer stores what it hands back (`Derivation`s, in order) in its own
    transactions, with the next batch or, when no frames wait, alone.

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
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._wake = wake  # tells the writer that derivations were handed back
        self._metrics = metrics
        self.defer_backlog = defer_backlog
        self._partitioned = partitioned(engine)
        self._elsewhere = elsewhere
        self._legs = LegCache()
        # Whether deferred messages may wait to be derived: looked up at `start` (an earlier
        # run may have left some), set whenever a batch is deferred.
        self._catch_up_due = True
        # How many messages are listed for the catch-up; None until first counted.
        self._deferred: int | None = None
        self._deferring = False  # store raw until nothing deferred is left
        self._catch_up_not_before = 0.0  # time.monotonic(): keeps the catch-up's share
        # Derivations the deriving process handed back, oldest first, and what the writer's
        # open transaction made of the first of them (each: stored, or derived here).
        self._handed: deque[Derivation] = deque()
        self._storing: list[tuple[Derivation, Derived | None, bool]] = []

    @property
    def catch_up_due(self) -> bool:
        """Whether deferred messages may be waiting for the writer to derive them."""
        if self._elsewhere is not None:
            return bool(self._handed)
        return self._catch_up_due

    async def start(self) -> None:
        """Count what an earlier run left listed for the catch-up, for the gauge; start the
        deriving process if there is one (it resumes what is listed)."""
        if self._elsewhere is not None:
            await self._elsewhere.start(self._hand)
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
            # What it handed back before it ended (one try: a stop must end), then what it left.
            if self._handed:
                await self._store_handed_alone()
            self._count(await derive_pending(self._engine))

    def _hand(self, derivation: Derivation) -> None:
        """The deriving process handed back a derivation: the writer stores it soon."""
        self._handed.append(derivation)
        if self._wake is not None:
            self._wake()

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
        if self._elsewhere is not None:
            return 0.0  # what was handed back is stored at once: it holds no socket up
        now = time.monotonic()
        return min(CATCH_UP_AFTER_IDLE - (now - last_frames), self._catch_up_not_before - now)

    async def catch_up(self, last_frames: float, *, whole_run: bool = False) -> None:
        """Derive some deferred messages: a whole listed run if the senders are quiet (or
        `whole_run`), else a slice."""
        if self._elsewhere is not None:
            await self._store_handed_alone()
            return
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
        calls: Sequence[bool],
    ) -> Derived | None:
        """In the writer's transaction, which has just stored `message_ids` (`calls`: which
        may carry a call event): list them for the catch-up (`defer`), or store the events
        `found` in them and update CDRs.

        A message whose event cannot be stored is skipped, the rest derived
        (`derive_isolating`); it never costs the raw messages their commit."""
        if defer:
            await pending.defer(conn, self.listed(message_ids, calls))
            if self._elsewhere is not None:
                await self._store_handed(conn)
            return None
        return await derive_isolating(
            conn, message_ids, found or FoundEvents.none(len(message_ids)), self._legs
        )

    def listed(self, message_ids: Sequence[int], calls: Sequence[bool]) -> Sequence[int]:
        """What a deferred batch lists for the catch-up. SQLite: all of it, one run. On
        PostgreSQL only what may carry a call event: the rest holds none, and its ids come
        first in their day (app/db/partitions.py), so under steady traffic its runs would
        always be the oldest listed and the calls' never taken."""
        if not self._partitioned:
            return message_ids
        return [i for i, may in zip(message_ids, calls, strict=True) if may]

    @property
    def takes_copies(self) -> bool:
        """Whether `committed` wants the copy (`Fed`) of a batch it listed: for a deriving
        process, where a batch is one listed run (SQLite)."""
        return self._elsewhere is not None and not self._partitioned

    def committed(
        self,
        message_ids: Sequence[int],
        derived: Derived | None,
        defer: bool,
        fed: Fed | None = None,
    ) -> None:
        """The transaction of `store` committed: count what it derived or deferred (the
        messages `listed`, whose copy `fed` holds if `takes_copies`)."""
        if derived is not None:
            self._count(derived)
        self._handed_committed()
        if defer and message_ids:
            self._catch_up_due = True
            if self._deferred is not None:
                self._deferred += len(message_ids)
                self._metrics.derive_pending.set(self._deferred)
            if self._elsewhere is not None:
                if fed is not None:
                    self._elsewhere.feed(fed)
                self._elsewhere.notify()

    def rolled_back(self) -> None:
        """The transaction of `store` did not commit: the leg cache may hold what it wrote;
        the derivations it stored are stored again by the next."""
        self._legs.clear()
        self._storing = []

    async def _store_handed(self, conn: AsyncConnection) -> None:
        """Store the derivations handed back, in order, in the caller's transaction; each in
        a savepoint, and one that is stale or refused is derived here from the database
        instead (its runs, if still listed). `_handed_committed` then tells the process."""
        self._storing = []
        current = self._elsewhere.pid if self._elsewhere is not None else None
        for derivation in list(self._handed):
            if derivation.producer != current:
                # A replaced process's: its successor derives those runs again.
                self._storing.append((derivation, None, False))
                continue
            try:
                async with conn.begin_nested():
                    await store_derivation(conn, derivation)
                self._storing.append((derivation, derivation.derived, True))
                continue
            except Stale as exc:
                log.info("a derivation was stale (%s); deriving its runs here", exc)
            except Exception as exc:
                if _connection_lost(conn, exc) or is_busy(exc):
                    raise  # no fault of the derivation's: the transaction is tried again
                log.warning("storing a derivation failed (%s); deriving its runs here", exc)
            derived = await derive_runs(conn, derivation.runs, self._legs)
            self._storing.append((derivation, derived, False))

    async def _store_handed_alone(self) -> None:
        """`_store_handed` in a transaction of its own: no frames wait."""
        try:
            async with self._engine.begin() as conn:
                await self._store_handed(conn)
        except Exception:
            self.rolled_back()
            self._metrics.write_errors.inc()
            log.exception("storing derivations failed; retrying")
            await asyncio.sleep(1.0)
            return
        self._handed_committed()

    def _handed_committed(self) -> None:
        """The transaction that stored `_storing` committed: count it, tell the process."""
        storing, self._storing = self._storing, []
        current = self._elsewhere.pid if self._elsewhere is not None else None
        for derivation, derived, stored in storing:
            self._handed.popleft()
            if derived is not None:
                self._count(derived)
            if self._elsewhere is None or derivation.producer != current:
                continue  # a replaced process's: its runs are still listed
            # Stored, derived here, or struck off by another: no longer listed.
            if self._deferred is not None:
                self._deferred = max(0, self._deferred - derivation.messages)
            self._elsewhere.heard(derivation.sequence, stored)
        if storing and self._deferred is not None:
            self._metrics.derive_pending.set(self._deferred)

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
