"""Derivations: the rows a deriving process finds in listed runs, handed back to the batch
writer, which stores them in its own transactions (SQLite's one writer; PostgreSQL the same).

The deriving process only reads: the runs' messages, which of their events are stored, the
stored legs they touch. It keeps the authoritative view of the legs it has handed on and not
yet heard stored (`View`), so that the next runs build on them, and sends whole CDR rows with
the basis each was assembled on (the messages the leg's stored events came in). The writer
stores a derivation (`store`) only if its runs are still listed whole, each basis is what the
database holds, and its new events are new, in the transaction that strikes the runs off;
else (another deriver, an import, a rebuild came between) it raises `Stale`, the writer
derives those runs itself from the database, and the process starts its view again from the
database once nothing it handed on is outstanding.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from . import pending
from .assembly import LegEvent
from .found import Derived, assemble_legs, event_rows, find_events, firsts, legs_of
from .legcache import LegCache
from .pending import StoredMessage
from .repository import CdrRepository, leg_row

# Runs (first id, last id), as listed in `pending_derivations`.
Runs = list[tuple[int, int]]


@dataclass(slots=True)
class Derivation:
    """What deriving some listed runs produced, as plain rows (it crosses a pipe)."""

    producer: int  # the deriving process's id: a replaced process's derivations are dropped
    sequence: int  # its number, from 1, in the order the process built them
    runs: Runs
    messages: int  # messages the runs hold
    event_rows: list[tuple[object, ...]]  # new events, EVENT_COLUMNS order
    links: list[tuple[bytes, int]]  # (digest, message id) of further messages of an event
    linked: list[tuple[int, bytes]]  # (time, digest) of the stored events the links expect
    leg_rows: list[tuple[object, ...]]  # whole `cdrs` rows (`leg_row`)
    bases: dict[str, list[int] | None]  # each leg's stored message ids assumed; None: new
    derived: Derived = field(default_factory=Derived)


class Stale(Exception):
    """The database is no longer what a derivation was built on."""


async def store(conn: AsyncConnection, derivation: Derivation) -> None:
    """Store `derivation` and strike its runs off, in the caller's transaction; `Stale` if
    the database moved on since it was built (nothing is written then)."""
    if not await pending.claim(conn, derivation.runs):
        raise Stale("its runs are no longer listed whole")
    repository = CdrRepository.for_connection(conn)
    bases = derivation.bases
    if bases:
        participant_ids = sorted(bases)
        await repository.lock_legs(conn, participant_ids)
        stored = await repository.stored_legs(conn, participant_ids)
        if any(stored.get(pid) != basis for pid, basis in bases.items()):
            raise Stale("a leg changed")
    if derivation.linked:
        wanted = {digest for _, digest in derivation.linked}
        if await repository.stored_digests(conn, derivation.linked) != wanted:
            raise Stale("an event it links to is not stored")
    if not await repository.insert_new_events(conn, derivation.event_rows):
        raise Stale("an event it found new is stored")
    await repository.link_messages(conn, derivation.links)
    created = sum(1 for basis in bases.values() if basis is None)
    await repository.upsert_leg_rows(conn, derivation.leg_rows, created)
    await pending.done_runs(conn, derivation.runs)


@dataclass(slots=True)
class _Handed:
    """A leg as the deriving process last handed it on."""

    sequence: int
    events: list[LegEvent]
    ended: bool


class View:
    """The deriving process's view of the legs: the database, plus what it has handed on
    and not yet heard stored. Derivations are stored in the order they are built, so the
    legs handed on are what the database will hold once the outstanding ones are stored."""

    def __init__(self, producer: int, cache: LegCache | None = None) -> None:
        self.producer = producer
        self.cache = cache or LegCache()
        self._sequence = 0
        self._outstanding: dict[int, Runs] = {}  # sequence -> its runs
        self._legs: dict[str, _Handed] = {}
        self._digests: dict[bytes, int] = {}  # new events handed on -> sequence
        self._stale = False

    @property
    def outstanding(self) -> int:
        """Derivations handed on and not yet heard of."""
        return len(self._outstanding)

    def handed_runs(self) -> Collection[int]:
        """First ids of the runs handed on and not yet heard of: not to be derived again."""
        return {first for runs in self._outstanding.values() for first, _ in runs}

    def ready(self) -> bool:
        """Whether a new derivation may be built: after a stale one, only once nothing is
        outstanding, from the database alone."""
        if self._stale and not self._outstanding:
            self._legs.clear()
            self._digests.clear()
            self.cache.clear()
            self._stale = False
        return not self._stale

    def heard(self, sequence: int, stored: bool) -> None:
        """The writer stored derivation `sequence`, or (`stored` false) derived its runs
        itself or found them gone: the view starts again once nothing is outstanding."""
        self._outstanding.pop(sequence, None)
        if not stored:
            self._stale = True
            return
        for pid in [pid for pid, leg in self._legs.items() if leg.sequence <= sequence]:
            leg = self._legs.pop(pid)
            if leg.ended:
                self.cache.forget(pid)
            else:
                self.cache.put(pid, leg.events)
        for digest in [d for d, s in self._digests.items() if s <= sequence]:
            del self._digests[digest]

    async def build(
        self, conn: AsyncConnection, runs: Runs, stored: list[StoredMessage]
    ) -> Derivation:
        """The derivation of the listed `runs`, whose messages are `stored`; reads only."""
        found = find_events((node, raw, offset) for _, node, raw, offset in stored)
        pairs = [
            (message[0], event)
            for message, event in zip(stored, found.events, strict=True)
            if event is not None
        ]
        first, repeats = firsts(pairs)
        repository = CdrRepository.for_connection(conn)
        ask = [event for _, event in first.values() if event.digest not in self._digests]
        known = await repository.existing_event_digests(conn, ask) if ask else set()
        known.update(digest for digest in first if digest in self._digests)
        new = [pair for digest, pair in first.items() if digest not in known]
        links = [(digest, first[digest][0]) for digest in known] + repeats
        linked = [(first[digest][1].time_us, digest) for digest in known]
        fresh = legs_of(new)
        before, bases = await self._legs_before(conn, repository, list(fresh))
        assembled = assemble_legs({pid: before[pid] + events for pid, events in fresh.items()})
        self._sequence += 1
        sequence = self._sequence
        self._outstanding[sequence] = runs
        for leg, events in assembled:
            self._legs[leg.id] = _Handed(sequence, events, leg.end_us is not None)
        for _, event in new:
            self._digests[event.digest] = sequence
        return Derivation(
            producer=self.producer,
            sequence=sequence,
            runs=runs,
            messages=len(stored),
            event_rows=event_rows(new),
            links=links,
            linked=linked,
            leg_rows=[leg_row(leg, events) for leg, events in assembled],
            bases=bases,
            derived=Derived(
                events=len(new),
                duplicates=len(links),
                unparsed=len(found.unparsed),
                legs=len(assembled),
            ),
        )

    async def _legs_before(
        self, conn: AsyncConnection, repository: CdrRepository, participant_ids: list[str]
    ) -> tuple[dict[str, list[LegEvent]], dict[str, list[int] | None]]:
        """Each leg's events before this derivation, and the basis that says so."""
        before: dict[str, list[LegEvent]] = {}
        bases: dict[str, list[int] | None] = {}
        ask = sorted(pid for pid in participant_ids if pid not in self._legs)
        stored = await repository.stored_legs(conn, ask) if ask else {}
        unknown: dict[str, list[int]] = {}
        for pid in participant_ids:
            handed = self._legs.get(pid)
            if handed is not None:
                before[pid] = handed.events
                bases[pid] = sorted(e.message_id for e in handed.events)
                continue
            message_ids = stored.get(pid)
            bases[pid] = message_ids
            cached = self.cache.events(pid, message_ids) if message_ids else []
            if cached is None:
                assert message_ids is not None
                unknown[pid] = message_ids
            else:
                before[pid] = cached
        if unknown:
            before.update(await repository.leg_events(conn, unknown))
        return before, bases
