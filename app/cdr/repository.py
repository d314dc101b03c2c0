"""All SQL of call events and CDRs; dialect differences are chosen here, once."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import counts
from app.db.models import cdrs, event_messages, events, messages
from app.db.packing import unpack
from app.db.sql import insert_sql, placeholders

from .assembly import LEG_COLUMNS, Leg, LegEvent
from .extract import EVENT_COLUMNS, CallEvent, NotPexip, extract

log = logging.getLogger(__name__)

# Keeps each IN (...) list well under SQLite's bound-parameter limit.
_CHUNK = 500


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class CdrRepository:
    """Reads and writes events, event-message links and CDRs."""

    def __init__(self, dialect_name: str, paramstyle: str) -> None:
        self._dialect_name = dialect_name
        self._paramstyle = paramstyle
        self._insert_events = insert_sql("events", EVENT_COLUMNS, paramstyle)
        self._insert_links = insert_sql(
            "event_messages",
            ("digest", "message_id"),
            paramstyle,
            conflict=("digest", "message_id"),
        )
        self._upsert_legs = insert_sql(
            "cdrs", (*LEG_COLUMNS, "message_ids"), paramstyle, conflict=("id",), update=True
        )

    @classmethod
    def for_connection(cls, conn: AsyncConnection) -> CdrRepository:
        """The repository for the dialect of `conn`."""
        return cls(conn.dialect.name, conn.dialect.paramstyle)

    async def existing_event_digests(
        self, conn: AsyncConnection, call_events: Sequence[CallEvent]
    ) -> set[bytes]:
        """The digests of `call_events` that are stored already."""
        return await self.stored_digests(conn, [(e.time_us, e.digest) for e in call_events])

    async def stored_digests(
        self, conn: AsyncConnection, timed: Sequence[tuple[int, bytes]]
    ) -> set[bytes]:
        """The digests among (event time, digest) pairs that are stored already."""
        wanted = {digest for _, digest in timed}
        times = sorted({time_us for time_us, _ in timed})
        found: set[bytes] = set()
        for chunk in _chunks(times):
            # By time alone: the index is (time_us, digest), and a digest fixes the time.
            result = await conn.exec_driver_sql(
                "SELECT digest FROM events WHERE time_us IN "
                f"({placeholders(self._paramstyle, len(chunk))})",
                tuple(chunk),
            )
            found.update(digest for (raw,) in result if (digest := bytes(raw)) in wanted)
        return found

    async def insert_events(self, conn: AsyncConnection, rows: list[tuple[object, ...]]) -> None:
        """Insert new event rows in EVENT_COLUMNS order (their digests must be new)."""
        if rows:
            await conn.exec_driver_sql(self._insert_events, rows)
            await counts.adjust(conn, "events", len(rows))

    async def insert_new_events(
        self, conn: AsyncConnection, rows: list[tuple[object, ...]]
    ) -> bool:
        """Insert event rows if none of their digests is stored: False, with nothing
        inserted, if one is."""
        if not rows:
            return True
        try:
            async with conn.begin_nested():
                await conn.exec_driver_sql(self._insert_events, rows)
        except IntegrityError:
            return False
        await counts.adjust(conn, "events", len(rows))
        return True

    async def link_messages(self, conn: AsyncConnection, links: list[tuple[bytes, int]]) -> None:
        """Record which raw messages carried which event: (event digest, message id)."""
        if links:
            await conn.exec_driver_sql(self._insert_links, links)

    async def lock_legs(self, conn: AsyncConnection, participant_ids: Sequence[str]) -> None:
        """Serialise assembly of these legs with other receivers writing to the same
        PostgreSQL database until this transaction ends: otherwise two receivers could each
        assemble a leg without the other's uncommitted event, and the last commit would win.
        SQLite has a single writer, so there is nothing to do there."""
        if self._dialect_name != "postgresql" or not participant_ids:
            return
        # In key order, so that two receivers never wait for each other in a cycle.
        await conn.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(k) FROM "
            "(SELECT DISTINCT hashtextextended(p, 0) AS k FROM unnest($1::text[]) AS p "
            "ORDER BY k) AS keys",
            (list(participant_ids),),
        )

    async def stored_legs(
        self, conn: AsyncConnection, participant_ids: Sequence[str]
    ) -> dict[str, list[int]]:
        """For each of `participant_ids` with a stored CDR, the ids of the messages its
        events were first seen in, ascending."""
        found: dict[str, list[int]] = {}
        for chunk in _chunks(participant_ids):
            result = await conn.exec_driver_sql(
                "SELECT id, message_ids FROM cdrs WHERE id IN "
                f"({placeholders(self._paramstyle, len(chunk))})",
                tuple(chunk),
            )
            rows: Sequence[Any] = result.all()
            found.update((pid, _parse_ids(text)) for pid, text in rows)
        return found

    async def leg_events(
        self, conn: AsyncConnection, message_ids: dict[str, list[int]]
    ) -> dict[str, list[LegEvent]]:
        """The stored events of each leg, parsed again from the `message_ids` they were
        first seen in."""
        legs: dict[str, list[LegEvent]] = {pid: [] for pid in message_ids}
        owner = {message_id: pid for pid, ids in message_ids.items() for message_id in ids}
        for chunk in _chunks(sorted(owner)):
            result = await conn.exec_driver_sql(
                "SELECT id, coalesce(hostname, peer_host), raw, packed, msg_offset FROM messages "
                f"WHERE id IN ({placeholders(self._paramstyle, len(chunk))})",
                tuple(chunk),
            )
            rows: Sequence[Any] = result.all()
            for message_id, node, stored, packed, offset in rows:
                raw = unpack(bytes(stored), packed)
                if (event := _reparse(raw, offset, node, message_id)) is not None:
                    legs[owner[message_id]].append(event.leg_event(message_id))
        return legs

    async def upsert_legs(
        self,
        conn: AsyncConnection,
        legs: Iterable[tuple[Leg, Iterable[LegEvent]]],
        created: int,
    ) -> None:
        """Store assembled CDRs with the events they were assembled from, replacing older
        versions of the same legs; `created` of them are new (for the row count)."""
        await self.upsert_leg_rows(conn, [leg_row(leg, events) for leg, events in legs], created)

    async def upsert_leg_rows(
        self, conn: AsyncConnection, rows: list[tuple[object, ...]], created: int
    ) -> None:
        """`upsert_legs` for rows `leg_row` made."""
        if rows:
            await conn.exec_driver_sql(self._upsert_legs, rows)
            await counts.adjust(conn, "cdrs", created)

    async def clear(self, conn: AsyncConnection) -> None:
        """Forget all derived data (events, links, CDRs): before a rebuild."""
        for table in (cdrs, event_messages, events):
            await conn.execute(delete(table))
        await counts.recount(conn, ("events", "cdrs"))

    async def page_legs(
        self,
        conn: AsyncConnection,
        *,
        limit: int,
        after: tuple[int, str] | None,
        from_us: int | None,
        until_us: int | None,
        conference: str | None,
        protocol: str | None,
        state: str | None,
        alias: str | None = None,
    ) -> list[dict[str, Any]]:
        """CDRs in (first seen, id) order after the keyset `after`, filtered; `alias` is
        looked for (case-insensitively) inside the remote and the local alias."""
        query: Select[Any] = select(cdrs)
        if after is not None:
            seen, pid = after
            query = query.where(
                or_(
                    cdrs.c.first_seen_us > seen,
                    and_(cdrs.c.first_seen_us == seen, cdrs.c.id > pid),
                )
            )
        sort_time = func.coalesce(cdrs.c.start_us, cdrs.c.first_seen_us)
        if from_us is not None:
            query = query.where(sort_time >= from_us)
        if until_us is not None:
            query = query.where(sort_time < until_us)
        if conference is not None:
            query = query.where(cdrs.c.conference_name == conference)
        if protocol is not None:
            query = query.where(func.lower(cdrs.c.protocol) == protocol.lower())
        if state is not None:
            query = query.where(cdrs.c.state == state)
        if alias is not None:
            query = query.where(
                or_(
                    cdrs.c.remote_alias.icontains(alias, autoescape=True),
                    cdrs.c.local_alias.icontains(alias, autoescape=True),
                )
            )
        query = query.order_by(cdrs.c.first_seen_us, cdrs.c.id).limit(limit)
        return [dict(row._mapping) for row in await conn.execute(query)]

    async def get_leg(self, conn: AsyncConnection, participant_id: str) -> dict[str, Any] | None:
        """One CDR by participant id."""
        row = (await conn.execute(select(cdrs).where(cdrs.c.id == participant_id))).first()
        return None if row is None else dict(row._mapping)

    async def events_of_leg(
        self, conn: AsyncConnection, participant_id: str
    ) -> list[dict[str, Any]]:
        """A leg's events in time order, each with its node, level, name, message and keys
        (`fields`), parsed again from the raw message it was first seen in, and the ids of the
        raw messages it came in."""
        message_ids = (await self.stored_legs(conn, [participant_id])).get(participant_id, [])
        rows: list[dict[str, Any]] = []
        for chunk in _chunks(message_ids):
            result = await conn.execute(
                select(
                    events,
                    # The sending node as the writer names it: HOSTNAME, else the peer.
                    func.coalesce(messages.c.hostname, messages.c.peer_host).label("node"),
                    messages.c.raw,
                    messages.c.packed,
                    messages.c.msg_offset,
                )
                .join(messages, messages.c.id == events.c.message_id)
                # Both sides named: PostgreSQL reads only the partitions the ids are in
                # (it carries no IN list across the join by itself).
                .where(events.c.message_id.in_(chunk), messages.c.id.in_(chunk))
            )
            for row in result:
                values = dict(row._mapping)
                raw = unpack(bytes(values.pop("raw")), values.pop("packed"))
                offset = values.pop("msg_offset")
                found = _reparse(raw, offset, values["node"], values["message_id"])
                event = None if found is None else found.event
                values["level"] = None if event is None else event.level
                values["name"] = None if event is None else event.name
                values["message"] = None if event is None else event.message
                values["fields"] = {} if event is None else dict(event.fields)
                rows.append(values)
        rows.sort(key=lambda values: (values["time_us"], values["id"]))
        digests = [row["digest"] for row in rows]
        sources: dict[bytes, set[int]] = {}
        for chunk in _chunks(digests):
            links = await conn.execute(
                select(event_messages.c.digest, event_messages.c.message_id).where(
                    event_messages.c.digest.in_(chunk)
                )
            )
            for digest, message_id in links:
                sources.setdefault(bytes(digest), set()).add(int(message_id))
        for values in rows:
            further = sources.get(bytes(values["digest"]), set())
            values["message_ids"] = sorted(further | {int(values["message_id"])})
        return rows

    async def received_messages(
        self, conn: AsyncConnection, message_ids: Sequence[int]
    ) -> list[dict[str, Any]]:
        """The raw messages `message_ids` as received (frame, time, transport, peer, host),
        in id order; `raw` unpacked."""
        rows: list[dict[str, Any]] = []
        for chunk in _chunks(sorted(set(message_ids))):
            result = await conn.execute(
                select(
                    messages.c.id,
                    messages.c.received_us,
                    messages.c.transport,
                    messages.c.peer_host,
                    messages.c.peer_port,
                    messages.c.tls_subject,
                    messages.c.hostname,
                    messages.c.source,
                    messages.c.truncated,
                    messages.c.raw,
                    messages.c.packed,
                ).where(messages.c.id.in_(chunk))
            )
            for row in result:
                values = dict(row._mapping)
                values["raw"] = unpack(bytes(values["raw"]), values.pop("packed"))
                rows.append(values)
        rows.sort(key=lambda row: int(row["id"]))
        return rows

    async def legs_between(
        self, conn: AsyncConnection, from_us: int | None, until_us: int | None
    ) -> list[dict[str, Any]]:
        """Open and closed legs with a conference, by conference and start: for instances."""
        query = select(
            cdrs.c.conference_name, cdrs.c.start_us, cdrs.c.end_us, cdrs.c.id, cdrs.c.node
        ).where(
            cdrs.c.start_us.is_not(None),
            cdrs.c.conference_name.is_not(None),
            cdrs.c.state.in_(("open", "closed")),
        )
        if from_us is not None:
            query = query.where(cdrs.c.start_us >= from_us)
        if until_us is not None:
            query = query.where(cdrs.c.start_us < until_us)
        query = query.order_by(cdrs.c.conference_name, cdrs.c.start_us, cdrs.c.id)
        return [dict(row._mapping) for row in await conn.execute(query)]


def _reparse(raw: bytes, offset: int, node: str | None, message_id: int) -> CallEvent | None:
    """A stored event, parsed again from the message it was first seen in."""
    try:
        event = extract(raw, offset, node)
    except NotPexip:
        event = None
    if event is None:
        # Only a parser that changed since the event was stored gets here: `cdrecon rebuild`.
        log.warning("stored event of message %d no longer parses; run cdrecon rebuild", message_id)
    return event


def leg_row(leg: Leg, events: Iterable[LegEvent]) -> tuple[object, ...]:
    """The `cdrs` row of an assembled leg: its CDR and the messages its events were first
    seen in."""
    return (*leg.as_tuple(), ",".join(str(i) for i in sorted(e.message_id for e in events)))


def _parse_ids(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]
